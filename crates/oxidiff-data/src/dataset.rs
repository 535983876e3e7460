//! The in-memory dataset handed to the trainer, and its loading from the configured source.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use image::imageops::FilterType;

use crate::DataError;
use crate::augment::{Augment, crop_into};
use crate::config::{ColorMode, DataConfig, DataSource, ErrorPolicy, ResizeFilter};
use crate::decode::DecodeOptions;
use crate::digits::{DIGITS_CLASSES, DIGITS_SIZE, load_digits};
use crate::folder::{load_folder, load_image};
use crate::idx::{
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, IdxImages, fashion_mnist_files, read_idx_images,
};
use crate::npy::{MissingValues, apply_missing_values, non_finite_samples, npy_images, read_npy};
use crate::parallel::parallel_map;
use crate::split::split_of;
use crate::standardize::ChannelStats;
use crate::transform::{dynamic_to_chw, gray_plane_to_chw};

/// Where a dataset's pixels are.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// Decoded once at load (`data.cache = true`, the default):
    /// `[N, channels, stored_size, stored_size]` flattened, values in [-1, 1] (or standardised,
    /// see [`Dataset::standardize`]).
    Cached(Vec<f32>),
    /// Decoded from the files again whenever a batch needs them (`data.cache = false`).
    Streamed(FileStream),
}

/// The image files of a streamed dataset and how to turn each into the model's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStream {
    /// `[N]`: the file of each image.
    pub paths: Vec<PathBuf>,
    pub options: DecodeOptions,
    pub filter: ResizeFilter,
    /// A file that fails at batch time (deleted or rewritten since the load checked it): skip
    /// it, using another image of the same batch in its place, or stop.
    pub on_error: ErrorPolicy,
    /// Applied to each image after decoding.
    pub standardization: Option<ChannelStats>,
}

/// The images of one batch on the host, ready to become a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, channels, size, size]` flattened.
    pub pixels: Vec<f32>,
    /// `[B, channels, size, size]`.
    pub shape: [usize; 4],
    /// `[B]`: the label of each image actually in the batch (a skipped file's stand-in brings
    /// its own label).
    pub labels: Vec<usize>,
    /// Files of a streamed dataset that could not be read for this batch, with the reason;
    /// always empty for a cached one.
    pub failed: Vec<(PathBuf, String)>,
}

impl Batch {
    /// The batch as a tensor on `device`.
    ///
    /// # Shapes
    /// - returns: `[B, channels, size, size]`
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::<4>::from_data(TensorData::new(self.pixels.clone(), self.shape), device)
    }

    /// Images `range` of the batch (a micro-batch of it), as a tensor on `device`.
    ///
    /// # Shapes
    /// - returns: `[range.len(), channels, size, size]`
    pub fn slice_tensor(&self, range: std::ops::Range<usize>, device: &Device) -> Tensor<4> {
        let [_, c, h, w] = self.shape;
        let per = c * h * w;
        let pixels = self.pixels[range.start * per..range.end * per].to_vec();
        Tensor::<4>::from_data(TensorData::new(pixels, [range.len(), c, h, w]), device)
    }
}

/// A dataset in the model's layout, with its labels: images held in memory, or (with
/// `data.cache = false`) the files to decode them from.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Images,
    /// `[N]`, each in `0..num_classes`.
    pub labels: Vec<usize>,
    /// Number of classes (`class_names.len()`); 1 for a source without classes.
    pub num_classes: usize,
    /// `[num_classes]`: the name of each label ("0".."9" for the digits, sub-folder names for a
    /// folder, the folder's own name when it has no sub-folders).
    pub class_names: Vec<String>,
    pub channels: usize,
    /// Side of the images handed to the model.
    pub size: usize,
    /// Side of the stored images (`data.resize`, at least `size`): batches are crops of them.
    pub stored_size: usize,
    /// Files that were skipped, with the reason (empty for the embedded digits).
    pub skipped: Vec<(PathBuf, String)>,
    /// `[N]`: each image's identity within its source — its path relative to the folder, its
    /// path as written in a manifest, or `#index` for array sources — used by the validation
    /// split.
    pub keys: Vec<String>,
}

