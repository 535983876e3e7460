//! The diffusion UNet as a [`TrainTask`]: draws t and ε, asks the diffusion process for x_t
//! and the loss; samples grids with the configured sampler; evaluates held-out ε-MSE per band
//! of t and bits/dim. A latent run (`latent.autoencoder`) does all of that on the frozen
//! autoencoder's scaled latents, encoded once by [`TrainTask::prepare_data`], and decodes its
//! grids. A text-to-image run (`text.encoder`) cross-attends to its frozen text encoder's
//! states of each image's caption, and draws its grids from the held-out captions with
//! classifier-free guidance.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxidiff_data::{ChannelStats, Dataset};
use oxidiff_diffusion::{
    Denoiser, GaussianDiffusion, LossHistory, PromptGuidance, TimestepSampling, draw_timesteps,
    training_noise,
};
use oxidiff_models::{UNet, UNetConfig};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::feed::{Conditioning, LabelDropout};
use super::setup::RunData;
use super::task::{EvalDue, MicroBatch, TrainTask};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::eval::{self, EvalRecord};
use crate::generate::{generate, save_image_grid};
use crate::latent::{FirstStage, LatentSpace, LatentsMade, encode_run_data};
use crate::memory::{F32, MemoryEstimate, MemoryPart, sampling_bytes_per_image};
use crate::run_dir::RunDir;
use crate::text::{TextConditioner, TextSource};

/// A diffusion model in training: the UNet's config, the process, and the run config.
pub struct DiffusionTask {
    pub unet: UNetConfig,
    pub diffusion: GaussianDiffusion,
    /// A latent run's autoencoder as its config files describe it (read at `new`, so a bad
    /// combination is refused before any work).
    first_stage: Option<FirstStage>,
    /// Its latent space once loaded (by `prepare_data`), and what the encoding did.
    latent: Option<(LatentSpace, LatentsMade)>,
    /// A text-to-image run's encoder as its files describe it (found at `new`).
    text_source: Option<TextSource>,
    /// The frozen encoder once loaded (by `prepare_data`).
    text: Option<TextConditioner>,
    config: RunConfig,
}

impl DiffusionTask {
    /// A latent run's latent space and what encoding its images did; `None` in pixel space
    /// (and before the trainer has prepared the data).
    pub fn latents(&self) -> Option<&(LatentSpace, LatentsMade)> {
        self.latent.as_ref()
    }

    /// A text-to-image run's frozen text encoder; `None` without text (and before the trainer
    /// has prepared the data).
    pub fn text(&self) -> Option<&TextConditioner> {
        self.text.as_ref()
    }
}

/// The diffusion task's part of `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DiffusionState {
    /// Recent losses per timestep (`train.timestep_draw = "loss-second-moment"`); absent in
    /// runs without it and in checkpoints from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_history: Option<LossHistory>,
}

impl TrainTask for DiffusionTask {
    type Model = UNet;
    type State = DiffusionState;

    fn new(config: &RunConfig) -> Result<Self, TrainError> {
        config
            .text
            .check_captions_used(config.data.captions)
            .map_err(|message| TrainError::Config {
                origin: "the run config".into(),
                message,
            })?;
        let first_stage = config.first_stage()?;
        let text_source = config.text_source()?;
        let unet = config.unet_for(first_stage.as_ref(), text_source.as_ref())?;
        if let (Some(width), None) = (unet.cross_attention_dim, &text_source) {
            // Without states to attend to, the cross-attention layers would never train.
            return Err(TrainError::Config {
                origin: "model".into(),
                message: format!(
                    "the UNet cross-attends to {width}-wide text states (preset `{}` or \
                     cross_attention_dim) but the run has no text.encoder to make them",
                    config.model.preset
                ),
            });
        }
        Ok(Self {
            unet,
            diffusion: GaussianDiffusion::new(config.diffusion.clone())?,
            first_stage,
            latent: None,
            text_source,
            text: None,
            config: config.clone(),
        })
    }

    /// The images' shape: the UNet's, or in a latent run the autoencoder's input.
    fn image_shape(config: &RunConfig) -> Result<(usize, usize), TrainError> {
        if let Some(sizes) = config.latent_sizes()? {
            return Ok((sizes.image_size, sizes.image_channels));
        }
        let unet = config.unet()?;
        Ok((unet.image_size, unet.in_channels))
    }

