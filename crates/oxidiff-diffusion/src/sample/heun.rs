//! Heun sampling of the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 2): an
//! Euler step corrected by the trapezoidal rule, two network evaluations per step (one on the
//! last step, which goes to σ = 0), with optional churn and Karras sigmas. The step maths is
//! diffusers' `HeunDiscreteScheduler`, which splits each step into two `step` calls.

use burn::tensor::Tensor;
use rand::Rng;

use super::euler::{KarrasOptions, denoise_sigma_space, ode_derivative, over_sigmas};
use crate::{Denoiser, DiffusionError, GaussianDiffusion};

/// The second half of a Heun step: given the Euler prediction `x_next` at `sigma_next`, the raw
/// model output evaluated there, and the step's start `x_sigma` at σ (σ̂ with churn) with its
/// derivative d (see [`crate::sample::ode_derivative`]), returns
/// x_{i+1} = x̂ + (σ_{i+1} − σ̂)(d + d′)/2, diffusers' `HeunDiscreteScheduler.step` in its
/// second-order state. With `sigma_next = 0` there is no correction (Algorithm 2, line 9) and
/// `x_next` is returned. x̂₀ is clamped to [−1, 1] when `config.clip_sample`.
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_sigma`, `x_next`, `derivative`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn heun_correction(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    x_sigma: Tensor<4>,
    x_next: Tensor<4>,
    derivative: Tensor<4>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<4> {
    if sigma_next == 0.0 {
        return x_next;
    }
    // Karras et al. 2022, Algorithm 2 line 10: d′_i = (x_{i+1} − D_θ(x_{i+1}; t_{i+1}))/t_{i+1}
    let derivative_next = ode_derivative(diffusion, model_output, x_next, sigma_next);
    // Karras et al. 2022, Algorithm 2 line 11: x_{i+1} = x̂_i + (t_{i+1} − t̂_i)(½ d_i + ½ d′_i)
    x_sigma + (derivative + derivative_next).mul_scalar((0.5 * (sigma_next - sigma)) as f32)
}

/// Heun sampling over `num_steps` noise levels (Karras et al. 2022, Algorithm 2), from `x_t` to
/// x₀: 2·num_steps − 1 network evaluations, the last step being a plain Euler step to σ = 0.
///
/// `x_t` is the VP-space starting noise x_T ~ N(0, I), scaled to σ-space as
/// x_{σ_0} = x_T √(σ_0² + 1) (see [`super::sample_euler`] for how diffusers differs). With
/// churn (`options.s_churn > 0`, which diffusers' Heun scheduler does not offer) each eligible
/// step draws its noise from `rng` through [`crate::noise::randn`]. The result is in x₀ space.
/// `progress(i, num_steps)` is called after step i = 1..=num_steps.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is out of range for the schedule (1..=T
/// for the respaced sigmas, at least 1 for Karras sigmas) or an option is invalid.
pub fn sample_heun(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    options: &KarrasOptions,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    over_sigmas(
        denoiser,
        diffusion,
        x_t,
        num_steps,
        options,
        rng,
        |model_output, x_hat, sigma_hat, i, schedule| {
            let sigma_next = schedule.sigmas[i + 1];
            if sigma_next == 0.0 {
                return super::euler_step(diffusion, model_output, x_hat, sigma_hat, sigma_next);
            }
            let derivative = ode_derivative(diffusion, model_output, x_hat.clone(), sigma_hat);
            // Karras et al. 2022, Algorithm 2 line 8: x_{i+1} = x̂_i + (t_{i+1} − t̂_i) d_i
            let x_next = x_hat.clone()
                + derivative
                    .clone()
                    .mul_scalar((sigma_next - sigma_hat) as f32);
            let model_output = denoise_sigma_space(
                denoiser,
                x_next.clone(),
                sigma_next,
                schedule.timesteps[i + 1],
            );
            heun_correction(
                diffusion,
                model_output,
                x_hat,
                x_next,
                derivative,
                sigma_hat,
                sigma_next,
            )
        },
        progress,
    )
}

/// The data's standard deviation σ_data that Karras et al. (2022, §5) assume for images in
/// [−1, 1]; below it, what is left of x_σ is mostly image rather than noise.
const SIGMA_DATA: f64 = 0.5;

/// How far one Heun step of this schedule can throw a sample off, at the worst step (without
/// churn): the largest (σ_i − σ_{i+1}) / (2 max(σ_{i+1}, σ_data)) over the steps that take a
/// correction (the last step, to σ = 0, takes none).
///
/// Why this number: the slope d = (x − D(x; σ))/σ is the network's noise estimate ε̂, and the
/// trapezoidal correction moves x by (σ_{i+1} − σ_i)(d + d′)/2, so a disagreement Δε̂ between the
/// two evaluations puts an error of (σ_i − σ_{i+1})/2 · Δε̂ into x at σ_{i+1}. Δε̂ is of order 1
/// for any network; the error matters against the noise level σ_{i+1} while that dominates x,
/// and against the image's own scale σ_data below it.
///
/// Far above 1 the samples are ruined: the first of 25 `trailing` steps of a cosine schedule
/// goes from σ ≈ 2·10⁴ (β capped at 0.999) to σ ≈ 16, a gain of about 630; 5 Karras steps
/// (ρ = 7) reach 16. Measured in docs/samplers.md: gains up to 5.7 cost nothing, 31 (500
/// `trailing` steps) made the samples clearly worse, 16 (5 steps) and 316 and more ruined them.
///
/// # Errors
///
/// As [`sample_heun`], for an invalid `num_steps` or option.
pub fn heun_error_gain(
    diffusion: &GaussianDiffusion,
    num_steps: usize,
    options: &KarrasOptions,
) -> Result<f64, DiffusionError> {
    options.validate()?;
    let schedule = options.schedule(diffusion, num_steps)?;
    Ok(schedule
        .sigmas
        .windows(2)
        .filter(|w| w[1] > 0.0)
        .map(|w| (w[0] - w[1]) / (2.0 * w[1].max(SIGMA_DATA)))
        .fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BetaSchedule, DiffusionConfig, TimestepSpacing};

    fn cosine(spacing: TimestepSpacing) -> GaussianDiffusion {
        GaussianDiffusion::new(DiffusionConfig {
            beta_schedule: BetaSchedule::Cosine,
            timestep_spacing: spacing,
            ..Default::default()
        })
        .unwrap()
    }

    /// The numbers docs/samplers.md sets beside its Heun measurements.
    #[test]
    fn error_gain_of_the_measured_schedules() {
        let plain = KarrasOptions::default();
        let karras = KarrasOptions {
            karras_sigmas: true,
            ..plain
        };
        let trailing = cosine(TimestepSpacing::Trailing);
        let gain =
            |d: &GaussianDiffusion, steps, options| heun_error_gain(d, steps, options).unwrap();
        // σ_999 ≈ 20291 to σ_959 ≈ 16.02: (20291 − 16.02)/(2 · 16.02) ≈ 633
        assert!((600.0..660.0).contains(&gain(&trailing, 25, &plain)));
        // 5 Karras steps (ρ = 7): σ ≈ 345.9 → 10.32 gives (345.9 − 10.32)/(2 · 10.32) ≈ 16.3
        assert!((16.0..16.5).contains(&gain(&trailing, 5, &karras)));
        // 10 Karras steps: worst is 6.10 → 0.444, (6.10 − 0.444)/(2 · 0.5) ≈ 5.65
        assert!((5.5..5.8).contains(&gain(&trailing, 10, &karras)));
        // 25 Karras steps stay below 1
        assert!(gain(&trailing, 25, &karras) < 1.0);
        // 5 leading steps start at t = 800 (σ ≈ 3.2): small steps throughout
        assert!(gain(&cosine(TimestepSpacing::Leading), 5, &plain) < 1.0);
        // A single step goes straight to σ = 0, with no correction.
        assert_eq!(gain(&trailing, 1, &plain), 0.0);
        assert!(heun_error_gain(&trailing, 0, &plain).is_err());
    }
}
