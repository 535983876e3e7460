//! The caption keys of `[data]`: which convention the captions come from, and the checks that
//! keep a key from being set where nothing reads it.

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::config::{DataConfig, DataSource};

/// The sidecar extension when `caption_extension` is not set. kohya's sd-scripts default to
/// `.caption`, but most captioning tools (and kohya's own examples) write `.txt`.
pub const DEFAULT_CAPTION_EXTENSION: &str = ".txt";

/// The metadata field read when `caption_column` is not set: diffusers' `--caption_column`
/// default and the name the Hugging Face imagefolder examples use.
pub const DEFAULT_CAPTION_COLUMN: &str = "text";

/// Where each image's captions come from (`data.captions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptionSource {
    /// No captions: an unconditional (or class-conditional) dataset.
    #[default]
    None,
    /// diffusers' imagefolder convention: `metadata.jsonl` at the top of the folder, one JSON
    /// object a line with `file_name` (relative to the folder) and `text` (`caption_column`): a
    /// string, or a list of strings for several captions of one image. `source = "folder"`.
    Metadata,
    /// kohya's sidecar files: `image.png` + `image.txt` (`caption_extension`), each non-blank
    /// line one caption. `source = "folder"` or `"manifest"`.
    Sidecar,
    /// A third CSV column of the manifest: rows `path,label,caption` (header
    /// `path,label,caption` or `path,label,text`). `source = "manifest"`.
    Manifest,
    /// `caption_templates` with `{}` replaced by each image's class name; one template drawn per
    /// step. Any source with class names.
    Templates,
}

impl CaptionSource {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Metadata => "metadata",
            Self::Sidecar => "sidecar",
            Self::Manifest => "manifest",
            Self::Templates => "templates",
        }
    }
}

/// Checks the caption keys of `config` (called by [`DataConfig::validate`]).
pub(crate) fn validate_captions(config: &DataConfig) -> Result<(), DataError> {
    let captions = config.captions;
    let source_ok = match captions {
        CaptionSource::None | CaptionSource::Templates => true,
        CaptionSource::Metadata => config.source == DataSource::Folder,
        CaptionSource::Sidecar => {
            matches!(config.source, DataSource::Folder | DataSource::Manifest)
        }
        CaptionSource::Manifest => config.source == DataSource::Manifest,
    };
    if !source_ok {
        let wants = match captions {
            CaptionSource::Metadata => "source = \"folder\" (metadata.jsonl sits in the folder)",
            CaptionSource::Sidecar => "source = \"folder\" or \"manifest\" (image files)",
            _ => "source = \"manifest\" (a caption column of the CSV)",
        };
        return Err(DataError::invalid(
            "captions",
            format!(
                "= \"{}\" needs {wants}; source is \"{}\"",
                captions.name(),
                config.source.name()
            ),
        ));
    }
    let only_with = |key: &str, wanted: CaptionSource| {
        DataError::invalid(
            key,
            format!(
                "is only read with captions = \"{}\" (captions is \"{}\")",
                wanted.name(),
                captions.name()
            ),
        )
    };
    if let Some(ext) = &config.caption_extension {
        if captions != CaptionSource::Sidecar {
            return Err(only_with("caption_extension", CaptionSource::Sidecar));
        }
        // kohya appends the extension to the image's stem, dot included; a bare "txt" would
        // look for "imagetxt".
        if ext.len() < 2 || !ext.starts_with('.') || ext.contains(['/', '\\']) {
            return Err(DataError::invalid(
                "caption_extension",
                format!("is {ext:?}; write it with its dot and no folder, e.g. \".txt\""),
            ));
        }
    }
    if let Some(column) = &config.caption_column {
        if captions != CaptionSource::Metadata {
            return Err(only_with("caption_column", CaptionSource::Metadata));
        }
        if column.is_empty() || column == "file_name" {
            return Err(DataError::invalid(
                "caption_column",
                format!("is {column:?}; name the metadata.jsonl field holding the captions"),
            ));
        }
    }
    if captions == CaptionSource::Templates {
        if config.caption_templates.is_empty() {
            return Err(DataError::invalid(
                "caption_templates",
                "missing: captions = \"templates\" needs at least one, e.g. [\"a photo of a {}\"]",
            ));
        }
        for (i, template) in config.caption_templates.iter().enumerate() {
            if !template.contains("{}") {
                return Err(DataError::invalid(
                    &format!("caption_templates[{i}]"),
                    format!("is {template:?}; it needs {{}} where the class name goes"),
                ));
            }
        }
    } else if !config.caption_templates.is_empty() {
        return Err(only_with("caption_templates", CaptionSource::Templates));
    }
    if captions == CaptionSource::None {
        // Each of these changes what the model is shown only when there is a caption
        // (`train.caption_dropout` is checked with the rest of `[train]`).
        let set = [
            ("shuffle_caption", config.shuffle_caption),
            ("keep_tokens", config.keep_tokens > 0),
        ];
        if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
            return Err(DataError::invalid(
                key,
                "is set but captions = \"none\"; choose a caption source or remove it",
            ));
        }
    }
    if config.keep_tokens > 0 && !config.shuffle_caption {
        return Err(DataError::invalid(
            "keep_tokens",
            "keeps the first tags in place when tags are shuffled; set shuffle_caption = true \
             or remove it",
        ));
    }
    Ok(())
}
