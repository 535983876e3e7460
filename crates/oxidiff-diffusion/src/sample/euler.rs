//! Euler sampling of the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 2 without
//! the second-order correction), with optional "churn": noise injected before each step
//! (Algorithm 2, lines 4–6), as diffusers' `EulerDiscreteScheduler` and k-diffusion's
//! `sample_euler`.

use burn::tensor::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::sigmas::{
    SigmaSchedule, denoise_at_sigma, discrete_sigmas, fractional_timestep_tensor, karras_sigmas,
    sigma_to_timestep, training_sigmas,
};
use crate::{Denoiser, DiffusionError, GaussianDiffusion, noise::randn};

/// Options of the Karras-style samplers (Euler and Heun): the σ schedule and the stochastic
/// "churn" of Karras et al. 2022, Algorithm 2. `Default` is diffusers' defaults: the respaced
/// training sigmas and no churn (a deterministic ODE solver).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KarrasOptions {
    /// Step through the Karras sigmas ([`karras_sigmas`], ρ = 7) instead of the training sigmas
    /// at the respaced timesteps ([`discrete_sigmas`]).
    pub karras_sigmas: bool,
    /// S_churn: total amount of noise injected over the run; each eligible step raises σ by the
    /// factor 1 + γ with γ = min(S_churn/n, √2 − 1). 0 disables churn.
    pub s_churn: f64,
    /// S_tmin: churn only at σ ≥ S_tmin.
    pub s_tmin: f64,
    /// S_tmax: churn only at σ ≤ S_tmax (may be +∞).
    pub s_tmax: f64,
    /// S_noise: standard deviation of the injected noise, slightly above 1 to offset the
    /// denoiser's tendency to remove a little too much noise (Karras et al. 2022, §4).
    pub s_noise: f64,
}

