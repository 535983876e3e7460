//! The KL autoencoder as a [`TrainTask`] (`task = "autoencoder"`): latent-diffusion's
//! objective less the perceptual and adversarial terms — a reconstruction term scaled by a
//! learned log-variance, plus a small KL to the standard normal (Rombach et al. 2022, §3 and
//! appendix G; `LPIPSWithDiscriminator`). Its grids show held-out images above their
//! reconstructions; its evaluations are reconstruction PSNR, KL per latent element and the
//! latents' channel statistics.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_data::{ChannelStats, Dataset};
use oxidiff_diffusion::randn;
use oxidiff_models::vae::{AutoencoderKL, AutoencoderKLConfig};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::feed::LabelDropout;
use super::task::{EvalDue, TrainTask};
use crate::autoencoder_config::{AutoencoderSection, ReconstructionLoss};
use crate::config::RunConfig;
use crate::edit::psnr;
use crate::error::TrainError;
use crate::eval::{EvalRecord, ReconstructionScores};
use crate::generate::save_image_grid;
use crate::memory::{F32, MemoryEstimate, MemoryPart};

/// Images a reconstruction grid shows (above their reconstructions).
const GRID_IMAGES: usize = 8;

/// What the optimiser updates: the autoencoder and the log-variance of its reconstruction
/// term (latent-diffusion's `logvar`, one scalar).
#[derive(Module, Debug)]
pub struct AutoencoderTraining {
    pub vae: AutoencoderKL,
    /// `[1]`
    pub logvar: Param<Tensor<1>>,
}

/// An autoencoder in training.
pub struct AutoencoderTask {
    pub vae: AutoencoderKLConfig,
    section: AutoencoderSection,
    config: RunConfig,
}

/// Nothing besides the weights carries across steps (a discriminator's state will).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AutoencoderState {}

fn invalid(message: String) -> TrainError {
    TrainError::Config {
        origin: "[autoencoder]".into(),
        message,
    }
}

impl TrainTask for AutoencoderTask {
    type Model = AutoencoderTraining;
    type State = AutoencoderState;

    fn new(config: &RunConfig) -> Result<Self, TrainError> {
        Ok(Self {
            vae: config.autoencoder.resolve().map_err(invalid)?,
            section: config.autoencoder.clone(),
            config: config.clone(),
        })
    }

    fn image_shape(config: &RunConfig) -> Result<(usize, usize), TrainError> {
        let section = &config.autoencoder;
        section.resolve().map_err(invalid)?;
        Ok((section.image_size, section.in_channels))
    }

    /// Weights with gradients, EMA, optimiser moments and the rollback copy; the activations
    /// of one step; the reconstruction grid.
    fn memory_estimate(config: &RunConfig) -> Result<MemoryEstimate, TrainError> {
        let vae = config.autoencoder.resolve().map_err(invalid)?;
        let footprint = AutoencoderKLConfig {
            sample_size: config.autoencoder.image_size,
            ..vae.clone()
        }
        .footprint();
        let mut estimate = MemoryEstimate::for_training(
            &footprint,
            &config.train,
            format!(
                "autoencoder.block_out_channels = {:?}",
                vae.block_out_channels
            ),
        );
        estimate.add(MemoryPart {
            what: "the reconstruction grid",
            key: format!("autoencoder.image_size = {}", config.autoencoder.image_size),
            remedy: "lower autoencoder.image_size",
            bytes: GRID_IMAGES as f64 * footprint.inference_activations_per_image * F32,
        });
        Ok(estimate)
    }

    fn init_model(&self, device: &Device) -> AutoencoderTraining {
        let logvar = TensorData::new(vec![self.section.logvar_init as f32], [1]);
        AutoencoderTraining {
            vae: self.vae.init(device),
            logvar: Param::from_tensor(Tensor::from_data(logvar, device)),
        }
    }

    fn state(&self, _saved: Option<AutoencoderState>) -> AutoencoderState {
        AutoencoderState {}
    }

    fn label_dropout(&self) -> Option<LabelDropout> {
        None
    }

