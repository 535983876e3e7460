//! The autoencoder's benchmark behind `oxidiff bench --autoencoder`: the same measurement as
//! its PyTorch peer (`bench/peer/torch_vae.py`, diffusers' `AutoencoderKL` built from the same
//! config) so that the two can be put side by side.
//!
//! Timed, each as the median over `iters` repetitions after `warmup` untimed ones:
//! - the training step (unless skipped): encode, a posterior sample, decode, the loss
//!   Σ|x − x̂|/B + 10⁻⁶·ΣKL/B, backward, one AdamW step (lr 1e-4, β = (0.9, 0.999), ε = 1e-8);
//! - encoding (the posterior's mean) and decoding, without autodiff.
//!
//! Inputs are drawn before the clock starts; results are read back inside the timed region.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use oxidiff_models::vae::AutoencoderKLConfig;
use serde::Serialize;

use crate::TrainError;
use crate::autoencoder_config::{AutoencoderPreset, AutoencoderSection};
use crate::bench::{cpu_threads, peak_rss_bytes, peer_adamw, time_median};

/// What to measure.
#[derive(Debug, Clone)]
pub struct AutoencoderBenchConfig {
    pub preset: AutoencoderPreset,
    pub image_size: usize,
    pub channels: usize,
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Time the training step (SD's autoencoder at 256×256 is measured for encoding and
    /// decoding only).
    pub train: bool,
    pub seed: u64,
}

/// One autoencoder benchmark result; keys match the peer's where they mean the same thing.
#[derive(Debug, Clone, Serialize)]
pub struct AutoencoderBenchReport {
    pub preset: String,
    /// The architecture, as diffusers' `config.json` names it (what the peer builds).
    pub config: AutoencoderKLConfig,
    pub parameters: usize,
    pub batch: usize,
    pub image_size: usize,
    pub channels: usize,
    pub iters: usize,
    pub warmup: usize,
    pub train_step_ms: Option<f64>,
    pub train_images_per_s: Option<f64>,
    pub encode_ms: f64,
    pub decode_ms: f64,
    /// Peak resident set size of this process (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    pub threads: usize,
    pub device: String,
}

impl AutoencoderBenchConfig {
    /// The architecture the preset builds for `channels`-channel images of `image_size`.
    pub fn architecture(&self) -> Result<AutoencoderKLConfig, TrainError> {
        AutoencoderSection {
            preset: self.preset,
            image_size: self.image_size,
            in_channels: self.channels,
            ..Default::default()
        }
        .resolve()
        .map_err(|message| TrainError::Config {
            origin: "oxidiff bench --autoencoder".into(),
            message,
        })
    }
}

fn uniform(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
}

/// Runs the benchmark on `device` (a non-autodiff device; autodiff is added for training).
pub fn run_autoencoder_bench(
    config: &AutoencoderBenchConfig,
    device: &Device,
) -> Result<AutoencoderBenchReport, TrainError> {
    let architecture = config.architecture()?;
    let (batch, size) = (config.batch, config.image_size);
    let f = architecture.downsampling_factor();
    let shape = [batch, config.channels, size, size];
    let latent_shape = [batch, architecture.latent_channels, size / f, size / f];
    let ad_device = device.clone().autodiff();
    ad_device.seed(config.seed);
    let mut vae = architecture.init(&ad_device);
    let parameters = vae.num_params();

    let (train_step_ms, train_images_per_s) = if config.train {
        let mut optimizer = peer_adamw();
        let reps = config.warmup + config.iters;
        let mut inputs = (0..reps)
            .map(|_| {
                (
                    uniform(shape, &ad_device),
                    Tensor::random(latent_shape, Distribution::Normal(0.0, 1.0), &ad_device),
                )
            })
            .collect::<Vec<_>>()
            .into_iter();
        let ms = time_median(config.warmup, config.iters, || {
            let (x, noise) = inputs.next().expect("one input per repetition");
            let posterior = vae.encode(x.clone());
            let kl = posterior.kl().sum() / batch as f64;
            let reconstructed = vae.decode(posterior.sample(noise));
            let loss = (x - reconstructed).abs().sum() / batch as f64 + kl * 1e-6;
            let grads = GradientsParams::from_grads(loss.backward(), &vae);
            vae = optimizer.step(1e-4, vae.clone(), grads);
            let _ = vae.quant_conv.weight.val().into_data();
        });
        (Some(ms), Some(batch as f64 / (ms * 1e-3)))
    } else {
        (None, None)
    };

    let inference = vae.valid();
    let x = uniform(shape, device);
    let z = Tensor::random(latent_shape, Distribution::Normal(0.0, 1.0), device);
    let encode_ms = time_median(config.warmup, config.iters, || {
        let _ = inference.encode(x.clone()).mode().into_data();
    });
    let decode_ms = time_median(config.warmup, config.iters, || {
        let _ = inference.decode(z.clone()).into_data();
    });
    Ok(AutoencoderBenchReport {
        preset: config.preset.to_string(),
        config: architecture,
        parameters,
        batch,
        image_size: size,
        channels: config.channels,
        iters: config.iters,
        warmup: config.warmup,
        train_step_ms,
        train_images_per_s,
        encode_ms,
        decode_ms,
        peak_rss_bytes: peak_rss_bytes(),
        threads: cpu_threads(),
        device: format!("{device:?}"),
    })
}
