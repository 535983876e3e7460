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
