//! The sources a dataset is loaded from, one per file, and the dispatch on `data.source`.
//!
//! Every source ends in [`Dataset::new`]: the embedded digits ([`digits`]), IDX files and
//! Fashion-MNIST ([`idx`]), `.npy` arrays ([`npy`]), and image files — a folder ([`folder`]) or
//! a CSV manifest ([`manifest`]), which read their files alike ([`image_files`]).

pub(crate) mod digits;
pub(crate) mod folder;
pub(crate) mod idx;
pub(crate) mod image_files;
pub(crate) mod manifest;
pub(crate) mod npy;

use std::path::Path;

use image::imageops::FilterType;

use crate::captions;
use crate::config::{ColorMode, DataConfig, DataSource};
use crate::{DataError, Dataset};

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
    let data = load_stored(config, stored, channels, seed, filter)?;
    // Templates need only class names, so they fit every source; file captions came with the
    // files.
    let data = match captions::templates(config) {
        Some(templates) => data.with_captions(Some(templates)),
        None => data,
    };
    Ok(data.cropped_to(size))
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
        DataSource::Digits => digits::digits_dataset(size, channels, filter),
        DataSource::Folder => {
            folder::folder_dataset(config, required_path(config)?, size, channels, filter)
        }
        DataSource::Idx => idx::idx_dataset(config, required_path(config)?, size, channels, filter),
        DataSource::Manifest => {
            manifest::manifest_dataset(config, required_path(config)?, size, channels, filter)
        }
        DataSource::Npy => {
            npy::npy_dataset(config, required_path(config)?, size, channels, seed, filter)
        }
        DataSource::FashionMnist => idx::fashion_mnist_dataset(config, size, channels, filter),
    }
}

/// `data.path`, which [`DataConfig::validate`] guarantees for every source that reads one.
fn required_path(config: &DataConfig) -> Result<&Path, DataError> {
    config
        .path
        .as_deref()
        .ok_or_else(|| DataError::invalid("path", "missing"))
}

/// `#0`, `#1`, …: the keys of a source whose images have no names.
pub(crate) fn index_keys(count: usize) -> Vec<String> {
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
