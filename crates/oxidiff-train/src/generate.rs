//! Drawing images from a trained model: the code behind `oxidiff sample` and the sample grids
//! written while training.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_diffusion::sample::{
    DpmSolverAlgorithm, DpmSolverOptions, sample_ddim, sample_ddpm, sample_dpm_solver,
    sample_euler, sample_heun, sample_pndm,
};
use oxidiff_diffusion::{Denoiser, GaussianDiffusion, PromptGuidance, TimestepSpacing, randn};
use oxidiff_models::UNet;
use oxidiff_models::cpu::on_pool;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use oxidiff_data::{ChannelStats, Standardize};

use crate::autoencoder_config::TaskKind;
use crate::checkpoint;
use crate::config::{RunConfig, SampleConfig, SamplerKind};
use crate::error::TrainError;
use crate::latent::LatentSpace;
use crate::memory::sampling_bytes_per_image;
use crate::run_dir::{EMA_FILE, MODEL_FILE, RunDir, read_json, resolve_checkpoint};
use crate::text::{TextConditioner, load_joint};

/// What a text-to-image model is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub prompt: String,
    /// What to guide away from (empty: the unconditional model).
    pub negative: String,
    /// The classifier-free guidance scale (1: the plain conditional model).
    pub guidance: f64,
}

/// A trained model ready to sample from.
pub struct LoadedModel {
    pub config: RunConfig,
    pub model: UNet,
    pub diffusion: GaussianDiffusion,
    pub checkpoint: PathBuf,
    /// How the run standardised its images, to map samples back (`None`: [-1, 1]).
    pub standardization: Option<ChannelStats>,
    /// A latent run's autoencoder and scaling factor: the UNet's samples are latents that
    /// [`LoadedModel::to_images`] decodes.
    pub latent: Option<LatentSpace>,
    /// A text-to-image model's frozen text encoder: prompts become the context the UNet
    /// attends to ([`LoadedModel::prompts_guidance`]).
    pub text: Option<TextConditioner>,
}

impl LoadedModel {
    /// Samples with `spacing` instead of the run's `diffusion.timestep_spacing`. Spacing only
    /// picks which timesteps a sampler visits; no schedule coefficient depends on it, so nothing
    /// is recomputed.
    pub fn set_timestep_spacing(&mut self, spacing: TimestepSpacing) {
        self.diffusion.config.timestep_spacing = spacing;
    }

    /// `(side, channels)` of the images the model makes and edits: the UNet's, or in a latent
    /// run the autoencoder's.
    pub fn image_shape(&self) -> Result<(usize, usize), TrainError> {
        if let Some(sizes) = self.config.latent_sizes()? {
            return Ok((sizes.image_size, sizes.image_channels));
        }
        let unet = self.config.unet()?;
        Ok((unet.image_size, unet.in_channels))
    }

    /// Bytes one sampled image takes: the sampler's (see [`sampling_bytes_per_image`]), and
    /// in a latent run the decoder's activations at the image size.
    pub fn sampling_bytes_per_image(&self) -> Result<f64, TrainError> {
        let mut bytes = sampling_bytes_per_image(&self.config.unet()?);
        if let (Some(first), Some(sizes)) =
            (self.config.first_stage()?, self.config.latent_sizes()?)
        {
            let vae = oxidiff_models::vae::AutoencoderKLConfig {
                sample_size: sizes.image_size,
                ..first.config
            };
            bytes += vae.footprint().inference_activations_per_image * crate::memory::F32;
        }
        Ok(bytes)
    }

    /// Images for what the UNet makes: decoded latents in a latent run, else the UNet's
    /// output itself.
    ///
    /// # Shapes
    /// - `x`: `[N, C, s, s]` (the UNet's); returns `[N, channels, side, side]`
    pub fn to_images(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.latent {
            Some(space) => space.decode(x),
            None => x,
        }
    }

