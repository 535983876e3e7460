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
    /// The frozen, pretrained text encoder whose last hidden states the UNet cross-attends to:
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
}

impl TextSection {
    /// Checks what can be checked without reading the encoder, and what a text-conditioned
    /// run cannot combine with (`captions`: `data.captions`; `num_classes`: the model's);
    /// messages start with the key.
    pub fn validate(
        &self,
        task: TaskKind,
        captions: CaptionSource,
        num_classes: Option<usize>,
    ) -> Result<(), String> {
        match (&self.encoder, captions) {
            (None, _) => {}
            (Some(_), _) if task != TaskKind::Diffusion => {
                return Err(
                    "text.encoder: conditions a diffusion UNet; an autoencoder run (task = \
                     \"autoencoder\") has none"
                        .into(),
                );
            }
            (Some(_), CaptionSource::None) => {
                return Err(
                    "text.encoder: is set but data.captions = \"none\": choose where the \
                     captions come from (metadata, sidecar, manifest or templates)"
                        .into(),
                );
            }
            (Some(_), _) if num_classes.is_some() => {
                return Err(
                    "model.num_classes: a model is conditioned on class labels or on text \
                     (text.encoder), not both"
                        .into(),
                );
            }
            (Some(_), _) => {}
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
        Ok(())
    }

    /// Refuses to train a diffusion model on captions it would never see (`data inspect` may
    /// read them without an encoder).
    pub fn check_captions_used(&self, captions: CaptionSource) -> Result<(), String> {
        if self.encoder.is_none() && captions != CaptionSource::None {
            return Err(format!(
                "data.captions: = \"{}\" reads captions, but text.encoder is unset, so the \
                 model would never see them; set text.encoder (e.g. \"minilm\") or \
                 data.captions = \"none\"",
                captions.name()
            ));
        }
        Ok(())
    }
}
