//! Heun sampling of the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 2): an
//! Euler step corrected by the trapezoidal rule, two network evaluations per step (one on the
//! last step, which goes to σ = 0), with optional churn and Karras sigmas. The step maths is
//! diffusers' `HeunDiscreteScheduler`, which splits each step into two `step` calls.

use burn::tensor::Tensor;
use rand::Rng;

use super::euler::{
    KarrasOptions, churn_from_options, denoise_sigma_space, ode_derivative, start_in_sigma_space,
};
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
/// x_{σ_0} = x_T √(σ_0² + 1) (see [`crate::sample_euler`] for how diffusers differs). With
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
    let (schedule, train, mut x) = start_in_sigma_space(diffusion, x_t, num_steps, options)?;
    for i in 0..num_steps {
        let (x_hat, sigma_hat, t_hat) = churn_from_options(options, &schedule, &train, i, x, rng);
        let sigma_next = schedule.sigmas[i + 1];
        let model_output = denoise_sigma_space(denoiser, x_hat.clone(), sigma_hat, t_hat);
        x = if sigma_next == 0.0 {
            super::euler_step(diffusion, model_output, x_hat, sigma_hat, sigma_next)
        } else {
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
        };
        progress(i + 1, num_steps);
    }
    Ok(x)
}

/// The largest factor by which one Heun step of this schedule multiplies a disagreement δ
/// between the denoiser's two estimates of x₀ in the step (without churn). The correction moves
/// x by (σ_{i+1} − σ_i)(d + d′)/2 and d′ = (x′ − D′)/σ_{i+1} carries δ as δ/σ_{i+1}, so x
/// receives (σ_i − σ_{i+1})/(2σ_{i+1}) · δ; the last step, to σ = 0, has no correction.
///
/// Far above 1 Heun's method is unstable: the first of 25 `trailing` steps of a cosine schedule
/// goes from σ ≈ 2·10⁴ (β capped at 0.999) to σ ≈ 16, a gain of about 630, and the samples are
/// ruined from that step on; 25 Karras σs (ρ = 7) keep it at 2.8, and those samples are the best
/// of any deterministic sampler in docs/samplers.md, which lists the gain beside each result.
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
        .map(|w| (w[0] - w[1]) / (2.0 * w[1]))
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

    /// The numbers docs/samplers.md explains Heun's failures with.
    #[test]
    fn error_gain_of_the_measured_schedules() {
        let plain = KarrasOptions::default();
        let karras = KarrasOptions {
            karras_sigmas: true,
            ..plain
        };
        let trailing = cosine(TimestepSpacing::Trailing);
        // σ_999 ≈ 20291 to σ_959 ≈ 16.02: (20291 − 16.02)/(2 · 16.02) ≈ 633
        let gain = heun_error_gain(&trailing, 25, &plain).unwrap();
        assert!((600.0..660.0).contains(&gain), "{gain}");
        // Karras σs, ρ = 7: σ₁/σ₀ ≈ 0.77 for 25 steps; the largest gain is the last
        // correction's, towards σ_min: 2.84
        let gain = heun_error_gain(&trailing, 25, &karras).unwrap();
        assert!((2.7..3.0).contains(&gain), "{gain}");
        // 5 Karras steps: the last correction goes from σ ≈ 10.3 to σ_min ≈ 0.0064: ≈ 802
        let gain = heun_error_gain(&trailing, 5, &karras).unwrap();
        assert!((780.0..820.0).contains(&gain), "{gain}");
        // A single step goes straight to σ = 0, with no correction.
        assert_eq!(heun_error_gain(&trailing, 1, &plain).unwrap(), 0.0);
        assert!(heun_error_gain(&trailing, 0, &plain).is_err());
    }
}
