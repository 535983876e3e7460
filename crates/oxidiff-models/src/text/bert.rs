//! A BERT encoder (transformers' `BertModel`), e.g. sentence-transformers' all-MiniLM-L6-v2,
//! with sentence-transformers' pooling on top. Module paths are transformers' tensor names
//! but for two that Rust cannot spell: `attention.self` is `attention.self_attention` here and
//! `LayerNorm` is `layer_norm` (see [`bert_name`]).

use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear,
};
use burn::tensor::{Device, Int, Tensor};

use super::bert_config::{BertConfig, PoolingMode, SentencePooling};
use super::layers::{Activation, linear, multi_head_attention, padding_bias, positions};
use super::transformers_io::{
    MODEL_FILE, load_transformers_weights, read_config_json, save_transformers_model, tensor_names,
};
use crate::ModelError;
use crate::cpu::{layer_norm, linear_tokens};

/// The prefix a BERT task model (`BertForMaskedLM`, …) puts before its encoder's tensors.
pub const BERT_PREFIX: &str = "bert.";

/// Word + position + token-type embeddings, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// The query, key and value projections (transformers' `attention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

/// A projection, dropout, and LayerNorm of the sum with the sub-layer's input.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// The LayerNorm's epsilon (the config's `layer_norm_eps`), which burn's module keeps
    /// private and the CPU kernel needs.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl BertSelfOutput {
    /// LN(x + dropout(dense(h))) (post-LayerNorm, Devlin et al. 2019 after Vaswani et al.).
    ///
    /// # Shapes
    /// - `h`: `[B, L, in]`; `x`, output: `[B, L, D]`
    pub fn forward(&self, h: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let sum = self.dropout.forward(linear_tokens(&self.dense, h)) + x;
        layer_norm(&self.layer_norm, self.layer_norm_eps, sum)
    }
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attention: BertSelfAttention,
    pub output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub activation: Activation,
}

/// One post-LayerNorm layer: h = LN(x + attn(x)), then LN(h + FFN(h)).
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertSelfOutput,
}

