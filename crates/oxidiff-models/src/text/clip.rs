//! transformers' `CLIPTextModel`, module for module: every parameter's path is transformers'
//! tensor name (`encoder.layers.0.self_attn.q_proj.weight`, `final_layer_norm.weight`, …),
//! which files from before transformers 5 (SD 1.x's `text_encoder/` among them) hold under
//! `text_model.`. Both load here; oxidiff writes the prefixed names, which transformers 4 and 5
//! both load.

use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear,
};
use burn::tensor::{Device, Int, Tensor};

use super::clip_config::ClipTextConfig;
use super::layers::{
    Activation, causal_bias, first_position, gather_rows, linear, multi_head_attention,
    padding_bias, positions,
};
use super::transformers_io::{
    MODEL_FILE, load_transformers_weights, save_transformers_model, tensor_names,
};
use crate::ModelError;
use crate::cpu::{layer_norm, linear_tokens};

/// The prefix of every tensor name in a `CLIPTextModel` file before transformers 5, and in
/// the files oxidiff writes.
pub const CLIP_TEXT_PREFIX: &str = "text_model.";

/// Token embedding plus a learned embedding of the position.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

/// Multi-head self-attention with biased q, k, v and output projections.
#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

impl ClipAttention {
    /// # Shapes
    /// - `x`: `[B, L, D]`; `bias`: broadcastable to `[B, heads, L, L]`
    /// - output: `[B, L, D]`
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let attended = multi_head_attention(
            linear_tokens(&self.q_proj, x.clone()),
            linear_tokens(&self.k_proj, x.clone()),
            linear_tokens(&self.v_proj, x),
            self.num_heads,
            Some(bias),
            &self.dropout,
        );
        linear_tokens(&self.out_proj, attended)
    }
}

/// fc1 → activation → fc2.
#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl ClipMlp {
    /// # Shapes
    /// - `x`, output: `[B, L, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = self.activation.forward(linear_tokens(&self.fc1, x));
        linear_tokens(&self.fc2, hidden)
    }
}

/// A pre-LayerNorm transformer layer: x + attn(LN₁(x)), then h + MLP(LN₂(h)).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
    /// The LayerNorms' epsilon (the config's `layer_norm_eps`), which burn's module keeps
    /// private and the CPU kernel needs.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl ClipEncoderLayer {
    /// # Shapes
    /// - `x`: `[B, L, D]`; `bias`: broadcastable to `[B, heads, L, L]`
    /// - output: `[B, L, D]`
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let eps = self.layer_norm_eps;
        let h = x.clone()
            + self
                .self_attn
                .forward(layer_norm(&self.layer_norm1, eps, x), bias);
        h.clone() + self.mlp.forward(layer_norm(&self.layer_norm2, eps, h))
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

/// What [`ClipTextModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// After the final LayerNorm: what Stable Diffusion's UNet cross-attends to.
    pub last_hidden_state: Tensor<3>,
    /// `last_hidden_state` at each sequence's end token (transformers' `pooler_output`).
    pub pooler_output: Tensor<2>,
}

/// transformers' `CLIPTextModel` (its `text_model`).
#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
    #[module(skip)]
    pub config: ClipTextConfig,
}

