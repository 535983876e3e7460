//! Ancestral sampling (Ho et al. 2020, Algorithm 2).

use burn::tensor::Tensor;
use rand::Rng;

use super::timestep_tensor;
use crate::{Denoiser, GaussianDiffusion, noise::randn};

/// One ancestral step x_t → x_{t−1}: recover x̂₀ from the model output, clamp it to [−1, 1] when
/// `config.clip_sample`, take the posterior mean μ̃_t(x_t, x̂₀) and add σ_t · `noise` with σ²_t
/// per `config.ddpm_variance`, or the network's own σ²_θ with a learned variance. No noise is added at t = 0, nor when `noise` is `None` (which
/// gives the mean, handy for tests).
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_t`, `noise`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Panics
///
/// If `t >= T`.
pub fn ddpm_step(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    t: usize,
    x_t: Tensor<4>,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let ts = vec![t; x_t.dims()[0]];
    let (mean_part, v) = diffusion.split_output(model_output);
    let learned = v.is_some();
    let step = diffusion.reverse_step(mean_part, v, x_t, &ts, diffusion.config.clip_sample);
    match noise {
        Some(noise) if t > 0 && learned => {
            // Nichol & Dhariwal 2021, eq. 15: σ_θ = exp(½ log Σ_θ), per pixel
            step.mean + noise * step.log_variance.mul_scalar(0.5).exp()
        }
        Some(noise) if t > 0 => {
            let variance = diffusion
                .schedule
                .ddpm_variance(diffusion.config.ddpm_variance, t);
            // Ho et al. 2020, Algorithm 2: x_{t−1} = μ_θ(x_t, t) + σ_t z
            step.mean + noise.mul_scalar(variance.sqrt() as f32)
        }
        _ => step.mean,
    }
}

/// Ancestral sampling over all T training steps, from t = T − 1 down to 0, starting at `x_t`
/// (normally standard normal noise). Fresh noise for each step with t > 0 comes from `rng`
/// through [`randn`]. `progress(i, T)` is called after step i = 1..=T.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn sample_ddpm(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let total = diffusion.num_timesteps();
    let dims = x_t.dims();
    let device = x_t.device();
    let mut x = x_t;
    for (i, t) in (0..total).rev().enumerate() {
        let model_output = denoiser.denoise(x.clone(), timestep_tensor(t, dims[0], &device));
        let noise = (t > 0).then(|| randn(rng, dims, &device));
        x = ddpm_step(diffusion, model_output, t, x, noise);
        progress(i + 1, total);
    }
    x
}
