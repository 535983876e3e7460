//! Captions of image datasets, for text-to-image training: where they come from
//! ([`CaptionSource`]: diffusers' `metadata.jsonl`, kohya's sidecar files, a manifest column,
//! templates over class names) and the caption an image gets at each step ([`draw_caption`]).
//!
//! An image without a caption keeps its place with the empty caption (the unconditional
//! prompt) and is listed in the data report; an image whose caption file cannot be read is an
//! unusable input, skipped or fatal per `data.on_error` like a corrupt image.

pub(crate) mod config;
pub(crate) mod draw;
pub(crate) mod metadata;
pub(crate) mod sidecar;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use crate::DataError;
use crate::config::DataConfig;
use crate::parallel::parallel_map;
use crate::source::image_files::FolderImages;

use self::config::{CaptionSource, DEFAULT_CAPTION_COLUMN, DEFAULT_CAPTION_EXTENSION};
use self::draw::CaptionOptions;

/// The captions of a dataset's images.
#[derive(Debug, Clone, PartialEq)]
pub enum Captions {
    /// `[N]`: each image's captions, one drawn per step; an empty list is a missing caption
    /// (the image is shown with the empty prompt).
    PerImage(Vec<Vec<String>>),
    /// Every image's captions are these templates with `{}` replaced by its class name, so an
    /// image has as many captions as there are templates. Kept as templates rather than
    /// expanded: Fashion-MNIST's 60,000 images would otherwise each hold copies of them.
    Templates(Vec<String>),
}

impl Captions {
    /// The captions of image `i`, whose class is named `class_name`.
    ///
    /// # Panics
    /// If `i` is out of range of [`Captions::PerImage`].
    pub fn of(&self, i: usize, class_name: &str) -> Cow<'_, [String]> {
        match self {
            Self::PerImage(per_image) => Cow::Borrowed(&per_image[i]),
            Self::Templates(templates) => Cow::Owned(
                templates
                    .iter()
                    .map(|t| t.replace("{}", class_name))
                    .collect(),
            ),
        }
    }

    /// The captions of the images at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is out of range of [`Captions::PerImage`].
    pub fn subset(&self, indices: &[usize]) -> Self {
        match self {
            Self::PerImage(per_image) => {
                Self::PerImage(indices.iter().map(|&i| per_image[i].clone()).collect())
            }
            Self::Templates(templates) => Self::Templates(templates.clone()),
        }
    }
}

impl DataConfig {
    /// How captions vary per step: `shuffle_caption` and `keep_tokens`, with captions dropped
    /// to the empty prompt at `dropout_rate` (the trainer's `train.caption_dropout`).
    pub fn caption_options(&self, dropout_rate: f64) -> CaptionOptions {
        CaptionOptions {
            dropout_rate,
            shuffle: self.shuffle_caption,
            keep_tokens: self.keep_tokens,
        }
    }
}

/// Where the image files of a dataset were listed, for the captions that come with them.
pub(crate) enum FileOrigin<'a> {
    /// The folder `root` (its `metadata.jsonl`, its sidecar files).
    Folder(&'a Path),
    /// A manifest, with the caption column's text by image key (rows without one left out).
    Manifest(HashMap<String, String>),
}

/// The captions of the decoded image files `loaded` per `config.captions` (none for
/// `"none"` and `"templates"`, which [`templates`] gives), and `loaded` without the images whose
/// caption file could not be read (added to its skipped files with the reason).
///
/// # Errors
/// [`DataError::Io`] / [`DataError::Format`] for a missing or broken `metadata.jsonl`.
pub(crate) fn file_captions(
    config: &DataConfig,
    loaded: FolderImages,
    origin: FileOrigin<'_>,
) -> Result<(FolderImages, Option<Captions>), DataError> {
    let per_image: Vec<Result<Vec<String>, String>> = match (config.captions, origin) {
        (CaptionSource::None | CaptionSource::Templates, _) => return Ok((loaded, None)),
        (CaptionSource::Metadata, FileOrigin::Folder(root)) => {
            let column = config
                .caption_column
                .as_deref()
                .unwrap_or(DEFAULT_CAPTION_COLUMN);
            let mut by_key = metadata::read_metadata(&metadata::metadata_path(root), column)?;
            loaded
                .keys
                .iter()
                .map(|key| Ok(by_key.remove(key).map(|(_, t)| t).unwrap_or_default()))
                .collect()
        }
        (CaptionSource::Sidecar, _) => {
            let extension = config
                .caption_extension
                .as_deref()
                .unwrap_or(DEFAULT_CAPTION_EXTENSION);
            parallel_map(
                &loaded.paths,
                |path| sidecar::read_sidecar(&sidecar::sidecar_path(path, extension)),
                || Err("caption reading thread panicked".to_string()),
            )
        }
        (CaptionSource::Manifest, FileOrigin::Manifest(mut by_key)) => loaded
            .keys
            .iter()
            .map(|key| Ok(by_key.remove(key).into_iter().collect()))
            .collect(),
        // DataConfig::validate pairs each caption source with the sources it reads.
        (captions, _) => {
            return Err(DataError::invalid(
                "captions",
                format!(
                    "= \"{}\" cannot be read with source = \"{}\"",
                    captions.name(),
                    config.source.name()
                ),
            ));
        }
    };
    let (loaded, captions) = drop_unreadable(loaded, per_image);
    Ok((loaded, Some(Captions::PerImage(captions))))
}

/// `config.caption_templates` as captions, when `config.captions = "templates"`.
pub(crate) fn templates(config: &DataConfig) -> Option<Captions> {
    (config.captions == CaptionSource::Templates)
        .then(|| Captions::Templates(config.caption_templates.clone()))
}

/// `loaded` and its captions without the images whose captions failed, those recorded as
/// skipped with the reason.
fn drop_unreadable(
    mut loaded: FolderImages,
    per_image: Vec<Result<Vec<String>, String>>,
) -> (FolderImages, Vec<Vec<String>>) {
    if per_image.iter().all(Result::is_ok) {
        let captions = per_image.into_iter().flatten().collect();
        return (loaded, captions);
    }
    // Images are empty when the pixels are streamed (`data.cache = false`).
    let per = loaded.images.len() / loaded.labels.len().max(1);
    let old = std::mem::take(&mut loaded.images);
    let mut kept = FolderImages {
        images: Vec::with_capacity(old.len()),
        labels: Vec::new(),
        class_names: std::mem::take(&mut loaded.class_names),
        skipped: std::mem::take(&mut loaded.skipped),
        keys: Vec::new(),
        paths: Vec::new(),
    };
    let mut captions = Vec::new();
    let rows = loaded.labels.into_iter().zip(loaded.keys).zip(loaded.paths);
    for (i, (((label, key), path), result)) in rows.zip(per_image).enumerate() {
        match result {
            Ok(texts) => {
                kept.images.extend_from_slice(&old[i * per..(i + 1) * per]);
                kept.labels.push(label);
                kept.keys.push(key);
                kept.paths.push(path);
                captions.push(texts);
            }
            Err(reason) => kept.skipped.push((path, reason)),
        }
    }
    (kept, captions)
}
