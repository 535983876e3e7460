//! The `[text]` section: the text encoder a text-to-image run conditions its UNet on.

use oxidiff_data::CaptionSource;
use serde::{Deserialize, Serialize};

use crate::autoencoder_config::TaskKind;

/// SD's context: CLIP's 77 tokens. Longer encoders (BERT's 512) are cut to it by default, so
/// the UNet's cross-attention does not attend to hundreds of padding tokens.
pub const DEFAULT_MAX_LENGTH: usize = 77;

/// `[text]`: unset `encoder` trains without text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextSection {
    /// The text encoder whose last hidden states the UNet cross-attends to: `"scratch"` (a new
    /// CLIP text transformer trained with the UNet), or a pretrained one, frozen unless
    /// `train`:
    /// `"minilm"` (all-MiniLM-L6-v2, where `tools/fetch_minilm.sh` put it), a transformers
    /// directory (`config.json` + `model.safetensors` of a `CLIPTextModel` or `BertModel`,
    /// with its tokenizer files beside them or in a sibling `tokenizer/`), or a diffusers
    /// pipeline directory (`text_encoder/` + `tokenizer/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// Tokens per caption, special tokens included (longer captions are truncated, shorter
    /// ones padded); unset: the encoder's context, at most 77.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Train the encoder with the UNet instead of freezing it. Unset: trained for `"scratch"`
    /// (there is nothing to freeze), frozen otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<bool>,
    /// A trained encoder's learning rate, following the run's warm-up and decay in proportion
    /// (unset: `train.lr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// `encoder = "scratch"`: the new CLIP text transformer's width (the UNet's
    /// `cross_attention_dim`), depth and heads, by `CLIPTextConfig`'s names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_hidden_layers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<usize>,
}

/// `text.encoder`'s name for a new CLIP text transformer trained with the UNet
/// (latent-diffusion's choice).
pub const SCRATCH: &str = "scratch";

/// The defaults of `encoder = "scratch"`: 256 wide, 4 layers of 4 heads (3.3M parameters
/// with CLIP's 49,408-token vocabulary, most of them its embeddings).
pub const SCRATCH_DEFAULTS: (usize, usize, usize) = (256, 4, 4);

impl TextSection {
    /// Whether the run trains its text encoder (see [`TextSection::train`]).
    pub fn trains_encoder(&self) -> bool {
        self.encoder.is_some()
            && self
                .train
                .unwrap_or(self.encoder.as_deref() == Some(SCRATCH))
    }

    /// Checks what can be checked without reading the encoder, and what a text-conditioned
    /// model cannot combine with (`num_classes`: the model's); messages start with the key.
    pub fn validate(&self, task: TaskKind, num_classes: Option<usize>) -> Result<(), String> {
        if self.encoder.is_some() && task != TaskKind::Diffusion {
            return Err(
                "text.encoder: conditions a diffusion UNet; an autoencoder run (task = \
                 \"autoencoder\") has none"
                    .into(),
            );
        }
        if self.encoder.is_some() && num_classes.is_some() {
            return Err(
                "model.num_classes: a model is conditioned on class labels or on text \
                 (text.encoder), not both"
                    .into(),
            );
        }
        if self.encoder.as_deref().is_some_and(str::is_empty) {
            return Err("text.encoder: the name or path is empty".into());
        }
        if let Some(n) = self.max_length {
            if n < 2 {
                return Err(format!(
                    "text.max_length: must be at least 2 (the start and end tokens), got {n}"
                ));
            }
            if self.encoder.is_none() {
                return Err("text.max_length: is set but text.encoder is not".into());
            }
        }
        self.validate_training()
    }

    /// The keys of a trained encoder: each needs what it configures.
    fn validate_training(&self) -> Result<(), String> {
        let scratch = self.encoder.as_deref() == Some(SCRATCH);
        if scratch && self.train == Some(false) {
            return Err(format!(
                "text.train: = false freezes the encoder, but text.encoder = \"{SCRATCH}\" is a \
                 new, random one: train it, or name a pretrained encoder"
            ));
        }
        if self.train == Some(true) && self.encoder.is_none() {
            return Err("text.train: is set but text.encoder is not".into());
        }
        if let Some(lr) = self.lr {
            if !self.trains_encoder() {
                return Err(
                    "text.lr: is set but the text encoder is frozen (text.train = true trains it)"
                        .into(),
                );
            }
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(format!(
                    "text.lr: must be a finite number ≥ 0 (0 keeps the encoder as it starts), \
                     got {lr}"
                ));
            }
        }
        for (key, value) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            match value {
                Some(_) if !scratch => {
                    return Err(format!(
                        "text.{key}: sizes a new encoder (text.encoder = \"{SCRATCH}\"); a \
                         pretrained one has its own config.json"
                    ));
                }
                Some(0) => return Err(format!("text.{key}: must be at least 1")),
                _ => {}
            }
        }
        Ok(())
    }

    /// What training needs and sampling does not: captions for a text encoder, and an
    /// encoder for captions (`data inspect` may read captions without one, and a pipeline
    /// loaded to sample from has an encoder and no data).
    pub fn check_captions_used(&self, captions: CaptionSource) -> Result<(), String> {
        match (self.encoder.is_some(), captions != CaptionSource::None) {
            (false, true) => Err(format!(
                "data.captions: = \"{}\" reads captions, but text.encoder is unset, so the \
                 model would never see them; set text.encoder (e.g. \"minilm\") or \
                 data.captions = \"none\"",
                captions.name()
            )),
            (true, false) => Err(
                "text.encoder: is set but data.captions = \"none\": choose where the captions \
                 come from (metadata, sidecar, manifest or templates)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}
