//! A frozen text encoder with its tokenizer: captions in, the context the UNet cross-attends
//! to out. Each caption's hidden states are computed once and kept (up to a memory budget), so
//! a data set with few distinct captions (class templates, emoji names) pays for the encoder
//! once per caption, not once per step.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_models::text::{TextEncoder, TextTokenizer};

use super::source::TextSource;
use crate::error::TrainError;

/// Bytes of hidden states kept per conditioner: about 5,000 captions of MiniLM at 32 tokens.
const CACHE_BYTES: usize = 256 << 20;

/// Captions encoded per forward pass of the encoder when many are missing from the cache.
const ENCODE_CHUNK: usize = 64;

/// A frozen text encoder on an inference device, with its tokenizer and cache.
pub struct TextConditioner {
    pub tokenizer: TextTokenizer,
    pub encoder: TextEncoder,
    source: TextSource,
    device: Device,
    /// `[L·D]` per caption.
    cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl TextConditioner {
    /// Loads the encoder at `source` on `device` (no autodiff: it is frozen), its tokenizer
    /// cut to `max_length` tokens (unset: the encoder's context, at most 77).
    ///
    /// # Errors
    /// Files that cannot be read, or a `max_length` beyond the encoder's positions.
    pub fn load(
        source: &TextSource,
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let encoder = source.load_encoder(device)?;
        Self::with_encoder(source, max_length, encoder, device)
    }

    /// The conditioner of `encoder` (on `device`, without autodiff), which `source` describes:
    /// a run's trained encoder as its checkpoint holds it.
    ///
    /// # Errors
    /// As [`TextConditioner::load`].
    pub fn with_encoder(
        source: &TextSource,
        max_length: Option<usize>,
        encoder: TextEncoder,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let vocab = match &encoder {
            TextEncoder::Clip(clip) => clip.config().vocab_size,
            TextEncoder::Bert(bert) => bert.config().vocab_size,
        };
        let tokenizer = checked_tokenizer(source, max_length, encoder.context_length(), vocab)?;
        Ok(Self {
            tokenizer,
            encoder,
            source: source.clone(),
            device: device.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// L: tokens per caption.
    pub fn context_length(&self) -> usize {
        self.tokenizer.context_length()
    }

    /// D: the width of each token's state (the UNet's `cross_attention_dim`).
    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// Bytes a conditioner of `source` holds at most: its weights (the size of their file, in
    /// float32) and its cache of states.
    pub fn bytes_at_most(source: &TextSource) -> f64 {
        let weights = match source {
            TextSource::Pretrained(p) => {
                std::fs::metadata(p.encoder_dir.join(oxidiff_models::text::MODEL_FILE))
                    .map_or(0, |m| m.len()) as f64
            }
            TextSource::Scratch(config) => clip_parameters(config) * 4.0,
        };
        weights + CACHE_BYTES as f64
    }

    /// Where the encoder was read from.
    pub fn source(&self) -> &TextSource {
        &self.source
    }

    /// The encoder's last hidden states of each caption (the empty caption: the unconditional
    /// prompt), as a constant on `device`.
    ///
    /// # Shapes
    /// - `captions`: `[B]`; returns `[B, L, D]`
    ///
    /// # Errors
    /// A caption the tokenizer refuses.
    pub fn encode(&self, captions: &[String], device: &Device) -> Result<Tensor<3>, TrainError> {
        let (l, d) = (self.context_length(), self.hidden_size());
        let per_caption = l * d;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<&String> = captions
            .iter()
            .filter(|c| !cache.contains_key(c.as_str()))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut fresh: HashMap<&str, Vec<f32>> = HashMap::new();
        for chunk in missing.chunks(ENCODE_CHUNK) {
            let states = self.run_encoder(chunk)?;
            for (k, caption) in chunk.iter().enumerate() {
                fresh.insert(
                    caption,
                    states[k * per_caption..(k + 1) * per_caption].to_vec(),
                );
            }
        }
        let mut values = Vec::with_capacity(captions.len() * per_caption);
        for caption in captions {
            match cache.get(caption.as_str()) {
                Some(v) => values.extend_from_slice(v),
                None => values.extend_from_slice(&fresh[caption.as_str()]),
            }
        }
        let room = CACHE_BYTES / (per_caption * 4).max(1);
        for (caption, states) in fresh {
            if cache.len() >= room {
                break;
            }
            cache.insert(caption.to_string(), states);
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [captions.len(), l, d]),
            device,
        ))
    }

    /// `[n·L·D]`: the last hidden states of `captions`, in order.
    fn run_encoder(&self, captions: &[&String]) -> Result<Vec<f32>, TrainError> {
        let ids = super::joint::token_ids(&self.tokenizer, captions, &self.device)?;
        // No padding mask, as diffusers' pipelines call their text encoders (they pass one
        // only where the encoder's config asks for it): the UNet attends to every position,
        // padding included, so these states must be the ones a pipeline makes.
        let out = self.encoder.forward(ids, None);
        out.last_hidden_state
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Eval {
                message: format!("cannot read the text encoder's states back: {e:?}"),
            })
    }
}

/// `source`'s tokenizer at `max_length`, checked against its encoder's `positions` and `vocab`
/// (embeddings): no more tokens than positions, no ids past the embeddings.
///
/// # Errors
/// Tokenizer files that cannot be read, a context or a vocabulary the encoder cannot take.
pub(crate) fn checked_tokenizer(
    source: &TextSource,
    max_length: Option<usize>,
    positions: usize,
    vocab: usize,
) -> Result<TextTokenizer, TrainError> {
    let tokenizer = source.tokenizer(max_length)?;
    if tokenizer.context_length() > positions {
        return Err(TrainError::Config {
            origin: "text.max_length".into(),
            message: format!(
                "{} tokens exceed the {positions} positions of the encoder {}",
                tokenizer.context_length(),
                source.describe()
            ),
        });
    }
    // Ids past the embedding table would be out of bounds at the first caption.
    if tokenizer.vocab_size() > vocab {
        let tokenizer_dir = match source {
            TextSource::Pretrained(p) => p.tokenizer_dir.display().to_string(),
            TextSource::Scratch(_) => "assets/clip".into(),
        };
        return Err(TrainError::Config {
            origin: "text.encoder".into(),
            message: format!(
                "the tokenizer in {tokenizer_dir} has {} tokens, more than the {vocab} \
                 embeddings of the encoder {}: they do not belong together",
                tokenizer.vocab_size(),
                source.describe()
            ),
        });
    }
    Ok(tokenizer)
}

/// Parameters of a CLIP text transformer of `config`: embeddings, per layer four attention
/// projections, the MLP and two LayerNorms, the final LayerNorm.
pub(crate) fn clip_parameters(config: &oxidiff_models::text::ClipTextConfig) -> f64 {
    let d = config.hidden_size as f64;
    let inner = config.intermediate_size as f64;
    let embeddings = (config.vocab_size + config.max_position_embeddings) as f64 * d;
    let layer = 4.0 * (d * d + d) + (d * inner + inner) + (inner * d + d) + 4.0 * d;
    embeddings + config.num_hidden_layers as f64 * layer + 2.0 * d
}
