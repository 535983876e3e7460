//! Ancestral sampling (Ho et al. 2020, Algorithm 2), over every training timestep or a respaced
//! subset of them (Nichol & Dhariwal 2021, §4).

use burn::tensor::{Tensor, TensorData};
use rand::Rng;

use super::over_timesteps;
use crate::likelihood::learned_log_variance;
use crate::{Denoiser, DiffusionError, GaussianDiffusion, NoiseSchedule, noise::randn};

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

/// The coefficients of one ancestral step between two visited timesteps of a respaced
/// schedule. Respacing (Nichol & Dhariwal 2021, §4) treats the visited timesteps τ₁ < … < τ_n
/// as a Markov chain of their own with β'_k = 1 − ᾱ_{τ_k}/ᾱ_{τ_{k−1}} (ᾱ = 1 before τ₁): the
/// same marginals q(x_{τ_k} | x₀), so the step τ_k → τ_{k−1} is Ho et al.'s posterior step with
/// β' in place of β, ᾱ_{τ_{k−1}} in place of ᾱ_{t−1}.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RespacedStep {
    /// ᾱ at the step's timestep.
    alpha_cumprod: f64,
    /// ᾱ at the timestep it steps to; 1 for the clean end.
    alpha_cumprod_prev: f64,
    /// β' of the respaced chain.
    beta: f64,
}

impl RespacedStep {
    /// The step from training timestep `t` to `prev_t` (`None`: the clean image).
    fn new(schedule: &NoiseSchedule, t: usize, prev_t: Option<usize>) -> Self {
        let alpha_cumprod = schedule.alphas_cumprod[t];
        let alpha_cumprod_prev = prev_t.map_or(1.0, |p| schedule.alphas_cumprod[p]);
        // Nichol & Dhariwal 2021, §4: β_{S_t} = 1 − ᾱ_{S_t}/ᾱ_{S_{t−1}}
        let beta = 1.0 - alpha_cumprod / alpha_cumprod_prev;
        Self {
            alpha_cumprod,
            alpha_cumprod_prev,
            beta,
        }
    }

    /// β̃' = β' (1 − ᾱ_prev)/(1 − ᾱ), the variance of the respaced posterior; 0 at the clean end.
    fn posterior_variance(&self) -> f64 {
        // Nichol & Dhariwal 2021, §4: β̃_{S_t} = (1 − ᾱ_{S_{t−1}})/(1 − ᾱ_{S_t}) β_{S_t}
        self.beta * (1.0 - self.alpha_cumprod_prev) / (1.0 - self.alpha_cumprod)
    }

    /// The coefficients (of x̂₀, of x_t) of the respaced posterior mean.
    fn posterior_mean_coefs(&self) -> (f64, f64) {
        let (ac, ac_prev, beta) = (self.alpha_cumprod, self.alpha_cumprod_prev, self.beta);
        // Ho et al. 2020, eq. 7 with β': μ̃ = √ᾱ_prev β'/(1 − ᾱ) x₀ + √(1 − β') (1 − ᾱ_prev)/(1 − ᾱ) x_t
        (
            beta * ac_prev.sqrt() / (1.0 - ac),
            (1.0 - ac_prev) * (1.0 - beta).sqrt() / (1.0 - ac),
        )
    }
}

