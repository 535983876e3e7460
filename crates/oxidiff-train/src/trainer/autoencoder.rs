//! The KL autoencoder as a [`TrainTask`] (`task = "autoencoder"`): latent-diffusion's
//! objective less the perceptual term (LPIPS needs ImageNet VGG weights that cannot be had
//! offline) — a reconstruction term scaled by a learned log-variance, a small KL to the
//! standard normal, and from `autoencoder.disc_start` on a PatchGAN discriminator's hinge loss
//! with the adaptive weight ‖∇L_rec‖/‖∇L_G‖ at the decoder's last layer (Rombach et al. 2022,
//! §3 and appendix G; `LPIPSWithDiscriminator`). Its grids show held-out images above their
//! reconstructions; its evaluations are reconstruction PSNR and SSIM, KL per latent element and
//! the latents' channel statistics.
//!
//! The discriminator is part of the trained module and shares its optimiser: every optimiser
//! here updates each parameter from its own gradient and moments, and the gradients of the two
//! networks are clipped by their own norms, so one optimiser over both steps each as
//! latent-diffusion's two optimisers with the same settings would. The
//! discriminator sees the reconstruction detached, and the generator's adversarial term goes
//! through a copy of the discriminator without gradients, so one backward pass gives each
//! network the gradient of its own loss.

use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_data::{ChannelStats, Dataset};
use oxidiff_diffusion::randn;
use oxidiff_models::cpu::conv2d;
use oxidiff_models::vae::{AutoencoderKL, AutoencoderKLConfig, NLayerDiscriminator};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::task::{EvalDue, MicroBatch, TrainTask};
use crate::autoencoder_config::{AutoencoderSection, ReconstructionLoss};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::eval::{EvalRecord, reconstruction_scores};
use crate::generate::save_image_grid;
use crate::memory::{F32, MemoryEstimate, MemoryPart};
use crate::optim::clip_grad_norm;

/// Images a reconstruction grid shows (above their reconstructions).
const GRID_IMAGES: usize = 8;

/// What the optimiser updates: the autoencoder, the log-variance of its reconstruction term
/// (latent-diffusion's `logvar`, one scalar), and the discriminator when there is one.
#[derive(Module, Debug)]
pub struct AutoencoderTraining {
    pub vae: AutoencoderKL,
    /// `[1]`
    pub logvar: Param<Tensor<1>>,
    pub discriminator: Option<NLayerDiscriminator>,
}

impl AutoencoderTraining {
    /// The autoencoder and its log-variance alone (sharing their parameters), to walk them
    /// apart from the discriminator.
    pub fn without_discriminator(&self) -> Self {
        Self {
            vae: self.vae.clone(),
            logvar: self.logvar.clone(),
            discriminator: None,
        }
    }
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

/// The hinge loss of a discriminator: ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂))).
///
/// # Shapes
/// - `real`, `fake`: logits `[B, 1, s, s]`; returns `[1]`
fn hinge_d_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    let real = real.neg().add_scalar(1.0).clamp_min(0.0).mean();
    let fake = fake.add_scalar(1.0).clamp_min(0.0).mean();
    (real + fake) * 0.5
}

impl AutoencoderTask {
    /// The reconstruction term scaled by the learned log-variance: Σ rec·e^(−logvar) +
    /// N·logvar, per image.
    fn reconstruction_nll(
        &self,
        model: &AutoencoderTraining,
        images: Tensor<4>,
        reconstructed: Tensor<4>,
    ) -> Tensor<1> {
        let [batch, _, _, _] = images.dims();
        let diff = images - reconstructed;
        let rec = match self.section.reconstruction {
            ReconstructionLoss::L1 => diff.abs(),
            ReconstructionLoss::L2 => diff.square(),
        };
        let logvar = model.logvar.val();
        let count = rec.dims().iter().product::<usize>() as f64;
        (rec.sum() * (-logvar.clone()).exp() + logvar * count) / batch as f64
    }

