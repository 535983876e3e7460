//! A text-to-image model's text parts in diffusers' pipeline layout: `text_encoder/` (a
//! transformers directory) and `tokenizer/` (with `model_max_length` the run's context, which
//! `StableDiffusionPipeline` pads every prompt to), and the `model_index.json` of a
//! `StableDiffusionPipeline`.

use std::path::Path;

use oxidiff_models::DIFFUSERS_VERSION;
use oxidiff_models::text::TextEncoder;
use serde_json::{Value, json};

use crate::config::RunConfig;
use crate::error::TrainError;
use crate::text::TextSource;

pub(crate) const TEXT_ENCODER_DIR: &str = "text_encoder";
pub(crate) const TOKENIZER_DIR: &str = "tokenizer";

/// Writes the run's text encoder (`encoder`: the frozen one, or the trained weights) and its
/// tokenizer under `dir`; returns the transformers classes of both, as `model_index.json` names
/// them.
pub(crate) fn write_text_parts(
    config: &RunConfig,
    source: &TextSource,
    encoder: &TextEncoder,
    dir: &Path,
) -> Result<[&'static str; 2], TrainError> {
    encoder.save(&dir.join(TEXT_ENCODER_DIR))?;
    source
        .tokenizer(config.text.max_length)?
        .save_pretrained(dir.join(TOKENIZER_DIR))?;
    Ok(match encoder {
        TextEncoder::Clip(_) => ["CLIPTextModel", "CLIPTokenizer"],
        TextEncoder::Bert(_) => ["BertModel", "BertTokenizer"],
    })
}

/// `model_index.json` of a `StableDiffusionPipeline` with these text classes and a DDPM
/// scheduler, without a safety checker.
pub(crate) fn stable_diffusion_index(text_classes: [&str; 2]) -> Value {
    let [encoder, tokenizer] = text_classes;
    json!({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "requires_safety_checker": false,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", encoder],
        "tokenizer": ["transformers", tokenizer],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
}