impl Dataset {
    /// A dataset of `images`, each `channels` planes of `stored_size`×`stored_size`, with their
    /// `labels` (indices into `class_names`) and `keys` (see [`Dataset::keys`]), all `[N]`.
    ///
    /// The model gets the stored images whole until [`Dataset::cropped_to`] says otherwise, and
    /// nothing is recorded as skipped until [`Dataset::with_skipped`]. Every source builds its
    /// dataset here, so `num_classes` is always `class_names.len()`.
    pub fn new(
        images: Images,
        channels: usize,
        stored_size: usize,
        labels: Vec<usize>,
        class_names: Vec<String>,
        keys: Vec<String>,
    ) -> Self {
        debug_assert_eq!(labels.len(), keys.len(), "one key per image");
        debug_assert!(match &images {
            Images::Cached(values) => values.len() == labels.len() * channels * stored_size.pow(2),
            Images::Streamed(stream) => stream.paths.len() == labels.len(),
        });
        Self {
            images,
            labels,
            num_classes: class_names.len(),
            class_names,
            channels,
            size: stored_size,
            stored_size,
            skipped: Vec::new(),
            keys,
        }
    }

    /// The dataset with `skipped` recorded as the files left out while loading it.
    pub fn with_skipped(mut self, skipped: Vec<(PathBuf, String)>) -> Self {
        self.skipped = skipped;
        self
    }

    /// The dataset handing the model `size`×`size` crops of its stored images
    /// (`size <= stored_size`; how each batch crops is [`Dataset::assemble`]'s `augment`).
    pub fn cropped_to(mut self, size: usize) -> Self {
        debug_assert!(size <= self.stored_size, "crops lie inside the stored images");
        self.size = size;
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per stored image: channels × stored_size².
    pub fn image_len(&self) -> usize {
        self.channels * self.stored_size * self.stored_size
    }

    /// The decoded images when they are held in memory; `None` when streamed.
    ///
    /// # Shapes
    /// - returns: `[N, channels, stored_size, stored_size]`, flattened
    pub fn cached(&self) -> Option<&[f32]> {
        match &self.images {
            Images::Cached(values) => Some(values),
            Images::Streamed(_) => None,
        }
    }

    /// Image `i` of a cached dataset.
    ///
    /// # Shapes
    /// - returns: `[channels, stored_size, stored_size]`, flattened
    ///
    /// # Panics
    /// If `i >= self.len()` or the dataset is streamed: code that may meet either kind uses
    /// [`Dataset::load`].
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        let values = self
            .cached()
            .expect("Dataset::image on a streamed dataset; use Dataset::load");
        &values[i * n..(i + 1) * n]
    }