impl ClipTextModel {
    /// Random weights as transformers' `CLIPPreTrainedModel._init_weights` draws them.
    ///
    /// # Panics
    /// On a config [`ClipTextConfig::validate`] refuses.
    pub fn new(config: ClipTextConfig, device: &Device) -> Self {
        if let Err(e) = config.validate() {
            panic!("ClipTextModel::new: {e}");
        }
        let d = config.hidden_size;
        let factor = config.initializer_factor;
        let depth = (2.0 * config.num_hidden_layers as f64).powf(-0.5);
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02 * factor,
                })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let width = (d as f64).powf(-0.5);
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                let proj = |std: f64| linear(d, d, std, device);
                ClipEncoderLayer {
                    self_attn: ClipAttention {
                        q_proj: proj(width * depth * factor),
                        k_proj: proj(width * depth * factor),
                        v_proj: proj(width * depth * factor),
                        out_proj: proj(width * factor),
                        dropout: DropoutConfig::new(config.attention_dropout).init(),
                        num_heads: config.num_attention_heads,
                    },
                    layer_norm1: norm(),
                    mlp: ClipMlp {
                        fc1: linear(
                            d,
                            config.intermediate_size,
                            (2.0 * d as f64).powf(-0.5) * factor,
                            device,
                        ),
                        fc2: linear(config.intermediate_size, d, width * depth * factor, device),
                        activation: config.hidden_act,
                    },
                    layer_norm2: norm(),
                    layer_norm_eps: config.layer_norm_eps,
                }
            })
            .collect();
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: embedding(config.vocab_size),
                position_embedding: embedding(config.max_position_embeddings),
            },
            encoder: ClipEncoder { layers },
            final_layer_norm: norm(),
            config,
        }
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The text model on token ids, causal, with padding keys masked out where `mask` is
    /// given (1 for a token, 0 for padding). The pooled output follows transformers: at the
    /// first `eos_token_id` of each sequence (its first position where there is none), or
    /// with the legacy `eos_token_id = 2` at the first largest id.
    ///
    /// # Shapes
    /// - `ids`: `[B, L]` with L ≤ `max_position_embeddings` and ids < `vocab_size`
    /// - `mask`: `[B, L]`
    /// - output: `last_hidden_state` `[B, L, D]`, `pooler_output` `[B, D]`
    ///
    /// # Panics
    /// Where L exceeds `max_position_embeddings` (the tokenizer truncates to it).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2, Int>>) -> ClipTextOutput {
        let [_, tokens] = ids.dims();
        assert!(
            tokens <= self.config.max_position_embeddings,
            "{tokens} tokens exceed the text encoder's context of {}",
            self.config.max_position_embeddings
        );
        let device = ids.device();
        let mut h = self.embeddings.token_embedding.forward(ids.clone())
            + self
                .embeddings
                .position_embedding
                .forward(positions(tokens, &device));
        let mut bias = causal_bias(tokens, &device);
        if let Some(mask) = mask {
            bias = bias + padding_bias(mask);
        }
        for layer in &self.encoder.layers {
            h = layer.forward(h, bias.clone());
        }
        let last_hidden_state = layer_norm(&self.final_layer_norm, self.config.layer_norm_eps, h);
        let end = if self.config.eos_token_id == 2 {
            let [batch, _] = ids.dims();
            let largest = ids.clone().max_dim(1).repeat_dim(1, tokens);
            first_position(ids.equal(largest).int()).reshape([batch])
        } else {
            first_position(ids.equal_elem(self.config.eos_token_id as i64).int())
        };
        ClipTextOutput {
            pooler_output: gather_rows(last_hidden_state.clone(), end),
            last_hidden_state,
        }
    }

    /// Loads a `CLIPTextModel` directory (`config.json`, `model.safetensors` with names bare
    /// or under `text_model.`) onto `device`.
    ///
    /// # Errors
    /// A missing or unreadable file, a config that is not a `CLIPTextModel`'s or names what
    /// oxidiff does not have, weights with missing, extra or mis-shaped tensors (the first few
    /// named as the file names them).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let (path, json) = super::transformers_io::read_config_json(dir)?;
        let config = ClipTextConfig::from_config_json(&json, &path)?;
        let names = tensor_names(&dir.join(MODEL_FILE))?;
        let prefix = if names.iter().any(|n| n.starts_with(CLIP_TEXT_PREFIX)) {
            CLIP_TEXT_PREFIX
        } else {
            ""
        };
        let mut model = config.init(device);
        load_transformers_weights(&mut model, dir, |p| format!("{prefix}{p}"), |_| false)?;
        Ok(model)
    }

    /// Writes the model as a `CLIPTextModel` directory (created if needed; a pipeline's
    /// `text_encoder/`), each file atomically; `CLIPTextModel.from_pretrained` loads it.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        save_transformers_model(dir, &self.config.to_config_json(), self, clip_name)
    }
}

/// The name oxidiff writes for the tensor at `path` (PyTorch's leaf names).
fn clip_name(path: &str) -> String {
    format!("{CLIP_TEXT_PREFIX}{path}")
}
