//! `ClipTextConfig`: the architecture of CLIP's text transformer, with the keys, meanings and
//! defaults of transformers' `CLIPTextConfig` (a `config.json` transformers wrote reads by
//! these names, and the one written here loads with `CLIPTextModel.from_pretrained`).

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::clip::ClipTextModel;
use super::config::{activation, check_model, keys, positive, probability, size};
use super::layers::Activation;
use super::transformers_io::TRANSFORMERS_VERSION;
use crate::ModelError;

/// The `model_type` of a `CLIPTextConfig`.
pub const CLIP_TEXT_MODEL_TYPE: &str = "clip_text_model";

/// CLIP's text transformer (Radford et al. 2021; transformers' `CLIPTextModel`): token and
/// learned position embeddings, `num_hidden_layers` pre-LayerNorm layers of causal
/// self-attention and an MLP, a final LayerNorm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// The MLP's inner width.
    pub intermediate_size: usize,
    /// The width of `CLIPTextModelWithProjection`'s projection; kept for `config.json`, unused
    /// by the text model itself.
    pub projection_dim: Option<usize>,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// The context length: at most this many tokens.
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// Dropout on the attention probabilities while training.
    pub attention_dropout: f64,
    /// The standard deviation of the random weights `init` draws (times `initializer_factor`).
    pub initializer_range: f64,
    pub initializer_factor: f64,
    pub pad_token_id: Option<usize>,
    pub bos_token_id: Option<usize>,
    /// The end token, whose hidden state is the pooled output. `2` is transformers' legacy
    /// value (configs written before 4.31, SD 1.x's among them): the pooled output is then
    /// taken at the largest id instead, which is the end token in CLIP's vocabulary.
    pub eos_token_id: usize,
}

impl Default for ClipTextConfig {
    /// transformers' `CLIPTextConfig()` (openai/clip-vit-base-patch32's text tower).
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            projection_dim: Some(512),
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 0.02,
            initializer_factor: 1.0,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: 49407,
        }
    }
}

impl ClipTextConfig {
    /// Stable Diffusion 1.x's text encoder (openai/clip-vit-large-patch14's text tower, as in
    /// SD 1.5's `text_encoder/config.json`): 768 wide, 12 layers of 12 heads, 123,060,480
    /// parameters, with that file's legacy token ids.
    pub fn stable_diffusion() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            projection_dim: Some(768),
            num_attention_heads: 12,
            pad_token_id: Some(1),
            bos_token_id: Some(0),
            eos_token_id: 2,
            ..Self::default()
        }
    }

    /// Small enough to train jointly on two CPU cores: CLIP's vocabulary and context (so its
    /// tokenizer's ids fit), 64 wide, 2 layers of 4 heads, an MLP of 256.
    pub fn small() -> Self {
        Self {
            hidden_size: 64,
            intermediate_size: 256,
            projection_dim: Some(64),
            num_hidden_layers: 2,
            num_attention_heads: 4,
            ..Self::default()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks what would not build; the message names the key.
    ///
    /// # Errors
    /// A zero size, heads that do not divide the width, a bad ε or dropout rate.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |key: &str, message: String| Err(ModelError::invalid(key, message));
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size = {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(
                "layer_norm_eps",
                format!("must be positive, got {}", self.layer_norm_eps),
            );
        }
        if !(0.0..1.0).contains(&self.attention_dropout) {
            return bad(
                "attention_dropout",
                format!("must be in [0, 1), got {}", self.attention_dropout),
            );
        }
        Ok(())
    }

    /// A `CLIPTextModel`'s `config.json` (read from `source`), transformers' defaults for
    /// absent keys.
    ///
    /// # Errors
    /// Another model's config (`model_type`, `architectures`), an activation oxidiff does not
    /// have, a list of end tokens, or values that would not build; the message names the file,
    /// the key and its value.
    pub fn from_config_json(json: &Value, source: &Path) -> Result<Self, ModelError> {
        let keys = keys(json, source)?;
        check_model(
            &keys,
            CLIP_TEXT_MODEL_TYPE,
            |class| class == "CLIPTextModel",
            "CLIPTextModel (a CLIPModel's or a projection's weights are not a text encoder's)",
        )?;
        let d = Self::default();
        let config = Self {
            vocab_size: size(&keys, "vocab_size", d.vocab_size)?,
            hidden_size: size(&keys, "hidden_size", d.hidden_size)?,
            intermediate_size: size(&keys, "intermediate_size", d.intermediate_size)?,
            projection_dim: keys.usize("projection_dim", d.projection_dim)?,
            num_hidden_layers: size(&keys, "num_hidden_layers", d.num_hidden_layers)?,
            num_attention_heads: size(&keys, "num_attention_heads", d.num_attention_heads)?,
            max_position_embeddings: size(
                &keys,
                "max_position_embeddings",
                d.max_position_embeddings,
            )?,
            hidden_act: activation(&keys, d.hidden_act)?,
            layer_norm_eps: positive(&keys, "layer_norm_eps", d.layer_norm_eps)?,
            attention_dropout: probability(&keys, "attention_dropout", d.attention_dropout)?,
            initializer_range: keys.number("initializer_range", d.initializer_range)?,
            initializer_factor: positive(&keys, "initializer_factor", d.initializer_factor)?,
            pad_token_id: keys.usize("pad_token_id", d.pad_token_id)?,
            bos_token_id: keys.usize("bos_token_id", d.bos_token_id)?,
            eos_token_id: match keys.usize("eos_token_id", Some(d.eos_token_id))? {
                Some(id) => id,
                None => {
                    return Err(keys.refuse(
                        "eos_token_id",
                        "is needed: the pooled output is the end token's state",
                    ));
                }
            },
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(keys.refuse(
                "num_attention_heads",
                format!("does not divide hidden_size = {}", config.hidden_size),
            ));
        }
        Ok(config)
    }

    /// The `config.json` `save_pretrained` writes for this model.
    pub fn to_config_json(&self) -> Value {
        json!({
            "architectures": ["CLIPTextModel"],
            "model_type": CLIP_TEXT_MODEL_TYPE,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "projection_dim": self.projection_dim,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": self.hidden_act.name(),
            "layer_norm_eps": self.layer_norm_eps,
            "attention_dropout": self.attention_dropout,
            "initializer_range": self.initializer_range,
            "initializer_factor": self.initializer_factor,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "dtype": "float32",
            "transformers_version": TRANSFORMERS_VERSION,
        })
    }

    /// A text model with random weights drawn as transformers' `_init_weights` draws them
    /// (embeddings N(0, 0.02²), projections scaled by width and depth, zero biases, unit
    /// LayerNorms), for training from scratch.
    ///
    /// # Panics
    /// On a config [`Self::validate`] refuses.
    pub fn init(&self, device: &Device) -> ClipTextModel {
        ClipTextModel::new(self.clone(), device)
    }
}
