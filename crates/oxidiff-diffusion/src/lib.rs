//! The diffusion process maths of oxidiff, independent of any network: noise schedules, the
//! forward process and its posterior, the ε / x₀ / v parameterisations, the training loss and
//! samplers that call a network through the [`Denoiser`] trait.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use oxidiff_diffusion::{DiffusionConfig, GaussianDiffusion, noise};
//! use rand::SeedableRng;
//!
//! let diffusion = GaussianDiffusion::new(DiffusionConfig::default())?;
//! let device = Device::flex();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let x_start = noise::randn(&mut rng, [4, 3, 8, 8], &device).clamp(-1.0, 1.0);
//! let eps = noise::training_noise(&mut rng, [4, 3, 8, 8], 0.0, &device);
//! let t = noise::sample_timesteps(&mut rng, 4, diffusion.num_timesteps());
//! let x_t = diffusion.q_sample(x_start.clone(), &t, eps.clone());
//! # let model_output = x_t.clone();
//! let loss = diffusion.training_loss(model_output, x_start, eps, &t);
//! # Ok::<(), oxidiff_diffusion::DiffusionError>(())
//! ```

pub mod config;
pub mod denoiser;
mod error;
pub mod guidance;
pub mod likelihood;
pub mod loss;
pub mod noise;
pub mod process;
pub mod respace;
pub mod sample;
pub mod schedule;
pub mod timesteps;

pub use config::{
    BetaSchedule, DdpmVariance, DiffusionConfig, LossKind, Prediction, TimestepSpacing,
    VarianceType,
};
pub use denoiser::Denoiser;
pub use error::DiffusionError;
pub use process::GaussianDiffusion;
pub use respace::respace_timesteps;
pub use sample::{
    DpmSolverAlgorithm, DpmSolverOptions, KarrasOptions, RePaintOptions, denoise_known_sigma,
    inpaint_ddim, repaint, sample_ddim, sample_ddpm, sample_dpm_solver, sample_euler, sample_heun,
    sdedit,
};
pub use schedule::NoiseSchedule;
