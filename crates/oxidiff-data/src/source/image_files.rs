//! Image files on disk (PNG, JPEG, BMP, WebP, TIFF, GIF), as a folder ([`super::folder`]) or a
//! CSV manifest ([`super::manifest`]) lists them. Both read their files here, so switching from
//! one to the other never changes an image's pixels:
//!
//! - A file that cannot be decoded (see [`crate::decode_image`]: corrupt, truncated, zero-sized, over
//!   `data.max_pixels`) is skipped and reported with its reason; it never stops the load unless
//!   `data.on_error = "fail"`. A folder that cannot be read does stop it, naming the folder.
//! - Images are centre-cropped to a square, resized to `size`×`size` and converted to the wanted
//!   channel count (see the crate docs); JPEG EXIF orientation is applied first.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::config::{DataConfig, ErrorPolicy};
use crate::decode::{DecodeOptions, decode_image};
use crate::parallel::parallel_map;
use crate::transform::dynamic_to_chw;
use crate::{DataError, Dataset, FileStream, Images};

/// The decoded contents of an image folder or of the files a manifest lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderImages {
    /// `[N, channels, size, size]`, flattened, values in [-1, 1].
    pub images: Vec<f32>,
    /// `[N]`, indices into `class_names`.
    pub labels: Vec<usize>,
    /// Sorted class names: sub-folder names or manifest labels; a single entry (the folder's own
    /// name) for a folder without classes.
    pub class_names: Vec<String>,
    /// Files that were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// `[N]`: each image's path relative to the root folder, or as written in the manifest,
    /// `/`-separated (its identity in a validation split).
    pub keys: Vec<String>,
    /// `[N]`: each image's file.
    pub paths: Vec<PathBuf>,
}

/// An image file found in a folder or listed in a manifest, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub label: usize,
}

/// Decodes one image file and converts it to the model layout.
///
/// The error is the reason the file is unusable, worded for a "skipped FILE: REASON" line.
///
/// # Shapes
/// - returns: `[channels, size, size]` flattened, values in [-1, 1]
pub fn load_image(
    path: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
) -> Result<Vec<f32>, String> {
    let img = decode_image(path, options).map_err(|reason| reason.0)?;
    // `image` decoders are meant never to panic, but this runs on arbitrary files from disk, and
    // one hostile file must cost one skipped image, not the training run.
    catch_unwind(AssertUnwindSafe(|| {
        dynamic_to_chw(&img, size, channels, filter)
    }))
    .map_err(|_| "image conversion panicked".to_string())
}

/// Reads one image that must already be `size`×`size` (an image to inpaint or denoise, whose
/// pixels must line up with a mask or be compared to the result: resizing it silently would
/// change what the user asked for), as `channels` planes in [-1, 1].
///
/// # Shapes
/// - returns: `[channels, size, size]` flattened
///
/// # Errors
/// [`DataError::Format`] naming the file when it cannot be decoded, or when its size is not
/// `size`×`size` (both sizes in the message).
pub fn read_image_exact(
    path: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
) -> Result<Vec<f32>, DataError> {
    let unusable = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let img = decode_image(path, options).map_err(|reason| unusable(reason.0))?;
    if (img.width() as usize, img.height() as usize) != (size, size) {
        return Err(unusable(format!(
            "is {}×{} but the model works on {size}×{size} images; resize or crop it first",
            img.width(),
            img.height()
        )));
    }
    Ok(dynamic_to_chw(&img, size, channels, FilterType::Triangle))
}

/// Decodes `entries` in parallel, keeping their order. With `keep_pixels = false` only the
/// outcome is kept (an empty vector for a usable file), so checking a collection larger than
/// memory holds one image per thread at a time.
pub(crate) fn decode_all(
    entries: &[ImageEntry],
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
    keep_pixels: bool,
) -> Vec<Result<Vec<f32>, String>> {
    parallel_map(
        entries,
        |e| {
            load_image(&e.path, size, channels, options, filter)
                .map(|pixels| if keep_pixels { pixels } else { Vec::new() })
        },
        || Err("decoding thread panicked".to_string()),
    )
}

/// Keeps the decoded images of `results` in order, with their labels and keys; the files that
/// failed are appended to `skipped` with their reason.
pub(crate) fn gather(
    results: impl IntoIterator<Item = (ImageEntry, String, Result<Vec<f32>, String>)>,
    class_names: Vec<String>,
    mut skipped: Vec<(PathBuf, String)>,
) -> FolderImages {
    let results: Vec<_> = results.into_iter().collect();
    // Sized once up front: a large dataset's pixels would otherwise be copied at every growth.
    let capacity = results
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok().map(Vec::len))
        .sum();
    let mut images = Vec::with_capacity(capacity);
    let mut labels = Vec::new();
    let mut keys = Vec::new();
    let mut paths = Vec::new();
    for (entry, key, result) in results {
        match result {
            Ok(pixels) => {
                images.extend_from_slice(&pixels);
                labels.push(entry.label);
                keys.push(key);
                paths.push(entry.path);
            }
            Err(reason) => skipped.push((entry.path, reason)),
        }
    }
    FolderImages {
        images,
        labels,
        class_names,
        skipped,
        keys,
        paths,
    }
}

/// The dataset of decoded image files (a folder or a manifest's), after the `on_error` policy:
/// under `"fail"` the first skipped file stops the load, naming it; no usable image is an
/// error naming the source and what was skipped.
pub(crate) fn files_dataset(
    config: &DataConfig,
    loaded: FolderImages,
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
            options: config.decode_options(),
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
