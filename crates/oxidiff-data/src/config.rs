//! The `[data]` section of a run config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::augment::{Augment, CropMode};
use crate::captions::config::{CaptionSource, validate_captions};
use crate::decode::DecodeOptions;
use crate::source::idx::{FASHION_MNIST_DIR, Subset};
use crate::source::npy::images::{MissingValues, NpyLayout};

/// Where training images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The 8×8 handwritten digits embedded in the binary (1,797 images, 10 classes).
    #[default]
    Digits,
    /// A folder of PNG/JPEG files, searched recursively; `path` names it.
    Folder,
    /// An IDX image file (`[N, rows, cols]` unsigned bytes, gzipped or not) named by `path`, with
    /// an optional IDX label file named by `labels`.
    Idx,
    /// Fashion-MNIST (60,000 + 10,000 28×28 grayscale images, 10 classes) from the directory
    /// `path`, by default where `apt-get install dataset-fashion-mnist` puts it; `subset`
    /// chooses the training or the test files.
    FashionMnist,
    /// A CSV manifest named by `path`: rows `path,label` (an optional header row `path,label`),
    /// image paths relative to the manifest's directory (or absolute), labels as class names.
    Manifest,
    /// A NumPy `.npy` array named by `path`: u8 (0–255) or f32/f64 (in [0, 1]), shaped
    /// `[N, H, W]`, or `[N, H, W, C]` / `[N, C, H, W]` per `layout`; every image is class 0.
    Npy,
}

/// Where a folder's class labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderLabels {
    /// Each first-level sub-folder is a class (sorted names → 0, 1, …); files directly in the
    /// folder belong to no class and are skipped.
    #[default]
    Subfolders,
    /// No classes: every image under the folder, at any depth, is class 0.
    None,
}

/// How pixel values are scaled for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standardize {
    /// [0, 1] → [-1, 1] (DDPM's convention).
    #[default]
    MinusOneOne,
    /// Per channel, `(v − mean) / std` with mean and std of the training split (in [0, 1]),
    /// saved with the run as `standardization.json` and inverted when images are written.
    PerChannel,
}

/// The resampling filter of every resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// The default. `image`'s resampler widens the kernel by the downscale ratio, so when
    /// shrinking the triangle becomes a tent over each output pixel's whole footprint — an
    /// area-like, anti-aliased average — and when enlarging it is plain bilinear interpolation.
    /// It never overshoots: Lanczos3's overshoot at edges is clipped at the ends of [0, 1], which
    /// piles mass onto exactly -1 and 1 and skews the distribution the model learns.
    #[default]
    Triangle,
    /// Sharper; may ring at edges (clipped at the ends of [0, 1]).
    Lanczos3,
    CatmullRom,
    Nearest,
}

impl ResizeFilter {
    pub fn filter_type(self) -> image::imageops::FilterType {
        use image::imageops::FilterType;
        match self {
            Self::Triangle => FilterType::Triangle,
            Self::Lanczos3 => FilterType::Lanczos3,
            Self::CatmullRom => FilterType::CatmullRom,
            Self::Nearest => FilterType::Nearest,
        }
    }
}

/// What happens to an unusable input (unreadable, corrupt, too large, no pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Leave it out, list it with its reason in the run's `data_report.json`, and go on.
    #[default]
    Skip,
    /// Stop before training with an error naming the first such file and its reason.
    Fail,
}

/// The colour layout of the tensors handed to the model.
///
/// Not a field of [`DataConfig`] (the channel count is), but the place where "1 or 3 channels" is
/// spelled out for callers that want an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColorMode {
    /// One channel: the sRGB luma (Rec. 709 weights) of colour sources.
    Grayscale,
    /// Three channels; grayscale sources are replicated into R, G and B.
    Rgb,
}

impl ColorMode {
    /// The number of channels of this mode.
    pub fn channels(self) -> usize {
        match self {
            Self::Grayscale => 1,
            Self::Rgb => 3,
        }
    }

    /// The mode with `channels` channels, or `None` for a count other than 1 or 3.
    pub fn from_channels(channels: usize) -> Option<Self> {
        match channels {
            1 => Some(Self::Grayscale),
            3 => Some(Self::Rgb),
            _ => None,
        }
    }
}