/// One ancestral step of a respaced chain (β' = 1 − ᾱ_t/ᾱ_prev, Nichol & Dhariwal 2021, §4),
/// from training timestep `t` to `prev_t` (`None`: the clean end, where the mean μ̃ = x̂₀ is
/// returned and no noise added): x̂₀ from the model output (clamped to [−1, 1] when
/// `config.clip_sample`), the posterior mean with β', and `noise` scaled by σ with σ² = β̃'
/// (`fixed-small`), β' (`fixed-large`) or the network's interpolation between the two (learned
/// variance), as improved-diffusion's `SpacedDiffusion` and diffusers' `DDPMScheduler.step`
/// after `set_timesteps`. With the full schedule (`prev_t = t − 1`) this is [`ddpm_step`].
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_t`, `noise`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn respaced_ddpm_step(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    t: usize,
    prev_t: Option<usize>,
    x_t: Tensor<4>,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let step = RespacedStep::new(&diffusion.schedule, t, prev_t);
    let ts = vec![t; x_t.dims()[0]];
    let (mean_part, v) = diffusion.split_output(model_output);
    let (x_start, _) = diffusion.predict_start_and_noise(mean_part, x_t.clone(), &ts);
    let x_start = if diffusion.config.clip_sample {
        x_start.clamp(-1.0, 1.0)
    } else {
        x_start
    };
    let (coef1, coef2) = step.posterior_mean_coefs();
    let mean = x_start.mul_scalar(coef1 as f32) + x_t.mul_scalar(coef2 as f32);
    let noise = match noise {
        Some(noise) if prev_t.is_some() => noise,
        _ => return mean,
    };
    match v {
        Some(v) => {
            let device = v.device();
            let log_of = |variance: f64| {
                let log = vec![variance.ln() as f32];
                Tensor::<4>::from_data(TensorData::new(log, [1, 1, 1, 1]), &device)
            };
            let (min_log, max_log) = (log_of(step.posterior_variance()), log_of(step.beta));
            let log_variance = learned_log_variance(v, min_log, max_log);
            mean + noise * log_variance.mul_scalar(0.5).exp()
        }
        None => {
            let variance = match diffusion.config.ddpm_variance {
                crate::DdpmVariance::FixedSmall => step.posterior_variance(),
                crate::DdpmVariance::FixedLarge => step.beta,
            };
            // Ho et al. 2020, Algorithm 2: x_{t−1} = μ_θ(x_t, t) + σ_t z
            mean + noise.mul_scalar(variance.sqrt() as f32)
        }
    }
}

/// Ancestral sampling over `num_steps` of the training timesteps, respaced per
/// `config.timestep_spacing` ([`GaussianDiffusion::inference_timesteps`]), starting at `x_t`
/// (normally standard normal noise) and ending at x₀. With `num_steps = T` this is Ho et al.'s Algorithm 2 over
/// every timestep; with fewer it is the respaced chain of Nichol & Dhariwal (2021, §4), each
/// step the posterior step between two visited timesteps ([`respaced_ddpm_step`]; diffusers'
/// `DDPMScheduler` after `set_timesteps(num_steps)`). Fresh noise for each step that does not
/// end at x₀ comes from `rng` through [`randn`]. `progress(i, num_steps)` is called after step
/// i = 1..=num_steps.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is 0 or above T.
pub fn sample_ddpm(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let timesteps = diffusion.inference_timesteps(num_steps)?;
    let (dims, device) = (x_t.dims(), x_t.device());
    Ok(over_timesteps(
        denoiser,
        x_t,
        &timesteps,
        |model_output, x, t, prev_t| {
            let noise = prev_t.map(|_| randn(rng, dims, &device));
            respaced_ddpm_step(diffusion, model_output, t, prev_t, x, noise)
        },
        progress,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DdpmVariance, DiffusionConfig, LossKind, VarianceType};
    use burn::tensor::Device;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// On the full schedule (every timestep visited) β' = β, so the respaced step is the
    /// ordinary ancestral step, for every variance option.
    #[test]
    fn respaced_step_on_the_full_schedule_is_ddpm_step() {
        let device = Device::flex();
        let configs = [
            DiffusionConfig {
                num_train_timesteps: 20,
                ..Default::default()
            },
            DiffusionConfig {
                num_train_timesteps: 20,
                ddpm_variance: DdpmVariance::FixedLarge,
                clip_sample: false,
                ..Default::default()
            },
            DiffusionConfig {
                num_train_timesteps: 20,
                variance_type: VarianceType::Learned,
                loss: LossKind::Hybrid,
                ..Default::default()
            },
        ];
        for cfg in configs {
            let diffusion = GaussianDiffusion::new(cfg.clone()).unwrap();
            let channels = diffusion.output_channel_factor();
            let n: Vec<f32> = (0..8).map(|i| (i as f32 * 0.37).sin()).collect();
            let x_t = Tensor::<4>::from_data(TensorData::new(n.clone(), [2, 1, 2, 2]), &device);
            let out: Vec<f32> = (0..8 * channels).map(|i| (i as f32 * 0.71).cos()).collect();
            let out = Tensor::<4>::from_data(TensorData::new(out, [2, channels, 2, 2]), &device);
            let noise = x_t.clone().mul_scalar(-0.5).add_scalar(0.25);
            for t in [0usize, 1, 7, 19] {
                let prev = t.checked_sub(1);
                let ours = values(respaced_ddpm_step(
                    &diffusion,
                    out.clone(),
                    t,
                    prev,
                    x_t.clone(),
                    Some(noise.clone()),
                ));
                let reference = values(ddpm_step(
                    &diffusion,
                    out.clone(),
                    t,
                    x_t.clone(),
                    Some(noise.clone()),
                ));
                for (a, b) in ours.iter().zip(&reference) {
                    assert!((a - b).abs() < 1e-5, "{cfg:?} t={t}: {a} vs {b}");
                }
            }
        }
    }
}
