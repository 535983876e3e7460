//! Data for oxidiff: the embedded 8×8 digits, folders and CSV manifests of image files, IDX files
//! (Fashion-MNIST) and `.npy` arrays, checked and loaded into memory as `[N, C, H, W]` values in
//! [-1, 1] (image files can instead be streamed, with prefetching); a seeded, resumable epoch
//! order; captions (diffusers' `metadata.jsonl`, kohya's sidecar files, a manifest column,
//! class-name templates) and the caption drawn per step; sample-grid PNGs.
//!
//! ```no_run
//! use oxidiff_data::{DataConfig, EpochOrder, load_dataset};
//! use burn::tensor::Device;
//!
//! let data = load_dataset(&DataConfig::default(), 8, 1)?; // the digits, 8×8 grayscale
//! let order = EpochOrder::new(data.len(), 64, 42);
//! let batch = data.batch(&order.batch_indices(0), &Device::flex())?; // [64, 1, 8, 8]
//! # Ok::<(), oxidiff_data::DataError>(())
//! ```

mod atomic;
mod augment;
mod captions;
mod config;
mod dataset;
mod decode;
mod epoch_order;
mod error;
mod grid;
mod inspect;
mod parallel;
mod png;
mod prefetch;
mod report;
mod seeds;
mod source;
mod split;
mod standardize;
mod transform;

pub use atomic::{remove_stale_temporaries, replace_file};
pub use augment::{Augment, CropMode, crop_into};
pub use captions::Captions;
pub use captions::config::{CaptionSource, DEFAULT_CAPTION_COLUMN, DEFAULT_CAPTION_EXTENSION};
pub use captions::draw::{CaptionOptions, draw_caption, drop_caption, pick_caption, shuffle_tags};
pub use captions::metadata::{METADATA_FILE, read_metadata};
pub use captions::sidecar::{read_sidecar, sidecar_path};
pub use config::{
    ColorMode, DataConfig, DataSource, ErrorPolicy, FolderLabels, ResizeFilter, Standardize,
};
pub use dataset::{Batch, Dataset, FileStream, Images};
pub use decode::{DecodeOptions, SkipReason, decode_image};
pub use epoch_order::EpochOrder;
pub use error::DataError;
pub use grid::{GRID_PADDING, save_grid, save_png, tensor_to_grid_image};
pub use inspect::{Inspection, channel_stats, inspect};
pub use png::PngHeader;
pub use prefetch::Prefetcher;
pub use report::{CaptionReport, ClassCount, DataReport, LateSkip, SkippedInput, TokenLengths};
pub use seeds::{SplitMix64, derive_seed, mix64};
pub use source::digits::{DIGITS_CLASSES, DIGITS_LEN, DIGITS_SIZE, load_digits};
pub use source::folder::{
    FolderScan, IMAGE_EXTENSIONS, load_folder, scan_folder, scan_folder_with,
};
pub use source::idx::{
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, IdxArray, IdxImages, Subset, fashion_mnist_files,
    parse_idx, read_idx, read_idx_images,
};
pub use source::image_files::{FolderImages, ImageEntry, load_image, read_image_exact};
pub use source::manifest::{
    ManifestRow, ManifestScan, load_manifest, read_manifest, read_manifest_with,
};
pub use source::npy::format::{NpyArray, NpyData, parse_npy, read_npy};
pub use source::npy::images::{
    MissingValues, NpyImages, NpyLayout, apply_missing_values, non_finite_samples, npy_images,
};
pub use source::{load_dataset, load_dataset_for_run};
pub use split::{
    Split, SplitRecord, split_for, split_from_list, stratified_split, stratified_subset,
};
pub use standardize::ChannelStats;