    /// Σ (rec / e^logvar + logvar) / B + kl_weight · Σ KL / B, with rec = |x − x̂| or
    /// (x − x̂)² and x̂ decoded from a sample of the posterior.
    fn loss(
        &self,
        model: &AutoencoderTraining,
        images: Tensor<4>,
        _labels: &[usize],
        _state: &mut AutoencoderState,
        rng: &mut ChaCha8Rng,
    ) -> Tensor<1> {
        let [batch, _, _, _] = images.dims();
        let posterior = model.vae.encode(images.clone());
        let noise = randn(rng, posterior.mean.dims(), &images.device());
        let reconstructed = model.vae.decode(posterior.sample(noise));
        let diff = images - reconstructed;
        let rec = match self.section.reconstruction {
            ReconstructionLoss::L1 => diff.abs(),
            ReconstructionLoss::L2 => diff.square(),
        };
        let logvar = model.logvar.val();
        let count = rec.dims().iter().product::<usize>() as f64;
        // Σ rec·e^(−logvar) + N·logvar over the batch, per image.
        let nll = (rec.sum() * (-logvar.clone()).exp() + logvar * count) / batch as f64;
        let kl = posterior.kl().sum() / batch as f64;
        nll + kl * self.section.kl_weight
    }

    /// The first held-out images (row-wise) above their reconstructions from the posterior's
    /// mean.
    fn write_samples(
        &self,
        model: &AutoencoderTraining,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
    ) -> Result<(), TrainError> {
        let indices: Vec<usize> = (0..GRID_IMAGES.min(shown.len())).collect();
        let originals = shown.batch(&indices, device)?;
        let reconstructed = model.vae.decode(model.vae.encode(originals.clone()).mode());
        save_image_grid(
            path,
            Tensor::cat(vec![originals, reconstructed], 0),
            standardization,
        )
    }

    /// Reconstruction PSNR, KL per latent element and latent channel statistics of the first
    /// `train.eval_images` held-out images (every evaluation, frequent or not).
    fn evaluate(
        &self,
        model: &AutoencoderTraining,
        validation: &Dataset,
        _due: EvalDue,
        step: u64,
        device: &Device,
    ) -> Result<EvalRecord, TrainError> {
        let n = self.config.train.eval_images.min(validation.len());
        let indices: Vec<usize> = (0..n).collect();
        let (mut psnr_sum, mut kl_sum, mut elements) = (0.0, 0.0, 0usize);
        let latent = self.vae.latent_channels;
        let (mut sum, mut sum_sq, mut count) = (vec![0.0; latent], vec![0.0; latent], 0usize);
        for chunk in indices.chunks(self.config.train.batch_size.max(1)) {
            let x = validation.batch(chunk, device)?;
            let posterior = model.vae.encode(x.clone());
            let mean = posterior.mode();
            let [b, c, h, w] = mean.dims();
            let reconstructed = model.vae.decode(mean.clone());
            for k in 0..b {
                let one = |t: &Tensor<4>| t.clone().narrow(0, k, 1);
                psnr_sum += psnr(one(&x), one(&reconstructed), None);
            }
            kl_sum += posterior.kl().sum().into_scalar::<f64>();
            elements += c * h * w * b;
            let values: Vec<f32> = mean
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .map_err(|e| TrainError::Eval {
                    message: format!("cannot read the latents back: {e:?}"),
                })?;
            for (i, v) in values.iter().enumerate() {
                let channel = (i / (h * w)) % c;
                sum[channel] += f64::from(*v);
                sum_sq[channel] += f64::from(*v) * f64::from(*v);
            }
            count += b * h * w;
        }
        let count = count.max(1) as f64;
        let latent_mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let latent_std = sum_sq
            .iter()
            .zip(&latent_mean)
            .map(|(s, m)| (s / count - m * m).max(0.0).sqrt())
            .collect();
        Ok(EvalRecord {
            step,
            band_mse: None,
            nll: None,
            distance: None,
            reconstruction: Some(ReconstructionScores {
                psnr: psnr_sum / n.max(1) as f64,
                kl_per_element: kl_sum / elements.max(1) as f64,
                latent_mean,
                latent_std,
                images: n,
            }),
        })
    }
}
