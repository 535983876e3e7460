//! NumPy `.npy` arrays as an image source (`source = "npy"`).
//!
//! Datasets prepared in Python usually end up as one `np.save`d array, so reading that file
//! directly spares users an export step to PNG folders or IDX. The file format is [`format`]
//! (with its header literal in [`header`]), knowing nothing of images; the array is read
//! as images, with the missing-value policy ([`images`]); this module builds the dataset.

pub(crate) mod format;
mod header;
pub(crate) mod images;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use self::format::read_npy;
use self::images::{MissingValues, apply_missing_values, non_finite_samples, npy_images};
use super::index_keys;
use crate::config::DataConfig;
use crate::split::split_of;
use crate::transform::dynamic_to_chw;
use crate::{DataError, Dataset, Images};

/// Loads a `.npy` array, applies the missing-value policy and converts to the model layout.
/// Keys are the original indices, so that dropping a sample leaves the others' keys (and their
/// side of the validation split) unchanged.
pub(crate) fn npy_dataset(
    config: &DataConfig,
    path: &Path,
    size: usize,
    channels: usize,
    seed: u64,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let array = npy_images(read_npy(path)?, config.layout, path)?;
    let all_keys = index_keys(array.count);
    // The split of the whole array, so `fill` uses only training images' values; the trainer
    // computes the same split again from the same keys.
    let fill_from = split_of(config, &vec![0; array.count], &all_keys, seed)?.train;
    let bad = non_finite_samples(&array);
    let (array, reports) = apply_missing_values(array, config.missing, &fill_from, path)?;
    let dropped: HashSet<usize> = match config.missing {
        MissingValues::Skip => bad.iter().map(|&(i, _)| i).collect(),
        _ => Default::default(),
    };
    let keys: Vec<String> = (0..all_keys.len())
        .filter(|i| !dropped.contains(i))
        .map(|i| all_keys[i].clone())
        .collect();
    let skipped = reports
        .into_iter()
        .filter(|(i, _)| dropped.contains(i))
        .map(|(i, reason)| (PathBuf::from(format!("{}#{i}", path.display())), reason))
        .collect();
    if array.count == 0 {
        return Err(DataError::Empty {
            origin: config.describe_source(),
            note: " (every image held NaN/Inf values; data.missing = \"fill\" keeps them)".into(),
        });
    }
    let plane = array.height * array.width;
    let mut images = Vec::with_capacity(array.count * channels * size * size);
    for sample in array.pixels.chunks_exact(array.channels * plane) {
        // f32 RGB keeps the array's precision through the resize; a one-channel array is
        // replicated, whose Rec. 709 luma is the value itself.
        let img = image::DynamicImage::ImageRgb32F(image::ImageBuffer::from_fn(
            array.width as u32,
            array.height as u32,
            |x, y| {
                let offset = y as usize * array.width + x as usize;
                let at = |c: usize| sample[c.min(array.channels - 1) * plane + offset];
                image::Rgb([at(0), at(1), at(2)])
            },
        ));
        images.extend(dynamic_to_chw(&img, size, channels, filter));
    }
    Ok(Dataset::new(
        Images::Cached(images),
        channels,
        size,
        vec![0; array.count],
        vec!["0".into()],
        keys,
    )
    .with_skipped(skipped))
}