impl BertLayer {
    /// # Shapes
    /// - `x`: `[B, L, D]`; `bias`: `[B, 1, 1, L]` or none
    /// - output: `[B, L, D]`
    pub fn forward(&self, x: Tensor<3>, bias: Option<Tensor<4>>) -> Tensor<3> {
        let attn = &self.attention.self_attention;
        let attended = multi_head_attention(
            linear_tokens(&attn.query, x.clone()),
            linear_tokens(&attn.key, x.clone()),
            linear_tokens(&attn.value, x.clone()),
            attn.num_heads,
            bias,
            &attn.dropout,
        );
        let h = self.attention.output.forward(attended, x);
        let inner = self
            .intermediate
            .activation
            .forward(linear_tokens(&self.intermediate.dense, h.clone()));
        self.output.forward(inner, h)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// tanh(dense(first token's state)): BERT's next-sentence head input (transformers'
/// `pooler_output`).
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

/// What [`BertModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    pub last_hidden_state: Tensor<3>,
    /// transformers' `pooler_output`, where the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// transformers' `BertModel`, with the sentence pooling of its sentence-transformers
/// directory (if any).
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Option<BertPooler>,
    #[module(skip)]
    pub config: BertConfig,
    #[module(skip)]
    pub pooling: SentencePooling,
}

impl BertModel {
    /// Random weights drawn as transformers' `_init_weights` draws them (weights
    /// N(0, initializer_range²), zero biases, unit LayerNorms; the padding row of the word
    /// embedding is not zeroed), with a pooler where `with_pooler`.
    ///
    /// # Panics
    /// On a config [`BertConfig::validate`] refuses.
    pub fn new(
        config: BertConfig,
        with_pooler: bool,
        pooling: SentencePooling,
        device: &Device,
    ) -> Self {
        if let Err(e) = config.validate() {
            panic!("BertModel::new: {e}");
        }
        let d = config.hidden_size;
        let std = config.initializer_range;
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
        let output = |d_in: usize| BertSelfOutput {
            dense: linear(d_in, d, std, device),
            layer_norm: norm(),
            dropout: hidden_dropout(),
            layer_norm_eps: config.layer_norm_eps,
        };
        let layer = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attention: BertSelfAttention {
                        query: linear(d, d, std, device),
                        key: linear(d, d, std, device),
                        value: linear(d, d, std, device),
                        dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                        num_heads: config.num_attention_heads,
                    },
                    output: output(d),
                },
                intermediate: BertIntermediate {
                    dense: linear(d, config.intermediate_size, std, device),
                    activation: config.hidden_act,
                },
                output: output(config.intermediate_size),
            })
            .collect();
        Self {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(config.vocab_size),
                position_embeddings: embedding(config.max_position_embeddings),
                token_type_embeddings: embedding(config.type_vocab_size),
                layer_norm: norm(),
                dropout: hidden_dropout(),
            },
            encoder: BertEncoder { layer },
            pooler: with_pooler.then(|| BertPooler {
                dense: linear(d, d, std, device),
            }),
            config,
            pooling,
        }
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The tokens the tokenizer should keep at most: sentence-transformers' `max_seq_length`
    /// where the directory has one, else the position embeddings'.
    pub fn context_length(&self) -> usize {
        self.pooling
            .max_seq_length
            .unwrap_or(self.config.max_position_embeddings)
            .min(self.config.max_position_embeddings)
    }

    /// The encoder on token ids, padding keys masked out where `mask` is given (1 for a
    /// token, 0 for padding); token type 0 throughout unless `token_type_ids` is given.
    ///
    /// # Shapes
    /// - `ids`, `mask`, `token_type_ids`: `[B, L]`, L ≤ `max_position_embeddings`
    /// - output: `last_hidden_state` `[B, L, D]`, `pooler_output` `[B, D]`
    ///
    /// # Panics
    /// Where L exceeds `max_position_embeddings` (the tokenizer truncates to it).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<2, Int>>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> BertOutput {
        let [batch, tokens] = ids.dims();
        assert!(
            tokens <= self.config.max_position_embeddings,
            "{tokens} tokens exceed the text encoder's context of {}",
            self.config.max_position_embeddings
        );
        let device = ids.device();
        let e = &self.embeddings;
        let token_type_ids =
            token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, tokens], &device));
        let embedded = e.word_embeddings.forward(ids)
            + e.token_type_embeddings.forward(token_type_ids)
            + e.position_embeddings.forward(positions(tokens, &device));
        let normed = layer_norm(&e.layer_norm, self.config.layer_norm_eps, embedded);
        let mut h = e.dropout.forward(normed);
        let bias = mask.map(padding_bias);
        for layer in &self.encoder.layer {
            h = layer.forward(h, bias.clone());
        }
        let pooler_output = self.pooler.as_ref().map(|pooler| {
            let [_, _, d] = h.dims();
            let first = h.clone().slice([0..batch, 0..1]).reshape([batch, d]);
            pooler.dense.forward(first).tanh()
        });
        BertOutput {
            last_hidden_state: h,
            pooler_output,
        }
    }

    /// sentence-transformers' sentence embedding of hidden states: the mean over the tokens
    /// `mask` keeps (all where none is given) or the first token's state, then divided by its
    /// L2 norm where the directory's modules normalise.
    ///
    /// # Shapes
    /// - `last_hidden_state`: `[B, L, D]`; `mask`: `[B, L]`
    /// - output: `[B, D]`
    pub fn sentence_embedding(
        &self,
        last_hidden_state: Tensor<3>,
        mask: Option<Tensor<2, Int>>,
    ) -> Tensor<2> {
        let [batch, tokens, d] = last_hidden_state.dims();
        let pooled = match self.pooling.mode {
            PoolingMode::Cls => last_hidden_state
                .slice([0..batch, 0..1])
                .reshape([batch, d]),
            PoolingMode::Mean => {
                let weights = match mask {
                    Some(mask) => mask.float().reshape([batch, tokens, 1]),
                    None => Tensor::ones([batch, tokens, 1], &last_hidden_state.device()),
                };
                // sentence-transformers clamps the count at 1e-9 (a row with no token).
                let count = weights
                    .clone()
                    .sum_dim(1)
                    .clamp_min(1e-9)
                    .reshape([batch, 1]);
                (last_hidden_state * weights).sum_dim(1).reshape([batch, d]) / count
            }
        };
        if self.pooling.normalize {
            // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
            let norm = pooled.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }

    /// Loads a `BertModel` directory (`config.json`, `model.safetensors` with names bare or
    /// under `bert.`, and sentence-transformers' `modules.json` where there is one) onto
    /// `device`. In a task model's file (names under `bert.`) the tensors outside `bert.` are
    /// its head, which the encoder does not use.
    ///
    /// # Errors
    /// A missing or unreadable file, a config that is not a BERT's or names what oxidiff does
    /// not have, weights with missing, extra or mis-shaped tensors (the first few named as the
    /// file names them).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let (path, json) = read_config_json(dir)?;
        let config = BertConfig::from_config_json(&json, &path)?;
        let pooling = SentencePooling::read(dir)?;
        let names = tensor_names(&dir.join(MODEL_FILE))?;
        let prefixed = names.iter().any(|n| n.starts_with(BERT_PREFIX))
            && !names.iter().any(|n| n.starts_with("embeddings."));
        let prefix = if prefixed { BERT_PREFIX } else { "" };
        let with_pooler = names.contains(&format!("{prefix}pooler.dense.weight"));
        let mut model = Self::new(config, with_pooler, pooling, device);
        load_transformers_weights(
            &mut model,
            dir,
            |p| format!("{prefix}{}", bert_name(p)),
            |name| prefixed && !name.starts_with(BERT_PREFIX),
        )?;
        Ok(model)
    }

    /// Writes the model as a `BertModel` directory (created if needed; bare names, as
    /// `BertModel.save_pretrained` writes them) with sentence-transformers' `modules.json` and
    /// pooling config, each file atomically.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        save_transformers_model(dir, &self.config.to_config_json(), self, bert_name)?;
        self.pooling.write(dir, self.config.hidden_size)
    }
}

/// transformers' name of the tensor at `path` (PyTorch's leaf names), without a prefix.
pub fn bert_name(path: &str) -> String {
    path.split('.')
        .map(|part| match part {
            "self_attention" => "self",
            "layer_norm" => "LayerNorm",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(".")
}