    /// A latent run encodes its training and held-out images (or reads them from the run's
    /// cache) and trains on those.
    fn prepare_data(
        &mut self,
        data: RunData,
        run_dir: &RunDir,
        device: &Device,
    ) -> Result<RunData, TrainError> {
        // The frozen text encoder is a first stage too: loaded once, on the inference device
        // (a trained one is part of the model instead: `JointTextTask`).
        if let Some(source) = self
            .text_source
            .as_ref()
            .filter(|_| !self.config.text.trains_encoder())
        {
            self.text = Some(TextConditioner::load(
                source,
                self.config.text.max_length,
                device,
            )?);
        }
        let Some(first) = &self.first_stage else {
            return Ok(data);
        };
        let batch = self.config.train.batch_size;
        let (latents, space, made) =
            encode_run_data(first, &self.config.latent, data, run_dir, batch, device)?;
        self.latent = Some((space, made));
        Ok(latents)
    }

    /// Weights with their gradients, EMA, optimiser moments (and the copy a rollback returns
    /// to); the activations a training step keeps for backward; the sample grid's forward
    /// passes; the noise schedule's f64 tables (and the loss history of importance sampling).
    fn memory_estimate(config: &RunConfig) -> Result<MemoryEstimate, TrainError> {
        let unet = config.unet()?;
        let footprint = unet.footprint();
        let mut estimate = MemoryEstimate::for_training(
            &footprint,
            &config.train,
            format!(
                "model.model_channels = {}, model.channel_mult = {:?}",
                unet.model_channels, unet.channel_mult
            ),
        );
        if let Some(first) = config.first_stage()? {
            let sizes = first.sizes(config)?;
            let vae = oxidiff_models::vae::AutoencoderKLConfig {
                sample_size: sizes.image_size,
                ..first.config.clone()
            }
            .footprint();
            let images = config.train.batch_size.max(config.sample.num) as f64;
            estimate.add(MemoryPart {
                what: "the frozen autoencoder (weights, and a batch encoded or decoded)",
                key: format!(
                    "latent.autoencoder = {:?}",
                    first.path.display().to_string()
                ),
                remedy: "lower train.batch_size and sample.num, or use a smaller autoencoder",
                bytes: (vae.parameters + images * vae.inference_activations_per_image) * F32,
            });
        }
        if let Some(source) = config
            .text_source()?
            .filter(|_| !config.text.trains_encoder())
        {
            estimate.add(MemoryPart {
                what: "the frozen text encoder (weights, and its cache of caption states)",
                key: format!("text.encoder = {:?}", source.describe()),
                remedy: "use a smaller text encoder",
                bytes: TextConditioner::bytes_at_most(&source),
            });
        }
        estimate.add(MemoryPart {
            what: "the sample grid",
            key: format!("sample.num = {}", config.sample.num),
            remedy: "lower sample.num",
            bytes: config.sample.num as f64 * sampling_bytes_per_image(&unet),
        });
        let steps = config.diffusion.num_train_timesteps as f64;
        let history = match config.train.timestep_draw {
            TimestepSampling::Uniform => 0.0,
            TimestepSampling::LossSecondMoment => oxidiff_diffusion::HISTORY_PER_T as f64,
        };
        estimate.add(MemoryPart {
            what: "the noise schedule",
            key: format!(
                "diffusion.num_train_timesteps = {}",
                config.diffusion.num_train_timesteps
            ),
            remedy: "lower diffusion.num_train_timesteps (1000 is usual)",
            // About 16 f64 tables of length T (betas, ᾱ, posterior coefficients, σ).
            bytes: steps * 8.0 * (16.0 + history),
        });
        Ok(estimate)
    }

    fn init_model(&self, device: &Device) -> UNet {
        self.unet.init(device)
    }

    /// `model.init_from`'s weights when it is set (checked against the config again: the
    /// files may have changed since the run was set up).
    fn initial_model(&self, device: &Device) -> Result<UNet, TrainError> {
        match self.config.initial_weights()? {
            Some(weights) => weights.load(&self.unet, device),
            None => Ok(self.init_model(device)),
        }
    }