    /// Image `i`, borrowed from memory or decoded from its file.
    ///
    /// # Shapes
    /// - returns: `[channels, stored_size, stored_size]`, flattened
    ///
    /// # Errors
    /// The file and the reason it cannot be used (streamed datasets only: a file deleted,
    /// truncated or replaced since the load checked it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn load(&self, i: usize) -> Result<Cow<'_, [f32]>, (PathBuf, String)> {
        match &self.images {
            Images::Cached(_) => Ok(Cow::Borrowed(self.image(i))),
            Images::Streamed(stream) => {
                let path = &stream.paths[i];
                let mut pixels = load_image(
                    path,
                    self.stored_size,
                    self.channels,
                    &stream.options,
                    stream.filter.filter_type(),
                )
                .map_err(|reason| (path.clone(), reason))?;
                if let Some(stats) = &stream.standardization {
                    stats.apply(&mut pixels, self.stored_size * self.stored_size);
                }
                Ok(Cow::Owned(pixels))
            }
        }
    }

    /// Standardises every image with `stats` from now on: in place when cached, after each
    /// decode when streamed.
    pub fn standardize(&mut self, stats: &ChannelStats) {
        let plane = self.stored_size * self.stored_size;
        match &mut self.images {
            Images::Cached(values) => stats.apply(values, plane),
            Images::Streamed(stream) => stream.standardization = Some(stats.clone()),
        }
    }

    /// Gathers the images at `indices` into one tensor on `device` (centre crops, no flips).
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: `[B, channels, size, size]`
    ///
    /// # Errors
    /// As [`Dataset::assemble`].
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor<4>, DataError> {
        self.batch_with(indices, Augment::default(), |_| None, device)
    }

    /// [`Dataset::assemble`] as a tensor on `device`.
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: `[B, channels, size, size]`
    pub fn batch_with(
        &self,
        indices: &[usize],
        augment: Augment,
        seed_of: impl Fn(usize) -> Option<u64>,
        device: &Device,
    ) -> Result<Tensor<4>, DataError> {
        Ok(self.assemble(indices, augment, seed_of)?.to_tensor(device))
    }

    /// Gathers the images at `indices` as a training batch: each cropped and flipped per
    /// `augment`, image `k` of the batch with the seed `seed_of(k)` (`None` = the centre, no
    /// flip). A streamed dataset decodes the files on all cores.
    ///
    /// A streamed file that fails is reported in [`Batch::failed`] and, under
    /// `on_error = "skip"`, replaced by the next image of the same batch that loaded (with its
    /// label and its own crop), so the batch keeps its size and one bad file never stops a run.
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: pixels `[B, channels, size, size]`, labels `[B]`
    ///
    /// # Errors
    /// - [`DataError::Unusable`] for a failed file under `on_error = "fail"`;
    /// - [`DataError::Empty`] when every file of the batch failed.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn assemble(
        &self,
        indices: &[usize],
        augment: Augment,
        seed_of: impl Fn(usize) -> Option<u64>,
    ) -> Result<Batch, DataError> {
        let per_image = self.channels * self.size * self.size;
        let mut pixels = Vec::with_capacity(indices.len() * per_image);
        let shape = [indices.len(), self.channels, self.size, self.size];
        let crop = |image: &[f32], k: usize, out: &mut Vec<f32>| {
            crop_into(
                image,
                self.channels,
                self.stored_size,
                self.size,
                augment,
                seed_of(k),
                out,
            )
        };
        let Images::Streamed(stream) = &self.images else {
            for (k, &i) in indices.iter().enumerate() {
                crop(self.image(i), k, &mut pixels);
            }
            return Ok(Batch {
                pixels,
                shape,
                labels: self.labels_of(indices),
                failed: Vec::new(),
            });
        };
        let loaded = parallel_map(
            indices,
            |&i| self.load(i).map(Cow::into_owned),
            || Err((PathBuf::new(), "decoding thread panicked".to_string())),
        );
        let failed: Vec<(PathBuf, String)> = loaded
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        if let (ErrorPolicy::Fail, Some((path, reason))) = (stream.on_error, failed.first()) {
            return Err(DataError::Unusable {
                path: path.clone(),
                reason: format!("{reason} (at batch time, after the load had checked it)"),
            });
        }
        let mut labels = Vec::with_capacity(indices.len());
        for k in 0..indices.len() {
            // The first image at or after k (cyclically) that loaded stands in for k.
            let Some(j) = (0..indices.len())
                .map(|d| (k + d) % indices.len())
                .find(|&j| loaded[j].is_ok())
            else {
                let (path, reason) = &failed[0];
                return Err(DataError::Empty {
                    origin: format!("a batch of {} streamed images", indices.len()),
                    note: format!(
                        " (every file failed at batch time; first: {}: {reason})",
                        path.display()
                    ),
                });
            };
            if let Ok(image) = &loaded[j] {
                crop(image, k, &mut pixels);
            }
            labels.push(self.labels[indices[j]]);
        }
        Ok(Batch {
            pixels,
            shape,
            labels,
            failed,
        })
    }

    /// The labels at `indices`.
    ///
    /// # Shapes
    /// - `indices`: `[B]`; returns `[B]`
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }

    /// The images at `indices`, in that order, as a dataset of their own (class names kept;
    /// a streamed dataset's subset streams the same files).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let images = match &self.images {
            Images::Cached(_) => {
                let mut values = Vec::with_capacity(indices.len() * self.image_len());
                for &i in indices {
                    values.extend_from_slice(self.image(i));
                }
                Images::Cached(values)
            }
            Images::Streamed(stream) => Images::Streamed(FileStream {
                paths: indices.iter().map(|&i| stream.paths[i].clone()).collect(),
                ..stream.clone()
            }),
        };
        Dataset::new(
            images,
            self.channels,
            self.stored_size,
            self.labels_of(indices),
            self.class_names.clone(),
            indices.iter().map(|&i| self.keys[i].clone()).collect(),
        )
        .with_skipped(self.skipped.clone())
        .cropped_to(self.size)
    }

    /// Number of images per class.
    ///
    /// # Shapes
    /// - returns: `[num_classes]`
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }
}

/// Loads the dataset described by `config`, in the layout the model wants.
///
/// `size` and `channels` are the model's resolution and channel count; `config.image_size` and
/// `config.channels`, when set, must agree with them. Every image is centre-cropped to a square
/// (folder sources), resized to `data.resize` (default `size`) with `data.resize_filter` (see
/// [`crate::ResizeFilter::Triangle`], the default, for why not Lanczos3) and converted to
/// `channels`: 1 = luma (Rec. 709 weights), 3 = RGB, grayscale
/// replicated into all three.
///
/// # Errors
/// - [`DataError::InvalidConfig`] for a bad `[data]` section, `size == 0`, `channels` not 1 or
///   3, or an override that disagrees with the model;
/// - [`DataError::Io`] when the folder (or a sub-folder) cannot be read;
/// - [`DataError::Empty`] when no image could be loaded, naming the source.
pub fn load_dataset(
    config: &DataConfig,
    size: usize,
    channels: usize,
) -> Result<Dataset, DataError> {
    load_dataset_for_run(config, size, channels, 0)
}