    /// latent-diffusion's `calculate_adaptive_weight`: ‖∇_W L_rec‖ / (‖∇_W L_G‖ + 10⁻⁴) at the
    /// decoder's last convolution W, clamped to [0, 10⁴], times `disc_weight`. Both gradients
    /// are taken in graphs of their own from the last layer's (detached) input, which gives
    /// W the same gradients as the full graph would.
    fn adaptive_weight(
        &self,
        model: &AutoencoderTraining,
        frozen: &NLayerDiscriminator,
        images: Tensor<4>,
        features: Tensor<4>,
    ) -> f64 {
        let conv_out = &model.vae.decoder.conv_out;
        let features = features.detach();
        let norm = |loss: Tensor<1>| -> f64 {
            let grads = GradientsParams::from_grads(loss.backward(), conv_out);
            grads
                .get::<4>(conv_out.weight.id)
                .map(|g| g.square().sum().sqrt().into_scalar::<f64>())
                .unwrap_or(0.0)
        };
        let rec = norm(self.reconstruction_nll(model, images, conv2d(conv_out, features.clone())));
        let adversarial = norm(frozen.forward(conv2d(conv_out, features)).mean().neg());
        (rec / (adversarial + 1e-4)).clamp(0.0, 1e4) * self.section.disc_weight
    }
}

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
        if config.autoencoder.disc_start.is_some() {
            let d = config.autoencoder.discriminator();
            let size = config.autoencoder.image_size as f64;
            let width = |n: usize| (d.channels * (1usize << n).min(8)) as f64;
            // Weights with gradients, moments, EMA and rollback; per image the activations
            // of each layer (real and reconstructed images, kept for backward).
            let parameters: f64 = (0..=d.n_layers)
                .map(|n| {
                    let input = if n == 0 {
                        d.in_channels as f64
                    } else {
                        width(n - 1)
                    };
                    16.0 * input * width(n)
                })
                .sum();
            let activations: f64 = (0..=d.n_layers)
                .map(|n| width(n) * (size / f64::from(1u32 << (n + 1).min(d.n_layers))).powi(2))
                .sum();
            estimate.add(MemoryPart {
                what: "the discriminator",
                key: format!(
                    "autoencoder.disc_channels = {}, autoencoder.disc_layers = {}",
                    d.channels, d.n_layers
                ),
                remedy: "lower autoencoder.disc_channels",
                bytes: (6.0 * parameters + 4.0 * config.train.batch_size as f64 * activations)
                    * F32,
            });
        }
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
            discriminator: self
                .section
                .disc_start
                .map(|_| self.section.discriminator().init(device)),
        }
    }

    fn state(&self, _saved: Option<AutoencoderState>) -> AutoencoderState {
        AutoencoderState {}
    }

    /// Σ (rec / e^logvar + logvar) / B + kl_weight · Σ KL / B, with rec = |x − x̂| or
    /// (x − x̂)² and x̂ decoded from a sample of the posterior; from `disc_start` on, plus the
    /// discriminator's hinge loss and the generator's −mean D(x̂) times the adaptive weight.
    fn loss(
        &self,
        model: &AutoencoderTraining,
        batch: MicroBatch<'_>,
        step: u64,
        _state: &mut AutoencoderState,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError> {
        let images = batch.images;
        let [batch, _, _, _] = images.dims();
        let posterior = model.vae.encode(images.clone());
        let noise = randn(rng, posterior.mean.dims(), &images.device());
        let features = model.vae.decode_features(posterior.sample(noise));
        let reconstructed = conv2d(&model.vae.decoder.conv_out, features.clone());
        let kl = posterior.kl().sum() / batch as f64;
        let loss = self.reconstruction_nll(model, images.clone(), reconstructed.clone())
            + kl * self.section.kl_weight;
        let (Some(discriminator), Some(start)) = (&model.discriminator, self.section.disc_start)
        else {
            return Ok(loss);
        };
        if step < start {
            return Ok(loss);
        }
        let d_loss = hinge_d_loss(
            discriminator.forward(images.clone()),
            discriminator.forward(reconstructed.clone().detach()),
        );
        let frozen = discriminator.clone().no_grad();
        let weight = self.adaptive_weight(model, &frozen, images, features);
        let g_loss = frozen.forward(reconstructed).mean().neg();
        Ok(loss + d_loss + g_loss * weight)
    }

    /// The autoencoder (with its log-variance) and the discriminator each clipped by its own
    /// norm, as latent-diffusion's two optimisers are; returns the norm of both together (what
    /// is logged, and what a divergence check reads).
    fn clip_gradients(
        &self,
        model: &AutoencoderTraining,
        grads: &mut GradientsParams,
        max_norm: f64,
    ) -> f64 {
        let Some(discriminator) = &model.discriminator else {
            return clip_grad_norm(model, grads, max_norm);
        };
        let a = clip_grad_norm(&model.without_discriminator(), grads, max_norm);
        let d = clip_grad_norm(discriminator, grads, max_norm);
        (a * a + d * d).sqrt()
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
        let batch = self.config.train.batch_size;
        let (scores, _) =
            reconstruction_scores(&model.vae, validation, &indices, batch, false, device)?;
        Ok(EvalRecord {
            step,
            band_mse: None,
            nll: None,
            distance: None,
            reconstruction: Some(scores),
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// An autoencoder of 8×8 grayscale images (f = 2, 2 latent channels), `extra` on top.
    fn tiny(extra: &[&str]) -> AutoencoderTask {
        let mut overrides: Vec<String> = [
            "task=\"autoencoder\"",
            "autoencoder.image_size=8",
            "autoencoder.in_channels=1",
            "autoencoder.block_out_channels=[8, 16]",
            "autoencoder.norm_num_groups=4",
            "autoencoder.latent_channels=2",
        ]
        .map(String::from)
        .to_vec();
        overrides.extend(extra.iter().map(|s| s.to_string()));
        AutoencoderTask::new(&RunConfig::default_with(&overrides).unwrap()).unwrap()
    }

    /// Each network's gradients are clipped to the bound by their own norm (one global clip
    /// would scale both by the same factor).
    #[test]
    fn the_autoencoder_and_its_discriminator_are_clipped_by_their_own_norms() {
        use rand::SeedableRng;

        let task = tiny(&[
            "autoencoder.disc_start=0",
            "autoencoder.disc_layers=1",
            "autoencoder.disc_channels=4",
        ]);
        let device = Device::flex().autodiff();
        let model = task.init_model(&device);
        let images = Tensor::<4>::random([4, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let batch = MicroBatch {
            images,
            labels: &[],
            captions: &[],
        };
        let loss = task
            .loss(&model, batch, 0, &mut AutoencoderState {}, &mut rng)
            .unwrap();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let autoencoder = model.without_discriminator();
        let discriminator = model.discriminator.as_ref().unwrap();
        let norms = |grads: &GradientsParams| {
            (
                crate::optim::global_grad_norm(&autoencoder, grads),
                crate::optim::global_grad_norm(discriminator, grads),
            )
        };
        let (a, d) = norms(&grads);
        assert!(a > 0.0 && d > 0.0 && (a / d - 1.0).abs() > 0.1, "{a} {d}");
        let bound = a.min(d) / 2.0;
        let total = task.clip_gradients(&model, &mut grads, bound);
        assert!((total - (a * a + d * d).sqrt()).abs() < 1e-6 * total);
        let (a, d) = norms(&grads);
        assert!(
            (a / bound - 1.0).abs() < 1e-4 && (d / bound - 1.0).abs() < 1e-4,
            "{a} {d} {bound}"
        );
    }

    /// The gradient at the decoder's last layer from the detached side graph is the one the
    /// full graph gives, so the adaptive weight measures what it should.
    #[test]
    fn the_last_layer_gradient_of_the_side_graph_is_the_full_graphs() {
        let task = tiny(&[]);
        let device = Device::flex().autodiff();
        let model = task.init_model(&device);
        let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let z = model.vae.encode(images.clone()).mode();
        let conv_out = &model.vae.decoder.conv_out;
        let grad = |loss: Tensor<1>| {
            GradientsParams::from_grads(loss.backward(), conv_out)
                .get::<4>(conv_out.weight.id)
                .unwrap()
        };
        let full =
            grad(task.reconstruction_nll(&model, images.clone(), model.vae.decode(z.clone())));
        let features = model.vae.decode_features(z).detach();
        let side = grad(task.reconstruction_nll(&model, images, conv2d(conv_out, features)));
        let diff = (full.clone() - side).abs().max().into_scalar::<f32>();
        let scale = full.abs().max().into_scalar::<f32>();
        assert!(scale > 0.0 && diff <= 1e-5 * scale, "{diff} of {scale}");
    }
}