    /// A loss history when t is importance-sampled, kept from the checkpoint if it has one (a
    /// run may switch `train.timestep_draw` when resumed).
    fn state(&self, saved: Option<DiffusionState>) -> DiffusionState {
        let saved = saved.and_then(|s| s.loss_history);
        DiffusionState {
            loss_history: match self.config.train.timestep_draw {
                TimestepSampling::Uniform => None,
                TimestepSampling::LossSecondMoment => {
                    Some(saved.unwrap_or_else(|| LossHistory::new(self.diffusion.num_timesteps())))
                }
            },
        }
    }

    fn conditioning(&self) -> Conditioning {
        Conditioning {
            labels: self.unet.num_classes.map(|null_label| LabelDropout {
                null_label,
                probability: self.config.train.label_dropout,
            }),
            captions: self.text_source.as_ref().map(|_| {
                self.config
                    .data
                    .caption_options(self.config.train.caption_dropout)
            }),
        }
    }

    /// The training loss of Ho et al. (2020) Algorithm 1 (or the configured variant): t drawn
    /// per image, x_t = q_sample(x_0, t, ε), the network's output against its target.
    fn loss(
        &self,
        model: &UNet,
        batch: MicroBatch<'_>,
        _step: u64,
        state: &mut DiffusionState,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError> {
        let context = match &self.text {
            Some(text) => Some(text.encode(batch.captions, &batch.images.device())?),
            None => None,
        };
        self.loss_with_context(model, batch.images, batch.labels, context, state, rng)
    }

    /// `sample.num` images with the run's sampler, from noise seeded by the run seed.
    fn write_samples(
        &self,
        model: &UNet,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
    ) -> Result<(), TrainError> {
        let encode = self.frozen_encode(device);
        self.write_samples_with(
            model,
            path,
            shown,
            standardization,
            device,
            encode.as_deref(),
        )
    }

    /// Band ε-MSE and bits/dim (stride `train.bpd_stride`) of the first `train.eval_images`
    /// held-out images.
    fn evaluate(
        &self,
        model: &UNet,
        validation: &Dataset,
        due: EvalDue,
        step: u64,
        device: &Device,
    ) -> Result<EvalRecord, TrainError> {
        let encode = self.frozen_encode(device);
        self.evaluate_with(model, validation, due, step, device, encode.as_deref())
    }
}

/// Captions to the context a text-to-image UNet attends to (`[B]` → `[B, L, D]`).
pub(super) type Encode<'a> = dyn Fn(&[String]) -> Result<Tensor<3>, TrainError> + 'a;

impl DiffusionTask {
    /// The frozen encoder's [`Encode`] on `device`; `None` without one.
    fn frozen_encode<'a>(&'a self, device: &'a Device) -> Option<Box<Encode<'a>>> {
        self.text.as_ref().map(|text| {
            Box::new(move |captions: &[String]| text.encode(captions, device)) as Box<Encode<'a>>
        })
    }

    /// [`TrainTask::loss`] with the captions' context already made (a trained encoder's, with
    /// its gradient).
    ///
    /// # Shapes
    /// - `x_start`: `[B, C, H, W]`; `labels`: `[B]`; `context`: `[B, L, D]`
    pub(super) fn loss_with_context(
        &self,
        model: &UNet,
        x_start: Tensor<4>,
        labels: &[usize],
        context: Option<Tensor<3>>,
        state: &mut DiffusionState,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError> {
        let device = x_start.device();
        let [batch, c, h, w] = x_start.dims();
        let draw = draw_timesteps(
            self.config.train.timestep_draw,
            state.loss_history.as_ref(),
            rng,
            batch,
            self.diffusion.num_timesteps(),
        );
        let t = draw.t;
        let noise = training_noise(
            rng,
            [batch, c, h, w],
            self.config.diffusion.offset_noise,
            &device,
        );
        let x_t = self.diffusion.q_sample(x_start.clone(), &t, noise.clone());
        let t_float: Vec<f32> = t.iter().map(|&v| v as f32).collect();
        let timesteps = Tensor::<1>::from_data(TensorData::new(t_float, [batch]), &device);
        let labels = self.unet.num_classes.map(|_| {
            let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device)
        });
        let output = model.forward_with_context(x_t, timesteps, labels, context);
        let importance = state.loss_history.is_some().then_some(&draw.weights[..]);
        let losses = self
            .diffusion
            .training_losses(output, x_start, noise, &t, importance);
        if let Some(history) = &mut state.loss_history {
            let per_sample: Vec<f64> = losses
                .per_sample
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .unwrap_or_default();
            history.update(&t, &per_sample);
        }
        Ok(losses.loss)
    }

