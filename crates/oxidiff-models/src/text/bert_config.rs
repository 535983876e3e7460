//! `BertConfig` (transformers' `BertConfig` keys, meanings and defaults) and `SentencePooling`
//! (how sentence-transformers turns a BERT's hidden states into one vector: `modules.json`,
//! its pooling module's `config.json`, `sentence_bert_config.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{activation, check_model, keys, positive, probability, size};
use super::layers::Activation;
use super::transformers_io::{TRANSFORMERS_VERSION, read_json};
use crate::ModelError;

/// The `model_type` of a `BertConfig`.
pub const BERT_MODEL_TYPE: &str = "bert";

/// A BERT encoder (Devlin et al. 2019; transformers' `BertModel`): word, position and
/// token-type embeddings and a LayerNorm, then `num_hidden_layers` post-LayerNorm layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    /// Dropout after the embeddings and each sub-layer while training.
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities while training.
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<usize>,
}

impl Default for BertConfig {
    /// transformers' `BertConfig()` (bert-base-uncased).
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
        }
    }
}

impl BertConfig {
    /// sentence-transformers' all-MiniLM-L6-v2: 384 wide, 6 layers of 12 heads.
    pub fn all_minilm_l6_v2() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..Self::default()
        }
    }

    /// A `BertModel`'s `config.json` (read from `source`), transformers' defaults for absent
    /// keys.
    ///
    /// # Errors
    /// Another model's config, a decoder or cross-attention, relative position embeddings, an
    /// activation oxidiff does not have, or values that would not build; the message names the
    /// file, the key and its value.
    pub fn from_config_json(json: &Value, source: &Path) -> Result<Self, ModelError> {
        let keys = keys(json, source)?;
        check_model(
            &keys,
            BERT_MODEL_TYPE,
            |class| class.starts_with("Bert"),
            "a BERT (BertModel, or a Bert… task model's encoder without its head)",
        )?;
        keys.require(
            "position_embedding_type",
            json!("absolute"),
            "relative position embeddings are not implemented",
        )?;
        keys.require("is_decoder", json!(false), "oxidiff's BERT is an encoder")?;
        keys.require(
            "add_cross_attention",
            json!(false),
            "oxidiff's BERT has no cross-attention",
        )?;
        let d = Self::default();
        let config = Self {
            vocab_size: size(&keys, "vocab_size", d.vocab_size)?,
            hidden_size: size(&keys, "hidden_size", d.hidden_size)?,
            num_hidden_layers: size(&keys, "num_hidden_layers", d.num_hidden_layers)?,
            num_attention_heads: size(&keys, "num_attention_heads", d.num_attention_heads)?,
            intermediate_size: size(&keys, "intermediate_size", d.intermediate_size)?,
            hidden_act: activation(&keys, d.hidden_act)?,
            hidden_dropout_prob: probability(&keys, "hidden_dropout_prob", d.hidden_dropout_prob)?,
            attention_probs_dropout_prob: probability(
                &keys,
                "attention_probs_dropout_prob",
                d.attention_probs_dropout_prob,
            )?,
            max_position_embeddings: size(
                &keys,
                "max_position_embeddings",
                d.max_position_embeddings,
            )?,
            type_vocab_size: size(&keys, "type_vocab_size", d.type_vocab_size)?,
            initializer_range: positive(&keys, "initializer_range", d.initializer_range)?,
            layer_norm_eps: positive(&keys, "layer_norm_eps", d.layer_norm_eps)?,
            pad_token_id: keys.usize("pad_token_id", d.pad_token_id)?,
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

    /// Checks what would not build; the message names the key.
    ///
    /// # Errors
    /// A zero size, heads that do not divide the width, a bad ε or dropout rate.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |key: &str, message: String| Err(ModelError::invalid(key, message));
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
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
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(key, format!("must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    /// The `config.json` `save_pretrained` writes for a `BertModel`.
    pub fn to_config_json(&self) -> Value {
        json!({
            "architectures": ["BertModel"],
            "model_type": BERT_MODEL_TYPE,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act.name(),
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "dtype": "float32",
            "transformers_version": TRANSFORMERS_VERSION,
        })
    }
}

/// How the hidden states become one vector per sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolingMode {
    /// The mean over the tokens the mask keeps (sentence-transformers' `pooling_mode_mean_tokens`).
    Mean,
    /// The first token's state (`pooling_mode_cls_token`).
    Cls,
}

/// sentence-transformers' modules after the transformer: a pooling, optionally an L2
/// normalisation, and the length it truncates to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentencePooling {
    pub mode: PoolingMode,
    /// Divide by the L2 norm (a `Normalize` module), so that dot products are cosines.
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length`: the context the tokenizer truncates to.
    pub max_seq_length: Option<usize>,
}

const MODULES_JSON: &str = "modules.json";
const POOLING_DIR: &str = "1_Pooling";
const SENTENCE_CONFIG: &str = "sentence_bert_config.json";

impl Default for SentencePooling {
    /// Mean pooling without normalisation: a plain BERT directory's choice here.
    fn default() -> Self {
        Self {
            mode: PoolingMode::Mean,
            normalize: false,
            max_seq_length: None,
        }
    }
}

impl SentencePooling {
    /// all-MiniLM-L6-v2's modules: mean pooling, then L2 normalisation; 256 tokens.
    pub fn all_minilm_l6_v2() -> Self {
        Self {
            mode: PoolingMode::Mean,
            normalize: true,
            max_seq_length: Some(256),
        }
    }

    /// What `dir`'s `modules.json` says (the default where it has none).
    ///
    /// # Errors
    /// An unreadable file, a module oxidiff does not have (a `Dense` layer, say), or a pooling
    /// other than mean or first-token; the message names the file.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let modules_path = dir.join(MODULES_JSON);
        if !modules_path.is_file() {
            return Ok(Self::default());
        }
        let modules = read_json(&modules_path)?;
        let bad = |why: String| ModelError::file(&modules_path, why);
        let list = modules
            .as_array()
            .ok_or_else(|| bad("not a list of modules".into()))?;
        let mut pooling = Self::default();
        for module in list {
            let kind = module["type"].as_str().unwrap_or_default();
            let path = module["path"].as_str().unwrap_or_default();
            match kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => pooling.mode = pooling_mode(&dir.join(path).join("config.json"))?,
                "Normalize" => pooling.normalize = true,
                _ => {
                    return Err(bad(format!(
                        "module {kind:?} is not supported (oxidiff has Transformer, Pooling, \
                         Normalize)"
                    )));
                }
            }
        }
        let sentence_config = dir.join(SENTENCE_CONFIG);
        if sentence_config.is_file() {
            let json = read_json(&sentence_config)?;
            pooling.max_seq_length =
                keys(&json, &sentence_config)?.usize("max_seq_length", None)?;
        }
        Ok(pooling)
    }

    /// Writes `modules.json`, `1_Pooling/config.json` and (with a length)
    /// `sentence_bert_config.json` into `dir` for a model `hidden_size` wide.
    pub(crate) fn write(&self, dir: &Path, hidden_size: usize) -> Result<(), ModelError> {
        let mut modules = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}),
        ];
        if self.normalize {
            modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
        }
        let pooling = json!({
            "word_embedding_dimension": hidden_size,
            "pooling_mode_cls_token": self.mode == PoolingMode::Cls,
            "pooling_mode_mean_tokens": self.mode == PoolingMode::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        });
        write_json(&dir.join(MODULES_JSON), &Value::Array(modules))?;
        let pooling_dir = dir.join(POOLING_DIR);
        std::fs::create_dir_all(&pooling_dir)
            .map_err(|e| ModelError::file(&pooling_dir, e.to_string()))?;
        write_json(&pooling_dir.join("config.json"), &pooling)?;
        if let Some(n) = self.max_seq_length {
            let config = json!({"max_seq_length": n, "do_lower_case": false});
            write_json(&dir.join(SENTENCE_CONFIG), &config)?;
        }
        Ok(())
    }
}

fn write_json(path: &Path, json: &Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(json).expect("a JSON value serialises");
    crate::diffusers_io::write_atomically(path, text.as_bytes())
}

/// The one pooling mode a sentence-transformers `Pooling` config turns on.
fn pooling_mode(path: &Path) -> Result<PoolingMode, ModelError> {
    let json = read_json(path)?;
    let on = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes: Vec<&str> = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .filter(|k| on(k))
    .collect();
    match modes.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(PoolingMode::Mean),
        ["pooling_mode_cls_token"] => Ok(PoolingMode::Cls),
        _ => Err(ModelError::file(
            path,
            format!(
                "pooling {modes:?} is not supported (oxidiff has pooling_mode_mean_tokens or \
                 pooling_mode_cls_token, one of them)"
            ),
        )),
    }
}