/// The `[data]` section of a run config.
///
/// `image_size` and `channels` are optional overrides: the model decides both, and the trainer
/// passes the model's values to [`crate::load_dataset`]. Setting them here only serves as a check
/// that the data is what the user thinks it is; a disagreement is an error, not a silent resize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    /// The image folder (`folder`), the IDX image file (`idx`), the `.npy` array (`npy`), the
    /// CSV manifest (`manifest`) or the directory of the Fashion-MNIST files (`fashion-mnist`,
    /// optional); refused for `digits`.
    pub path: Option<PathBuf>,
    /// The IDX label file for `source = "idx"` (optional: without it every image is class 0).
    pub labels: Option<PathBuf>,
    /// `train` (default) or `test`, for `source = "fashion-mnist"`.
    pub subset: Option<Subset>,
    /// Axis order of a 4-D `.npy` array: `nhwc` (default) or `nchw`.
    pub layout: NpyLayout,
    /// NaN/±Inf in a `.npy` array: `skip` the image (default), `fill` with the channel mean over
    /// the training split, or `fail`.
    pub missing: MissingValues,
    /// Folder sources: class labels from sub-folders (default) or none.
    pub folder_labels: FolderLabels,
    /// `minus-one-one` (default) or `per-channel` standardisation.
    pub standardize: Standardize,
    /// Side the images are stored at (the shorter side resized to it, then a centred square):
    /// at least the model's size; a larger value leaves room for `crop = "random"`. Default: the
    /// model's size.
    pub resize: Option<usize>,
    pub resize_filter: ResizeFilter,
    /// Which square of the stored image a training batch sees: `center` or `random`
    /// (validation and previews always take the centre).
    pub crop: CropMode,
    /// Mirror training images left–right with probability ½.
    pub flip: bool,
    /// Largest image accepted, in pixels (width × height, read from the file's header before
    /// decoding): a guard against decompression bombs. Default 64 Mi pixels.
    pub max_pixels: u64,
    /// RGB colour that transparent pixels are composited onto (the model has no alpha channel).
    pub background: [u8; 3],
    /// What to do with a file that cannot be used: skip it and report it (default), or stop.
    pub on_error: ErrorPolicy,
    /// Keep the decoded images in memory (default). `false` streams image files (`folder`,
    /// `manifest`): every file is still decoded once at the start to find the bad ones, but the
    /// pixels are dropped and each batch is decoded again, ahead of time on a prefetch thread —
    /// for a collection larger than memory.
    pub cache: bool,
    /// Fraction of every class held out for validation (default 0.05; 0 = none). The split is
    /// seeded by the run seed and saved with the run as `split.json`.
    pub validation_fraction: f64,
    /// A text file listing the held-out images instead, one key per line (a path relative to
    /// the folder, or `#index` for array sources); when given, `validation_fraction` is not used.
    pub validation_list: Option<PathBuf>,
    /// Side of the square images fed to the model; `None` = the model's resolution.
    pub image_size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB); `None` = the model's channel count.
    pub channels: Option<usize>,
    /// Where each image's captions come from: `none` (default), `metadata` (diffusers'
    /// `metadata.jsonl` in the folder: `file_name` and `text`, a string or a list of strings),
    /// `sidecar` (kohya's `image.txt` next to `image.png`), `manifest` (a third CSV column,
    /// `path,label,caption`) or `templates` (`caption_templates` over the class names). An image
    /// without a caption gets the empty one and is listed in `data_report.json`.
    pub captions: CaptionSource,
    /// `captions = "sidecar"`: the caption file's extension, dot included (kohya's
    /// `caption_extension`). Default `.txt`.
    pub caption_extension: Option<String>,
    /// `captions = "metadata"`: the `metadata.jsonl` field holding the captions (diffusers'
    /// `--caption_column`). Default `text`.
    pub caption_column: Option<String>,
    /// `captions = "templates"`: captions with `{}` for the class name, e.g.
    /// `["a photo of a {}", "a picture of a {}"]`; one drawn per image per step.
    pub caption_templates: Vec<String>,
    /// Shuffle the comma-separated tags of each caption per step (kohya's `shuffle_caption`).
    pub shuffle_caption: bool,
    /// With `shuffle_caption`: the first this many tags stay in place (kohya's `keep_tokens`).
    pub keep_tokens: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        let decode = DecodeOptions::default();
        Self {
            source: DataSource::default(),
            path: None,
            labels: None,
            subset: None,
            layout: NpyLayout::default(),
            missing: MissingValues::default(),
            folder_labels: FolderLabels::default(),
            standardize: Standardize::default(),
            resize: None,
            resize_filter: ResizeFilter::default(),
            crop: CropMode::default(),
            flip: false,
            max_pixels: decode.max_pixels,
            background: decode.background,
            on_error: ErrorPolicy::default(),
            cache: true,
            validation_fraction: 0.05,
            validation_list: None,
            image_size: None,
            channels: None,
            captions: CaptionSource::default(),
            caption_extension: None,
            caption_column: None,
            caption_templates: Vec::new(),
            shuffle_caption: false,
            keep_tokens: 0,
        }
    }
}