    /// [`TrainTask::write_samples`] with the prompts encoded by `encode` (none: no text).
    pub(super) fn write_samples_with(
        &self,
        model: &UNet,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
        encode: Option<&Encode<'_>>,
    ) -> Result<(), TrainError> {
        let (size, channels) = (self.unet.image_size, self.unet.in_channels);
        let num = self.config.sample.num;
        let shape = [num, channels, size, size];
        let sample = |denoiser: &dyn Denoiser| {
            generate(
                &denoiser,
                &self.diffusion,
                &self.config.sample,
                shape,
                self.config.seed,
                device,
                &mut |_, _| {},
            )
        };
        let images = match encode {
            None => sample(model)?,
            Some(encode) => {
                let prompts = grid_prompts(shown, num);
                write_prompts(&path.with_extension("txt"), &prompts)?;
                let guided = PromptGuidance {
                    model,
                    diffusion: &self.diffusion,
                    cond: encode(&prompts)?,
                    uncond: encode(&[String::new()])?,
                    scale: self.config.sample.guidance_scale,
                };
                sample(&guided)?
            }
        };
        let images = match &self.latent {
            Some((space, _)) => space.decode(images),
            None => images,
        };
        save_image_grid(path, images, standardization)
    }

    /// [`TrainTask::evaluate`] with the empty prompt encoded by `encode` (none: no text).
    pub(super) fn evaluate_with(
        &self,
        model: &UNet,
        validation: &Dataset,
        due: EvalDue,
        step: u64,
        device: &Device,
        encode: Option<&Encode<'_>>,
    ) -> Result<EvalRecord, TrainError> {
        let train = &self.config.train;
        let seed = self.config.seed;
        let indices: Vec<usize> = (0..train.eval_images.min(validation.len())).collect();
        let batch = train.batch_size;
        // A text-to-image model is measured as its unconditional model (the empty prompt,
        // which caption dropout trains); a model without text is the UNet itself.
        let unconditional;
        let model: &dyn Denoiser = match encode {
            Some(encode) => {
                let empty = encode(&[String::new()])?;
                unconditional = PromptGuidance {
                    model,
                    diffusion: &self.diffusion,
                    cond: empty.clone(),
                    uncond: empty,
                    scale: 1.0,
                };
                &unconditional
            }
            None => model,
        };
        let band_mse = if due.frequent {
            let diffusion = &self.diffusion;
            Some(eval::band_mse(
                &model, diffusion, validation, &indices, batch, seed, device,
            )?)
        } else {
            None
        };
        let nll = if due.likelihood {
            Some(eval::nll(
                &model,
                &self.diffusion,
                validation,
                &indices,
                batch,
                train.bpd_stride,
                seed,
                device,
                &mut |_, _| {},
            )?)
        } else {
            None
        };
        Ok(EvalRecord {
            step,
            band_mse,
            nll,
            distance: None,
            reconstruction: None,
        })
    }
}

/// The prompts of a text-to-image grid: the first caption of each of the first `num` images
/// of `shown` (cycling when it has fewer), so every grid of a run asks for the same things.
fn grid_prompts(shown: &Dataset, num: usize) -> Vec<String> {
    (0..num)
        .map(|k| {
            shown
                .captions_of(k % shown.len().max(1))
                .first()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// `prompts`, one per line in grid order (row by row), beside the grid they drew.
fn write_prompts(path: &Path, prompts: &[String]) -> Result<(), TrainError> {
    let text: String = prompts.iter().map(|p| format!("{p}\n")).collect();
    crate::run_dir::write_atomic(path, text.as_bytes())
}