    /// Classifier-free guidance toward `prompts` (one for the whole batch, or one per sample)
    /// and away from `negative` (the empty prompt for none) at `scale`, with the model on
    /// `device`; `None` for a model without text.
    ///
    /// # Errors
    /// A prompt the tokenizer refuses.
    pub fn prompts_guidance(
        &self,
        prompts: &[String],
        negative: &str,
        scale: f64,
        device: &Device,
    ) -> Result<Option<PromptGuidance<'_, UNet>>, TrainError> {
        let Some(text) = &self.text else {
            return Ok(None);
        };
        Ok(Some(PromptGuidance {
            model: &self.model,
            diffusion: &self.diffusion,
            cond: text.encode(prompts, device)?,
            uncond: text.encode(&[negative.to_string()], device)?,
            scale,
        }))
    }

    /// What samplers and edits call, with the model on `device`: a text-to-image model guided
    /// toward `prompt` (none: the empty prompt, its unconditional model), else the UNet.
    ///
    /// # Errors
    /// A prompt for a model without text, or one the tokenizer refuses.
    pub fn denoiser(
        &self,
        prompt: Option<&Prompt>,
        device: &Device,
    ) -> Result<Box<dyn Denoiser + '_>, TrainError> {
        let (text, negative, scale) = match prompt {
            Some(p) => (p.prompt.as_str(), p.negative.as_str(), p.guidance),
            None => ("", "", 1.0),
        };
        match self.prompts_guidance(&[text.to_string()], negative, scale, device)? {
            Some(guided) => Ok(Box::new(guided)),
            None if prompt.is_some() => Err(TrainError::Checkpoint {
                path: self.checkpoint.clone(),
                message: "is not a text-to-image model (its run has no text.encoder), so it \
                          takes no prompt"
                    .into(),
            }),
            None => Ok(Box::new(&self.model)),
        }
    }

    /// The UNet's space for images: scaled latents in a latent run, else the images.
    ///
    /// # Shapes
    /// - `images`: `[N, channels, side, side]`; returns `[N, C, s, s]`
    pub fn from_images(&self, images: Tensor<4>) -> Tensor<4> {
        match &self.latent {
            Some(space) => space.encode(images),
            None => images,
        }
    }
}

/// Loads a checkpoint (or a run directory's newest checkpoint) for sampling: the EMA weights
/// when `use_ema`, else the online weights; a latent run's autoencoder with them.
///
/// `path` may also be a diffusers directory: a pipeline with `unet/` and `scheduler/` (with
/// `vae/`, a latent model decoding with its `scaling_factor`), or a bare `UNet2DModel`
/// directory with its schedule in a sibling `../scheduler/`. Its one set of weights is used
/// whatever `use_ema` says, and [`LoadedModel::config`] is the run config its configs amount
/// to (docs/diffusers.md).
pub fn load_for_sampling(
    path: &Path,
    use_ema: bool,
    device: &Device,
) -> Result<LoadedModel, TrainError> {
    if let Some(found) = crate::diffusers::find_diffusers_model(path)? {
        return crate::diffusers::load_diffusers_model(found, device);
    }
    let dir = resolve_checkpoint(path)?;
    let config = checkpoint::load_config(&dir, &[])?;
    if config.task == TaskKind::Autoencoder {
        return Err(TrainError::Checkpoint {
            path: dir,
            message: "is an autoencoder (task = \"autoencoder\"): it reconstructs images, it does \
                      not sample them; its held-out reconstructions are in the run's samples/ and \
                      eval.jsonl"
                .into(),
        });
    }
    let weights = dir.join(if use_ema { EMA_FILE } else { MODEL_FILE });
    // A run that trained its text encoder holds it in the same weight file as the UNet.
    let (model, trained_encoder) = if config.text.trains_encoder() {
        let (unet, encoder, source) = load_joint(&config, &weights, device)?;
        (unet, Some((encoder, source)))
    } else {
        (
            checkpoint::load_weights(config.unet()?.init(device), &weights)?,
            None,
        )
    };
    let diffusion = GaussianDiffusion::new(config.diffusion.clone())?;
    let run_dir = RunDir::of_checkpoint(&dir);
    let standardization = match config.data.standardize {
        Standardize::MinusOneOne => None,
        Standardize::PerChannel => Some(read_json(&run_dir.standardization())?),
    };
    let latent = match config.first_stage()? {
        Some(first) => Some(LatentSpace::of_run(
            &first,
            &run_dir.latent_record(),
            device,
        )?),
        None => None,
    };
    let max_length = config.text.max_length;
    let text = match (trained_encoder, config.text_source()?) {
        (Some((encoder, source)), _) => Some(TextConditioner::with_encoder(
            &source, max_length, encoder, device,
        )?),
        (None, Some(source)) => Some(TextConditioner::load(&source, max_length, device)?),
        (None, None) => None,
    };
    Ok(LoadedModel {
        config,
        model,
        diffusion,
        checkpoint: dir,
        standardization,
        latent,
        text,
    })
}

