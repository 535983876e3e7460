//! One type for whichever text encoder a model conditions on: CLIP's text transformer (Stable
//! Diffusion's) or a BERT (all-MiniLM-L6-v2, the pretrained encoder oxidiff can have offline),
//! with one forward pass, its sizes, and a directory read by what its `config.json` says.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use serde_json::Value;

use super::bert::BertModel;
use super::bert_config::BERT_MODEL_TYPE;
use super::clip::ClipTextModel;
use super::clip_config::CLIP_TEXT_MODEL_TYPE;
use super::transformers_io::read_config_json;
use crate::ModelError;

/// What a text encoder gives for a batch of token ids.
#[derive(Debug, Clone)]
pub struct TextEncoderOutput {
    /// One vector per token: what the UNet's cross-attention attends to.
    pub last_hidden_state: Tensor<3>,
    /// One vector per text: CLIP's state at the end token, or sentence-transformers' pooled
    /// (and, as all-MiniLM-L6-v2 has it, L2-normalised) embedding.
    pub pooled: Tensor<2>,
}

/// A text encoder: trainable (`#[derive(Module)]`), on any burn device.
// One per model, rarely moved: the size of the larger variant's bookkeeping costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextEncoder {
    Clip(ClipTextModel),
    Bert(BertModel),
}

impl TextEncoder {
    /// Encodes token ids; `mask` is 1 for a token and 0 for padding (none: every position is
    /// a token).
    ///
    /// # Shapes
    /// - `ids`, `mask`: `[B, L]`, L ≤ [`Self::context_length`]
    /// - output: `last_hidden_state` `[B, L, D]`, `pooled` `[B, D]`, D = [`Self::hidden_size`]
    ///
    /// # Panics
    /// Where L exceeds the position embeddings (the tokenizer truncates to the context).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2, Int>>) -> TextEncoderOutput {
        match self {
            Self::Clip(clip) => {
                let out = clip.forward(ids, mask);
                TextEncoderOutput {
                    last_hidden_state: out.last_hidden_state,
                    pooled: out.pooler_output,
                }
            }
            Self::Bert(bert) => {
                let out = bert.forward(ids, mask.clone(), None);
                let pooled = bert.sentence_embedding(out.last_hidden_state.clone(), mask);
                TextEncoderOutput {
                    last_hidden_state: out.last_hidden_state,
                    pooled,
                }
            }
        }
    }

    /// D: the width of every output vector (the UNet's `cross_attention_dim`).
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Clip(clip) => clip.config().hidden_size,
            Self::Bert(bert) => bert.config().hidden_size,
        }
    }

    /// The most tokens one text may have (CLIP: 77).
    pub fn context_length(&self) -> usize {
        match self {
            Self::Clip(clip) => clip.config().max_position_embeddings,
            Self::Bert(bert) => bert.context_length(),
        }
    }

    /// Loads a transformers directory as the encoder its `config.json` names (`model_type`
    /// `clip_text_model` or `bert`, or where that is absent, `architectures`).
    ///
    /// # Errors
    /// A config naming another model, and whatever [`ClipTextModel::load`] or
    /// [`BertModel::load`] refuse.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let (path, json) = read_config_json(dir)?;
        let model_type = json.get("model_type").and_then(Value::as_str);
        let first_class = json
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        match (model_type, first_class) {
            (Some(CLIP_TEXT_MODEL_TYPE), _) | (None, Some("CLIPTextModel")) => {
                ClipTextModel::load(dir, device).map(Self::Clip)
            }
            (Some(BERT_MODEL_TYPE), _) | (None, Some("BertModel")) => {
                BertModel::load(dir, device).map(Self::Bert)
            }
            _ => Err(ModelError::file(
                &path,
                format!(
                    "model_type = {} (architectures {}) is not a text encoder oxidiff has \
                     (model_type \"{CLIP_TEXT_MODEL_TYPE}\": CLIPTextModel, or \
                     \"{BERT_MODEL_TYPE}\": BertModel)",
                    json.get("model_type").unwrap_or(&Value::Null),
                    json.get("architectures").unwrap_or(&Value::Null),
                ),
            )),
        }
    }

    /// Writes the encoder as the transformers directory it loads from.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        match self {
            Self::Clip(clip) => clip.save(dir),
            Self::Bert(bert) => bert.save(dir),
        }
    }
}
