//! The diffusion process maths of oxidiff, independent of any network: noise schedules, the
//! forward process and its posterior, the ε / x₀ / v parameterisations, the training loss and
//! samplers that call a network through the [`Denoiser`] trait.
//!
//! Every item has one path: the samplers and what they are built from live in [`sample`], all
//! else at the crate root.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use oxidiff_diffusion::{
//!     DiffusionConfig, GaussianDiffusion, randn, sample_timesteps, training_noise,
//! };
//! use rand::SeedableRng;
//!
//! let diffusion = GaussianDiffusion::new(DiffusionConfig::default())?;
//! let device = Device::flex();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let x_start = randn(&mut rng, [4, 3, 8, 8], &device).clamp(-1.0, 1.0);
//! let eps = training_noise(&mut rng, [4, 3, 8, 8], 0.0, &device);
//! let t = sample_timesteps(&mut rng, 4, diffusion.num_timesteps());
//! let x_t = diffusion.q_sample(x_start.clone(), &t, eps.clone());
//! # let model_output = x_t.clone();
//! let loss = diffusion.training_loss(model_output, x_start, eps, &t);
//! # Ok::<(), oxidiff_diffusion::DiffusionError>(())
//! ```

mod config;
mod denoiser;
mod error;
mod guidance;
mod likelihood;
mod loss;
mod names;
mod noise;
mod process;
mod respace;
pub mod sample;
mod schedule;
mod timesteps;

pub use config::{
    BetaSchedule, DdpmVariance, DiffusionConfig, LossKind, Prediction, TimestepSpacing,
    VarianceType,
};
pub use denoiser::Denoiser;
pub use error::DiffusionError;
pub use guidance::{ClassifierFreeGuidance, ConditionalDenoiser, ContextDenoiser, PromptGuidance};
pub use likelihood::{
    BitsPerDim, ReverseStep, bound_timesteps, discretized_gaussian_log_likelihood, normal_kl,
    standard_normal_cdf,
};
pub use loss::TrainingLoss;
pub use names::{UnknownName, expected_names};
pub use noise::{randn, sample_timesteps, training_noise};
pub use process::{GaussianDiffusion, extract};
pub use respace::respace_timesteps;
pub use schedule::NoiseSchedule;
pub use timesteps::{HISTORY_PER_T, LossHistory, TimestepDraw, TimestepSampling, draw_timesteps};