impl Default for KarrasOptions {
    fn default() -> Self {
        Self {
            karras_sigmas: false,
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

impl KarrasOptions {
    /// Checks every value, so that sampling cannot produce NaN from them.
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidArgument`] naming the first offending field.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let non_negative = |name: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(DiffusionError::argument(
                    name,
                    format!("must be a finite number >= 0, got {value}"),
                ))
            }
        };
        non_negative("s_churn", self.s_churn)?;
        non_negative("s_tmin", self.s_tmin)?;
        non_negative("s_noise", self.s_noise)?;
        if self.s_tmax.is_nan() || self.s_tmax < self.s_tmin {
            return Err(DiffusionError::argument(
                "s_tmax",
                format!(
                    "must be at least s_tmin ({}), got {}",
                    self.s_tmin, self.s_tmax
                ),
            ));
        }
        Ok(())
    }

    /// The σ schedule these options select for `num_steps` steps.
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidArgument`] when `num_steps` is out of range for the schedule.
    pub fn schedule(
        &self,
        diffusion: &GaussianDiffusion,
        num_steps: usize,
    ) -> Result<SigmaSchedule, DiffusionError> {
        if self.karras_sigmas {
            karras_sigmas(diffusion, num_steps)
        } else {
            discrete_sigmas(diffusion, num_steps)
        }
    }

    /// γ_i of a step at noise level `sigma` in a run of `num_steps` steps: min(S_churn/n, √2 − 1)
    /// when S_tmin ≤ σ ≤ S_tmax, else 0. The √2 − 1 cap keeps the added noise at most the
    /// noise already there.
    pub fn gamma(&self, sigma: f64, num_steps: usize) -> f64 {
        if self.s_churn > 0.0 && (self.s_tmin..=self.s_tmax).contains(&sigma) {
            // Karras et al. 2022, Algorithm 2 line 4: γ_i = min(S_churn/N, √2 − 1) if t_i ∈ [S_tmin, S_tmax]
            (self.s_churn / num_steps as f64).min(std::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        }
    }
}

/// Raises the noise level of `x_sigma` from σ to σ̂ = (1 + γ) σ by adding fresh noise, and
/// returns (x̂, σ̂). `noise` is standard normal; it is scaled by S_noise √(σ̂² − σ²) here.
///
/// # Shapes
///
/// - `x_sigma`, `noise`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn churn(
    x_sigma: Tensor<4>,
    sigma: f64,
    gamma: f64,
    s_noise: f64,
    noise: Tensor<4>,
) -> (Tensor<4>, f64) {
    // Karras et al. 2022, Algorithm 2 line 5: t̂_i = t_i + γ_i t_i
    let sigma_hat = sigma * (gamma + 1.0);
    // Karras et al. 2022, Algorithm 2 line 6: x̂_i = x_i + √(t̂_i² − t_i²) ε_i, ε_i ~ N(0, S²_noise I)
    let scale = s_noise * (sigma_hat * sigma_hat - sigma * sigma).sqrt();
    (x_sigma + noise.mul_scalar(scale as f32), sigma_hat)
}

/// The probability-flow ODE's derivative dx/dσ = (x − D(x; σ))/σ at `x_sigma`, from a raw
/// model output evaluated there (see [`denoise_at_sigma`]).
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_sigma`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn ode_derivative(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    x_sigma: Tensor<4>,
    sigma: f64,
) -> Tensor<4> {
    let denoised = denoise_at_sigma(diffusion, model_output, x_sigma.clone(), sigma);
    // Karras et al. 2022, Algorithm 2 line 7: d_i = (x̂_i − D_θ(x̂_i; t̂_i))/t̂_i
    (x_sigma - denoised).mul_scalar((1.0 / sigma) as f32)
}

/// One Euler step of the probability-flow ODE from σ to `sigma_next`, given the raw model output
/// at (`x_sigma`, σ): diffusers' `EulerDiscreteScheduler.step` without churn, or with churn when
/// `x_sigma` and σ are the churned x̂ and σ̂ from [`churn`] (on which the model must then have
/// been evaluated). With `sigma_next = 0` this returns D(x; σ) exactly (equal to the Euler
/// formula in exact arithmetic, without its cancellation). x̂₀ is clamped to [−1, 1] when
/// `config.clip_sample`.
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_sigma`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn euler_step(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    x_sigma: Tensor<4>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<4> {
    if sigma_next == 0.0 {
        return denoise_at_sigma(diffusion, model_output, x_sigma, sigma);
    }
    let derivative = ode_derivative(diffusion, model_output, x_sigma.clone(), sigma);
    // Karras et al. 2022, Algorithm 2 line 8: x_{i+1} = x̂_i + (t_{i+1} − t̂_i) d_i
    x_sigma + derivative.mul_scalar((sigma_next - sigma) as f32)
}

/// Evaluates the denoiser at σ-space `x_sigma` and noise level σ (fractional timestep `t`): the
/// network sees x_t = x_σ/√(σ² + 1) (diffusers' `scale_model_input`).
///
/// # Shapes
///
/// - `x_sigma`: `[B, C, H, W]`
/// - returns `[B, C·factor, H, W]`
pub(crate) fn denoise_sigma_space(
    denoiser: &impl Denoiser,
    x_sigma: Tensor<4>,
    sigma: f64,
    t: f64,
) -> Tensor<4> {
    let batch = x_sigma.dims()[0];
    let device = x_sigma.device();
    // Karras et al. 2022, Table 1 (VP): network input s(t) x = x/√(σ² + 1)
    let x_t = x_sigma.mul_scalar((1.0 / (sigma * sigma + 1.0).sqrt()) as f32);
    denoiser.denoise(x_t, fractional_timestep_tensor(t, batch, &device))
}

/// Applies churn to `x` at step `i` of `schedule` when the options ask for it, drawing the
/// noise from `rng`; returns (x̂, σ̂, timestep at σ̂).
///
/// # Shapes
///
/// - `x`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
fn churn_from_options(
    options: &KarrasOptions,
    schedule: &SigmaSchedule,
    train_sigmas: &[f64],
    i: usize,
    x: Tensor<4>,
    rng: &mut impl Rng,
) -> (Tensor<4>, f64, f64) {
    let sigma = schedule.sigmas[i];
    let gamma = options.gamma(sigma, schedule.num_steps());
    if gamma > 0.0 {
        let noise = randn(rng, x.dims(), &x.device());
        let (x_hat, sigma_hat) = churn(x, sigma, gamma, options.s_noise, noise);
        (x_hat, sigma_hat, sigma_to_timestep(train_sigmas, sigma_hat))
    } else {
        (x, sigma, schedule.timesteps[i])
    }
}

/// The start shared by Euler and Heun: the options checked, the σ schedule, the training σs
/// (to map σ to the network's t) and the VP-space noise `x_t` moved to σ-space at σ_max.
///
/// # Shapes
/// - `x_t`: `[B, C, H, W]`; returns it as x_σ, same shape
fn start_in_sigma_space(
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    options: &KarrasOptions,
) -> Result<(SigmaSchedule, Vec<f64>, Tensor<4>), DiffusionError> {
    options.validate()?;
    let schedule = options.schedule(diffusion, num_steps)?;
    let train = training_sigmas(diffusion);
    let sigma_max = schedule.sigmas[0];
    // Karras et al. 2022, Table 1 (VP): x_σ = x_t/s(t) = x_t √(σ² + 1)
    let x = x_t.mul_scalar((sigma_max * sigma_max + 1.0).sqrt() as f32);
    Ok((schedule, train, x))
}

/// The loop of Euler and Heun ([`super::sample_heun`]): from the VP-space noise `x_t` moved to
/// σ-space ([`start_in_sigma_space`]), each step i churns x ([`churn_from_options`]), evaluates
/// the denoiser at (x̂, σ̂) and lets `step(model_output, x̂, σ̂, i, schedule)` take x̂ to
/// σ_{i+1}; `progress(i + 1, num_steps)` is called after it.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`; `step` takes the denoiser's output and x̂, returns `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// As [`sample_euler`], for an invalid `num_steps` or option.
#[allow(clippy::too_many_arguments)]
pub(crate) fn over_sigmas(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    options: &KarrasOptions,
    rng: &mut impl Rng,
    mut step: impl FnMut(Tensor<4>, Tensor<4>, f64, usize, &SigmaSchedule) -> Tensor<4>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let (schedule, train, mut x) = start_in_sigma_space(diffusion, x_t, num_steps, options)?;
    for i in 0..num_steps {
        let (x_hat, sigma_hat, t_hat) = churn_from_options(options, &schedule, &train, i, x, rng);
        let model_output = denoise_sigma_space(denoiser, x_hat.clone(), sigma_hat, t_hat);
        x = step(model_output, x_hat, sigma_hat, i, &schedule);
        progress(i + 1, num_steps);
    }
    Ok(x)
}

/// Euler sampling over `num_steps` noise levels (Karras et al. 2022, Algorithm 2 without the
/// second-order correction), from `x_t` to x₀.
///
/// `x_t` is the VP-space starting noise x_T ~ N(0, I), as for [`super::sample_ddim`]. It is
/// scaled to σ-space as x_{σ_0} = x_T √(σ_0² + 1), so that the first network input is exactly
/// x_T. (diffusers scales by its `init_noise_sigma`: the same √(σ_0² + 1) with `leading`
/// spacing, σ_0 alone with `linspace` and `trailing`.) Each step with γ > 0 draws its churn
/// noise from `rng` through [`randn`] and evaluates the network at the churned x̂ and σ̂, as
/// Algorithm 2 does (diffusers' step evaluates the model before churning). The result is in
/// x₀ space. `progress(i, num_steps)` is called after step i = 1..=num_steps.
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
pub fn sample_euler(
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
            euler_step(
                diffusion,
                model_output,
                x_hat,
                sigma_hat,
                schedule.sigmas[i + 1],
            )
        },
        progress,
    )
}