impl DataConfig {
    /// Checks the section on its own (the model's size and channels are checked by
    /// [`crate::load_dataset`]). Errors name the key relative to `[data]`.
    pub fn validate(&self) -> Result<(), DataError> {
        let needs_path = match self.source {
            DataSource::Folder => Some("the folder of images to read"),
            DataSource::Idx => Some("the IDX image file to read"),
            DataSource::Npy => Some("the .npy array to read"),
            DataSource::Manifest => Some("the CSV manifest (path,label) to read"),
            DataSource::Digits | DataSource::FashionMnist => None,
        };
        match (needs_path, &self.path) {
            (Some(what), None) => {
                return Err(DataError::invalid(
                    "path",
                    format!("missing: source = \"{}\" needs {what}", self.source.name()),
                ));
            }
            (_, Some(p)) if p.as_os_str().is_empty() => {
                return Err(DataError::invalid("path", "is empty"));
            }
            // A path next to the embedded source is almost certainly a forgotten
            // `source = "folder"`; training on digits instead would waste the whole run.
            (None, Some(p)) if self.source == DataSource::Digits => {
                return Err(DataError::invalid(
                    "path",
                    format!(
                        "is set ({}) but source = \"digits\" reads no files; \
                         set source = \"folder\" or remove path",
                        p.display()
                    ),
                ));
            }
            _ => {}
        }
        if self.labels.is_some() && self.source != DataSource::Idx {
            return Err(DataError::invalid(
                "labels",
                format!(
                    "is only read with source = \"idx\" (source is \"{}\")",
                    self.source.name()
                ),
            ));
        }
        if self.subset.is_some() && self.source != DataSource::FashionMnist {
            return Err(DataError::invalid(
                "subset",
                format!(
                    "is only read with source = \"fashion-mnist\" (source is \"{}\")",
                    self.source.name()
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(DataError::invalid(
                "validation_fraction",
                format!(
                    "is {}; must be at least 0 and below 1",
                    self.validation_fraction
                ),
            ));
        }
        if !self.cache && !matches!(self.source, DataSource::Folder | DataSource::Manifest) {
            return Err(DataError::invalid(
                "cache",
                format!(
                    "= false streams image files (source = \"folder\" or \"manifest\"); \
                     source = \"{}\" is read as one array and held in memory",
                    self.source.name()
                ),
            ));
        }
        if self.max_pixels == 0 {
            return Err(DataError::invalid("max_pixels", "must be at least 1"));
        }
        if self.image_size == Some(0) {
            return Err(DataError::invalid("image_size", "must be at least 1"));
        }
        if let Some(c) = self.channels
            && ColorMode::from_channels(c).is_none()
        {
            return Err(DataError::invalid(
                "channels",
                format!("is {c}; must be 1 (grayscale) or 3 (RGB)"),
            ));
        }
        validate_captions(self)
    }

    /// Human-readable name of the source, used in messages (e.g. "folder /data/cats").
    pub fn describe_source(&self) -> String {
        match (self.source, &self.path) {
            (DataSource::Digits, _) => "the embedded digits dataset".to_string(),
            (DataSource::Folder, Some(p)) => format!("folder {}", p.display()),
            (DataSource::Idx, Some(p)) => format!("IDX file {}", p.display()),
            (DataSource::Npy, Some(p)) => format!("NumPy array {}", p.display()),
            (DataSource::Manifest, Some(p)) => format!("manifest {}", p.display()),
            (
                DataSource::Folder | DataSource::Idx | DataSource::Npy | DataSource::Manifest,
                None,
            ) => {
                format!("{} (no path set)", self.source.name())
            }
            (DataSource::FashionMnist, _) => format!(
                "Fashion-MNIST ({} files in {})",
                self.subset.unwrap_or_default().name(),
                self.fashion_mnist_dir().display()
            ),
        }
    }

    /// The batch-time transforms this section asks for.
    pub fn augment(&self) -> Augment {
        Augment {
            crop: self.crop,
            flip: self.flip,
        }
    }

    /// The side images are stored at for a model of `size`.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] when `resize` is below the model's size.
    pub fn stored_side(&self, size: usize) -> Result<usize, DataError> {
        match self.resize {
            None => Ok(size),
            Some(side) if side >= size => Ok(side),
            Some(side) => Err(DataError::invalid(
                "resize",
                format!(
                    "is {side}, below the model's size {size}; crops cannot be larger than the image"
                ),
            )),
        }
    }

    /// The decoder's limits for image files (`max_pixels`, `background`).
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: self.max_pixels,
            background: self.background,
        }
    }

    /// The directory Fashion-MNIST is read from: `path`, or where Debian's package puts it.
    pub fn fashion_mnist_dir(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR))
    }
}

impl DataSource {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Digits => "digits",
            Self::Folder => "folder",
            Self::Idx => "idx",
            Self::FashionMnist => "fashion-mnist",
            Self::Npy => "npy",
            Self::Manifest => "manifest",
        }
    }
}
