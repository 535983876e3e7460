//! A text-to-image UNet trained together with its text encoder (`text.train`, and always for
//! `text.encoder = "scratch"`) as a [`TrainTask`]: everything of [`DiffusionTask`] but the
//! context, which the model's own encoder makes from each step's captions with its gradient,
//! and the encoder's learning rate, `text.lr`, a scale on its update.

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use oxidiff_data::{ChannelStats, Dataset};
use oxidiff_models::text::{ClipTextConfig, TextEncoder, TextTokenizer};
use rand_chacha::ChaCha8Rng;

use super::diffusion::{DiffusionState, DiffusionTask};
use super::feed::Conditioning;
use super::setup::RunData;
use super::task::{EvalDue, MicroBatch, TrainTask};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::eval::EvalRecord;
use crate::memory::{F32, MemoryEstimate, MemoryPart};
use crate::run_dir::RunDir;
use crate::text::{JointModel, TextSource, checked_tokenizer, scale_update};

/// Floats of activations a CLIP text layer keeps per token per unit of width for backward
/// (attention inputs and outputs, the MLP's 4× inner states, two LayerNorms): an upper bound.
const ENCODER_ACTIVATIONS_PER_TOKEN_WIDTH: f64 = 24.0;

/// The diffusion task with a trained text encoder.
pub struct JointTextTask {
    inner: DiffusionTask,
    source: TextSource,
    /// The encoder's architecture: a fresh one's or the pretrained one's `config.json`.
    encoder_config: ClipTextConfig,
    tokenizer: TextTokenizer,
    /// `text.lr / train.lr`: the encoder's update relative to the UNet's.
    encoder_lr_factor: f64,
}

impl JointTextTask {
    /// The diffusion task inside: the UNet's config, the process, a latent run's latents.
    pub fn diffusion(&self) -> &DiffusionTask {
        &self.inner
    }

    /// Where the encoder comes from, in words.
    pub fn describe_encoder(&self) -> String {
        self.source.describe()
    }

    /// The encoder's learning rate relative to `train.lr`.
    pub fn encoder_lr_factor(&self) -> f64 {
        self.encoder_lr_factor
    }

    /// Tokens per caption.
    pub fn context_length(&self) -> usize {
        self.tokenizer.context_length()
    }
}

impl TrainTask for JointTextTask {
    type Model = JointModel;
    type State = DiffusionState;

    /// # Errors
    /// A config that does not train its encoder, a BERT encoder (fine-tuning takes CLIP text
    /// encoders), and whatever [`DiffusionTask::new`] refuses.
    fn new(config: &RunConfig) -> Result<Self, TrainError> {
        let refuse = |message: String| TrainError::Config {
            origin: "text.train".into(),
            message,
        };
        if !config.text.trains_encoder() {
            return Err(refuse(
                "is off: a run with a frozen encoder is a plain diffusion run".into(),
            ));
        }
        let inner = DiffusionTask::new(config)?;
        let source = config
            .text_source()?
            .ok_or_else(|| refuse("trains a text encoder, but text.encoder is unset".into()))?;
        let encoder_config = match &source {
            TextSource::Scratch(config) => config.clone(),
            TextSource::Pretrained(p) => {
                let (path, json) = oxidiff_models::text::read_config_json(&p.encoder_dir)?;
                if json.get("model_type").and_then(|v| v.as_str())
                    != Some(oxidiff_models::text::CLIP_TEXT_MODEL_TYPE)
                {
                    return Err(refuse(format!(
                        "trains CLIP text encoders (model_type \"{}\"); {} is another kind \
                         (freeze it, or train text.encoder = \"scratch\")",
                        oxidiff_models::text::CLIP_TEXT_MODEL_TYPE,
                        path.display()
                    )));
                }
                ClipTextConfig::from_config_json(&json, &path)?
            }
        };
        let tokenizer = checked_tokenizer(
            &source,
            config.text.max_length,
            encoder_config.max_position_embeddings,
            encoder_config.vocab_size,
        )?;
        let lr = config.train.lr;
        // With train.lr = 0 no update exists to scale; the encoder then stands still too.
        let encoder_lr_factor = match config.text.lr {
            Some(text_lr) if lr > 0.0 => text_lr / lr,
            _ => 1.0,
        };
        Ok(Self {
            inner,
            source,
            encoder_config,
            tokenizer,
            encoder_lr_factor,
        })
    }

    fn image_shape(config: &RunConfig) -> Result<(usize, usize), TrainError> {
        DiffusionTask::image_shape(config)
    }