/// [`load_dataset`] for a run seeded with `seed`: the seed decides the validation split, over
/// whose training part `missing = "fill"` computes its channel means.
pub fn load_dataset_for_run(
    config: &DataConfig,
    size: usize,
    channels: usize,
    seed: u64,
) -> Result<Dataset, DataError> {
    config.validate()?;
    check_model_layout(config, size, channels)?;
    let stored = config.stored_side(size)?;
    let filter = config.resize_filter.filter_type();
    Ok(load_stored(config, stored, channels, seed, filter)?.cropped_to(size))
}

/// The source converted to `channels` planes of `size`×`size` (the stored side).
fn load_stored(
    config: &DataConfig,
    size: usize,
    channels: usize,
    seed: u64,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    match config.source {
        DataSource::Digits => {
            let (raw, labels) = load_digits()?;
            let plane = DIGITS_SIZE * DIGITS_SIZE;
            let mut images = Vec::with_capacity(labels.len() * channels * size * size);
            for img in raw.chunks_exact(plane) {
                // Back to [0, 1] so the resize clamps to the true range, then out to [-1, 1].
                let unit: Vec<f32> = img.iter().map(|v| (v + 1.0) * 0.5).collect();
                images.extend(gray_plane_to_chw(
                    &unit,
                    DIGITS_SIZE,
                    size,
                    channels,
                    filter,
                ));
            }
            let keys = index_keys(labels.len());
            let class_names = (0..DIGITS_CLASSES).map(|d| d.to_string()).collect();
            Ok(Dataset::new(
                Images::Cached(images),
                channels,
                size,
                labels,
                class_names,
                keys,
            ))
        }
        DataSource::Folder => {
            // validate() guarantees the path is there.
            let Some(root) = config.path.as_deref() else {
                return Err(DataError::invalid("path", "missing"));
            };
            let options = decode_options(config);
            let loaded = load_folder(
                root,
                config.folder_labels,
                size,
                channels,
                &options,
                filter,
                config.cache,
            )?;
            files_dataset(config, loaded, size, channels)
        }
        DataSource::Idx => {
            let Some(images) = config.path.as_deref() else {
                return Err(DataError::invalid("path", "missing"));
            };
            let set = read_idx_images(images, config.labels.as_deref())?;
            let num_classes = set.labels.iter().max().map_or(1, |&m| m + 1);
            let class_names = (0..num_classes).map(|c| c.to_string()).collect();
            idx_dataset(config, set, class_names, size, channels, filter)
        }
        DataSource::Manifest => {
            // validate() guarantees the path is there.
            let Some(manifest) = config.path.as_deref() else {
                return Err(DataError::invalid("path", "missing"));
            };
            let options = decode_options(config);
            let loaded = crate::folder::load_manifest(
                manifest,
                size,
                channels,
                &options,
                filter,
                config.cache,
            )?;
            files_dataset(config, loaded, size, channels)
        }
        DataSource::Npy => {
            let Some(path) = config.path.as_deref() else {
                return Err(DataError::invalid("path", "missing"));
            };
            npy_dataset(config, path, size, channels, seed, filter)
        }
        DataSource::FashionMnist => {
            let dir = config.fashion_mnist_dir();
            let (images, labels) = fashion_mnist_files(&dir, config.subset.unwrap_or_default());
            for file in [&images, &labels] {
                if !file.is_file() {
                    return Err(DataError::invalid(
                        "path",
                        format!(
                            "{} not found: `apt-get install dataset-fashion-mnist` installs \
                             Fashion-MNIST in {FASHION_MNIST_DIR}, or set data.path to the \
                             directory holding its four .gz files",
                            file.display()
                        ),
                    ));
                }
            }
            let set = read_idx_images(&images, Some(&labels))?;
            if let Some(&bad) = set
                .labels
                .iter()
                .find(|&&l| l >= FASHION_MNIST_CLASSES.len())
            {
                return Err(DataError::format(
                    &labels,
                    format!("label {bad} is not one of Fashion-MNIST's 10 classes"),
                ));
            }
            let names = FASHION_MNIST_CLASSES
                .iter()
                .map(|c| c.to_string())
                .collect();
            idx_dataset(config, set, names, size, channels, filter)
        }
    }
}

