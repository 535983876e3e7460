//! The `[data]` section of a run config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// Where training images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The 8×8 handwritten digits embedded in the binary (1,797 images, 10 classes).
    #[default]
    Digits,
    /// A folder of PNG/JPEG files, searched recursively; `path` names it.
    Folder,
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    /// The image folder; required for `source = "folder"`, refused otherwise.
    pub path: Option<PathBuf>,
    /// Side of the square images fed to the model; `None` = the model's resolution.
    pub image_size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB); `None` = the model's channel count.
    pub channels: Option<usize>,
}

impl DataConfig {
    /// Checks the section on its own (the model's size and channels are checked by
    /// [`crate::load_dataset`]). Errors name the key relative to `[data]`.
    pub fn validate(&self) -> Result<(), DataError> {
        match (self.source, &self.path) {
            (DataSource::Folder, None) => {
                return Err(DataError::invalid(
                    "path",
                    "missing: source = \"folder\" needs the folder of images to read",
                ));
            }
            (DataSource::Folder, Some(p)) if p.as_os_str().is_empty() => {
                return Err(DataError::invalid(
                    "path",
                    "is empty: source = \"folder\" needs the folder of images to read",
                ));
            }
            // A path next to the embedded source is almost certainly a forgotten
            // `source = "folder"`; training on digits instead would waste the whole run.
            (DataSource::Digits, Some(p)) => {
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
        Ok(())
    }

    /// Human-readable name of the source, used in messages (e.g. "folder /data/cats").
    pub fn describe_source(&self) -> String {
        match (self.source, &self.path) {
            (DataSource::Digits, _) => "the embedded digits dataset".to_string(),
            (DataSource::Folder, Some(p)) => format!("folder {}", p.display()),
            (DataSource::Folder, None) => "folder (no path set)".to_string(),
        }
    }
}