    /// The diffusion task's, with the encoder's weights, gradients, moments, EMA and rollback
    /// copy, and the activations of a batch of captions.
    fn memory_estimate(config: &RunConfig) -> Result<MemoryEstimate, TrainError> {
        let mut estimate = DiffusionTask::memory_estimate(config)?;
        if let Some(source) = config.text_source()? {
            let width = source.hidden_size() as f64;
            let parameters = match &source {
                TextSource::Scratch(c) => crate::text::clip_parameters(c),
                // The weight file's float32s.
                TextSource::Pretrained(p) => {
                    std::fs::metadata(p.encoder_dir.join(oxidiff_models::text::MODEL_FILE))
                        .map_or(0.0, |m| m.len() as f64 / F32)
                }
            };
            let tokens = (config.train.batch_size * config.text.max_length.unwrap_or(77)) as f64;
            let layers = match &source {
                TextSource::Scratch(c) => c.num_hidden_layers as f64,
                TextSource::Pretrained(_) => 12.0,
            };
            estimate.add(MemoryPart {
                what: "the trained text encoder (weights, gradients, moments, EMA, activations)",
                key: format!("text.encoder = {:?}", source.describe()),
                remedy: "use a smaller encoder (text.hidden_size, text.num_hidden_layers) or \
                         lower train.batch_size",
                bytes: (6.0 * parameters
                    + tokens * width * layers * ENCODER_ACTIVATIONS_PER_TOKEN_WIDTH)
                    * F32,
            });
        }
        Ok(estimate)
    }

    fn prepare_data(
        &mut self,
        data: RunData,
        run_dir: &RunDir,
        device: &Device,
    ) -> Result<RunData, TrainError> {
        self.inner.prepare_data(data, run_dir, device)
    }

    /// The UNet and an encoder of the run's architecture, both freshly initialised.
    fn init_model(&self, device: &Device) -> JointModel {
        JointModel {
            unet: self.inner.init_model(device),
            text_encoder: TextEncoder::Clip(self.encoder_config.init(device)),
        }
    }

    /// The UNet as [`DiffusionTask`] starts it (`model.init_from`), the encoder fresh
    /// (`"scratch"`) or with its pretrained weights.
    fn initial_model(&self, device: &Device) -> Result<JointModel, TrainError> {
        Ok(JointModel {
            unet: self.inner.initial_model(device)?,
            text_encoder: self.source.load_encoder(device)?,
        })
    }

    fn state(&self, saved: Option<DiffusionState>) -> DiffusionState {
        self.inner.state(saved)
    }

    fn conditioning(&self) -> Conditioning {
        self.inner.conditioning()
    }

    /// The diffusion loss with the model's own encoder's states of the captions: the gradient
    /// reaches the encoder through the UNet's cross-attention.
    fn loss(
        &self,
        model: &JointModel,
        batch: MicroBatch<'_>,
        _step: u64,
        state: &mut DiffusionState,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError> {
        let device = batch.images.device();
        let context = model.encode(&self.tokenizer, batch.captions, &device)?;
        self.inner.loss_with_context(
            &model.unet,
            batch.images,
            batch.labels,
            Some(context),
            state,
            rng,
        )
    }

    /// The step at `lr` for the UNet and `text.lr` for the encoder.
    fn step(
        &self,
        optimizer: &mut ModuleOptimizer,
        lr: f64,
        model: JointModel,
        grads: GradientsParams,
    ) -> JointModel {
        let before = model.text_encoder.clone();
        let after = optimizer.step(lr, model, grads);
        JointModel {
            text_encoder: scale_update(&before, after.text_encoder, self.encoder_lr_factor),
            unet: after.unet,
        }
    }

    fn write_samples(
        &self,
        model: &JointModel,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
    ) -> Result<(), TrainError> {
        let encode = |captions: &[String]| model.encode(&self.tokenizer, captions, device);
        self.inner.write_samples_with(
            &model.unet,
            path,
            shown,
            standardization,
            device,
            Some(&encode),
        )
    }

    fn evaluate(
        &self,
        model: &JointModel,
        validation: &Dataset,
        due: EvalDue,
        step: u64,
        device: &Device,
    ) -> Result<EvalRecord, TrainError> {
        let encode = |captions: &[String]| model.encode(&self.tokenizer, captions, device);
        self.inner
            .evaluate_with(&model.unet, validation, due, step, device, Some(&encode))
    }
}