/// Converts an IDX image set to the model layout (centre-cropped to a square, resized,
/// `channels` planes, values in [-1, 1]; 0 is black).
fn idx_dataset(
    config: &DataConfig,
    set: IdxImages,
    class_names: Vec<String>,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    if set.count == 0 {
        return Err(DataError::Empty {
            origin: config.describe_source(),
            note: String::new(),
        });
    }
    let plane = set.rows * set.cols;
    let mut images = Vec::with_capacity(set.count * channels * size * size);
    for pixels in set.pixels.chunks_exact(plane) {
        let gray = image::GrayImage::from_raw(set.cols as u32, set.rows as u32, pixels.to_vec())
            .expect("rows·cols bytes by construction");
        images.extend(dynamic_to_chw(
            &image::DynamicImage::ImageLuma8(gray),
            size,
            channels,
            filter,
        ));
    }
    Ok(Dataset::new(
        Images::Cached(images),
        channels,
        size,
        set.labels,
        class_names,
        index_keys(set.count),
    ))
}

/// Loads a `.npy` array, applies the missing-value policy and converts to the model layout.
/// Keys are the original indices, so that dropping a sample leaves the others' keys (and their
/// side of the validation split) unchanged.
fn npy_dataset(
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
    let dropped: std::collections::HashSet<usize> = match config.missing {
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

/// `#0`, `#1`, …: the keys of a source whose images have no names.
fn index_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("#{i}")).collect()
}

/// Checks the model's layout and that the config's optional overrides agree with it.
fn check_model_layout(config: &DataConfig, size: usize, channels: usize) -> Result<(), DataError> {
    if size == 0 {
        return Err(DataError::invalid(
            "image_size",
            "the model's resolution is 0; it must be at least 1",
        ));
    }
    if ColorMode::from_channels(channels).is_none() {
        return Err(DataError::invalid(
            "channels",
            format!(
                "the model wants {channels} channels; only 1 (grayscale) or 3 (RGB) can be loaded"
            ),
        ));
    }
    if let Some(s) = config.image_size
        && s != size
    {
        return Err(DataError::invalid(
            "image_size",
            format!("is {s} but the model's resolution is {size}; remove it or make the two agree"),
        ));
    }
    if let Some(c) = config.channels
        && c != channels
    {
        return Err(DataError::invalid(
            "channels",
            format!(
                "is {c} but the model has {channels} channels; remove it or make the two agree"
            ),
        ));
    }
    Ok(())
}

/// " (3 files skipped; first: a.png: reason)", or "" when nothing was skipped.
fn skipped_note(skipped: &[(PathBuf, String)]) -> String {
    match skipped.first() {
        None => String::new(),
        Some((path, reason)) => format!(
            " ({} file{} skipped; first: {}: {})",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            path.display(),
            reason
        ),
    }
}

/// The decoder's limits from `[data]` (`max_pixels`, `background`), for file sources.
fn decode_options(config: &DataConfig) -> DecodeOptions {
    DecodeOptions {
        max_pixels: config.max_pixels,
        background: config.background,
    }
}

/// The dataset of decoded image files (a folder or a manifest's), after the `on_error` policy:
/// under `"fail"` the first skipped file stops the load, naming it; no usable image is an
/// error naming the source and what was skipped.
fn files_dataset(
    config: &DataConfig,
    loaded: crate::folder::FolderImages,
    size: usize,
    channels: usize,
) -> Result<Dataset, DataError> {
    if config.on_error == ErrorPolicy::Fail
        && let Some((path, reason)) = loaded.skipped.first()
    {
        return Err(DataError::Unusable {
            path: path.clone(),
            reason: reason.clone(),
        });
    }
    if loaded.labels.is_empty() {
        return Err(DataError::Empty {
            origin: config.describe_source(),
            note: skipped_note(&loaded.skipped),
        });
    }
    let images = if config.cache {
        Images::Cached(loaded.images)
    } else {
        Images::Streamed(FileStream {
            paths: loaded.paths,
            options: decode_options(config),
            filter: config.resize_filter,
            on_error: config.on_error,
            standardization: None,
        })
    };
    Ok(Dataset::new(
        images,
        channels,
        size,
        loaded.labels,
        loaded.class_names,
        loaded.keys,
    )
    .with_skipped(loaded.skipped))
}