/// Draws images of `shape` with the configured sampler, from noise seeded by `seed`.
///
/// # Shapes
/// - `shape`: `[N, C, S, S]`
/// - output: `[N, C, S, S]` in the model's space ([-1, 1] for the default scaling; see
///   [`save_image_grid`] for the way back to pixels)
///
/// The sampler runs on the kernels' thread pool ([`on_pool`]), as a training step does.
pub fn generate(
    model: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    sample: &SampleConfig,
    shape: [usize; 4],
    seed: u64,
    device: &Device,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Tensor<4>, TrainError> {
    on_pool(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x_t = randn(&mut rng, shape, device);
        let images = match sample.sampler {
            SamplerKind::Ddpm => {
                sample_ddpm(model, diffusion, x_t, sample.steps, &mut rng, progress)?
            }
            SamplerKind::Ddim => sample_ddim(
                model,
                diffusion,
                x_t,
                sample.steps,
                sample.eta,
                &mut rng,
                progress,
            )?,
            SamplerKind::Pndm => sample_pndm(model, diffusion, x_t, sample.steps, progress)?,
            SamplerKind::Euler | SamplerKind::Heun => {
                let options = sample.karras_options();
                let run = if sample.sampler == SamplerKind::Euler {
                    sample_euler
                } else {
                    sample_heun
                };
                run(
                    model,
                    diffusion,
                    x_t,
                    sample.steps,
                    &options,
                    &mut rng,
                    progress,
                )?
            }
            SamplerKind::DpmPp2m | SamplerKind::DpmPp2mSde => {
                let options = DpmSolverOptions {
                    algorithm: if sample.sampler == SamplerKind::DpmPp2m {
                        DpmSolverAlgorithm::DpmSolverPlusPlus
                    } else {
                        DpmSolverAlgorithm::SdeDpmSolverPlusPlus
                    },
                    karras_sigmas: sample.karras_sigmas,
                };
                sample_dpm_solver(
                    model,
                    diffusion,
                    x_t,
                    sample.steps,
                    &options,
                    &mut rng,
                    progress,
                )?
            }
        };
        Ok(images)
    })
}

/// The images as pixel values in [-1, 1]: mapped back from the run's standardisation when it
/// had one, then clamped.
///
/// # Shapes
/// - `images`: `[N, C, H, W]`; returns the same, flattened
fn to_pixels(
    path: &Path,
    images: Tensor<4>,
    standardization: Option<&ChannelStats>,
) -> Result<Vec<f32>, TrainError> {
    let [_, _, h, w] = images.dims();
    let mut data: Vec<f32> = images
        .into_data()
        .try_to_vec()
        .map_err(|e| TrainError::Image {
            path: path.to_path_buf(),
            message: format!("cannot read the samples back: {e:?}"),
        })?;
    if let Some(stats) = standardization {
        stats.invert(&mut data, h * w);
    }
    data.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    Ok(data)
}

/// Writes one image as a PNG at its own size.
///
/// # Shapes
/// - `image`: `[1, C, H, W]` (H = W)
pub fn save_image(
    path: &Path,
    image: Tensor<4>,
    standardization: Option<&ChannelStats>,
) -> Result<(), TrainError> {
    let [_, c, h, _] = image.dims();
    let data = to_pixels(path, image, standardization)?;
    oxidiff_data::save_png(path, &data, c, h)?;
    Ok(())
}

/// Writes images as a PNG grid (tiles upscaled so small images stay visible): mapped back from
/// the run's standardisation when it had one, then clamped to [-1, 1].
pub fn save_image_grid(
    path: &Path,
    images: Tensor<4>,
    standardization: Option<&ChannelStats>,
) -> Result<(), TrainError> {
    let [n, c, h, _] = images.dims();
    let data = to_pixels(path, images, standardization)?;
    let nrow = (n as f64).sqrt().ceil() as usize;
    let scale = (64 / h).max(1) as u32;
    oxidiff_data::save_grid(path, &data, n, c, h, nrow, scale)?;
    Ok(())
}
