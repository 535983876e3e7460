//! Noise levels σ for the samplers that integrate the probability-flow ODE (Karras et al. 2022):
//! the σ schedules they visit, the map between σ and the training timestep a
//! [`crate::Denoiser`] is conditioned on, and x̂₀ from a raw model output at any σ.
//!
//! In σ-space a noisy sample is x_σ = x₀ + σ ε. It is the VP-space x_t = √ᾱ x₀ + √(1−ᾱ) ε of
//! the training process divided by √ᾱ, with σ = √((1 − ᾱ)/ᾱ), so the network input is
//! x_t = x_σ / √(σ² + 1) (Karras et al. 2022, Table 1, VP column). A σ between two training
//! sigmas maps to a fractional timestep by linear interpolation of log σ, as diffusers'
//! `_sigma_to_t` does; the denoiser's sinusoidal time embedding takes that float as it is.

use burn::tensor::{Device, Tensor, TensorData};

use crate::{DiffusionError, GaussianDiffusion, Prediction, TimestepSpacing};

/// ᾱ_{T−1} the σ schedules use for a zero-terminal-SNR schedule (where ᾱ_{T−1} = 0): 2⁻²⁴, as
/// diffusers' Euler and DPM-Solver schedulers set `alphas_cumprod[-1]`, so that σ_max stays
/// finite (≈ 4096) instead of +∞.
pub const ZERO_SNR_ALPHA_CUMPROD: f64 = 1.0 / 16_777_216.0;

/// ρ of the Karras schedule, "the value used in the paper" (Karras et al. 2022, §3, eq. 5).
pub const KARRAS_RHO: f64 = 7.0;

/// The noise levels a sampler steps through and what the denoiser is told at each.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaSchedule {
    /// σ_0 ≥ σ_1 ≥ … ≥ σ_{n−1} > σ_n = 0: n + 1 values, the last always 0 (diffusers'
    /// `final_sigmas_type = "zero"`), so the last step lands on x₀.
    pub sigmas: Vec<f64>,
    /// The training timestep (fractional between training steps) the denoiser gets at σ_i, for
    /// i = 0..n: n values.
    pub timesteps: Vec<f64>,
}

impl SigmaSchedule {
    /// Number of steps n (one fewer than `sigmas`).
    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }
}

/// σ_t = √((1 − ᾱ_t)/ᾱ_t) for every training timestep t = 0..T, increasing in t.
///
/// A zero terminal SNR (ᾱ_{T−1} = 0) has ᾱ_{T−1} replaced by [`ZERO_SNR_ALPHA_CUMPROD`], exactly
/// as diffusers does. The steps just before it keep their own ᾱ, which can be smaller (t = 996
/// to 998 of the 1000-step linear schedule), so σ there rises above σ_{T−1} and falls back to
/// it at T − 1. This is kept so that the schedules match diffusers; only a schedule of nearly
/// T steps visits those timesteps.
pub fn training_sigmas(diffusion: &GaussianDiffusion) -> Vec<f64> {
    diffusion
        .schedule
        .alphas_cumprod
        .iter()
        .map(|&ac| {
            let ac = if ac == 0.0 {
                ZERO_SNR_ALPHA_CUMPROD
            } else {
                ac
            };
            // Karras et al. 2022, Table 1 (VP): σ = √((1 − ᾱ)/ᾱ)
            ((1.0 - ac) / ac).sqrt()
        })
        .collect()
}

/// The fractional training timestep of noise level `sigma`: linear interpolation of log σ
/// between training sigmas t and t + 1, where t is the last timestep with σ_t ≤ σ (at most
/// T − 2; 0 if none), clamped to [t, t + 1] (diffusers' and k-diffusion's `_sigma_to_t`).
/// Returns 0 for a schedule with fewer than two steps.
pub fn sigma_to_timestep(training_sigmas: &[f64], sigma: f64) -> f64 {
    let n = training_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    // diffusers: low_idx = cumsum(log_sigma >= log_sigmas).argmax(), at most T − 2
    let low = training_sigmas
        .iter()
        .rposition(|&s| s.ln() <= log_sigma)
        .unwrap_or(0)
        .min(n - 2);
    let (lo, hi) = (training_sigmas[low].ln(), training_sigmas[low + 1].ln());
    // diffusers `_sigma_to_t`: w = (log σ_t − log σ)/(log σ_t − log σ_{t+1}), clipped to [0, 1]
    let w = if lo == hi {
        0.0
    } else {
        ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0)
    };
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// The noise level at a fractional training timestep `t`, the inverse of
/// [`sigma_to_timestep`]: log σ interpolated linearly between the neighbouring training steps,
/// exactly σ_t at an integer t, and `t` clamped to [0, T − 1].
///
/// # Panics
///
/// If `training_sigmas` is empty.
pub fn timestep_to_sigma(training_sigmas: &[f64], t: f64) -> f64 {
    let last = training_sigmas.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let low = (t.floor() as usize).min(last);
    let w = t - low as f64;
    if w == 0.0 {
        return training_sigmas[low];
    }
    let (lo, hi) = (training_sigmas[low].ln(), training_sigmas[low + 1].ln());
    // inverse of `_sigma_to_t`: log σ = (1 − w) log σ_⌊t⌋ + w log σ_{⌊t⌋+1}, w = t − ⌊t⌋
    ((1.0 - w) * lo + w * hi).exp()
}

/// σ at a (possibly fractional) timestep by linear interpolation of σ itself, as diffusers' Euler
/// and Heun schedulers do with `np.interp` for their `linspace` timesteps.
fn interp_sigma(training_sigmas: &[f64], t: f64) -> f64 {
    let last = training_sigmas.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let low = (t.floor() as usize).min(last);
    if low == last {
        return training_sigmas[last];
    }
    let w = t - low as f64;
    // np.interp: σ = σ_⌊t⌋ + (t − ⌊t⌋)(σ_{⌊t⌋+1} − σ_⌊t⌋)
    training_sigmas[low] + w * (training_sigmas[low + 1] - training_sigmas[low])
}

/// `n` values from `start` to `stop` inclusive as numpy's `linspace` computes them
/// (i · step, the last set to `stop`); `[start]` when n = 1.
fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                stop
            } else {
                start + i as f64 * step
            }
        })
        .collect()
}

/// The σ schedule at training timesteps picked by `config.timestep_spacing`, then σ = 0: what
/// diffusers' `EulerDiscreteScheduler` and `HeunDiscreteScheduler` `set_timesteps` compute.
///
/// `leading` and `trailing` take [`GaussianDiffusion::inference_timesteps`] (`leading` shifted
/// by `steps_offset`). `linspace` keeps the unrounded linspace(0, T − 1, n) as those two
/// schedulers do (DDIM rounds it; here the denoiser gets the fractional timestep and σ is
/// interpolated linearly between training sigmas, as diffusers' `np.interp`).
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is not in 1..=T.
pub fn discrete_sigmas(
    diffusion: &GaussianDiffusion,
    num_steps: usize,
) -> Result<SigmaSchedule, DiffusionError> {
    let total = diffusion.num_timesteps();
    let spacing = diffusion.config.timestep_spacing;
    // Validates num_steps for every spacing, including linspace which does not use the result.
    let respaced = diffusion.inference_timesteps(num_steps)?;
    let timesteps: Vec<f64> = match spacing {
        // diffusers Euler/Heun: np.linspace(0, T − 1, n, dtype=float32)[::-1]
        TimestepSpacing::Linspace => np_linspace(0.0, (total - 1) as f64, num_steps)
            .into_iter()
            .rev()
            .collect(),
        TimestepSpacing::Leading | TimestepSpacing::Trailing => {
            respaced.iter().map(|&t| t as f64).collect()
        }
    };
    let train = training_sigmas(diffusion);
    let sigmas = timesteps
        .iter()
        .map(|&t| interp_sigma(&train, t))
        .chain(std::iter::once(0.0))
        .collect();
    Ok(SigmaSchedule { sigmas, timesteps })
}

/// `num_steps` Karras sigmas from σ_max = σ_{T−1} down to σ_min = σ_0 of the training schedule,
/// then σ = 0, with the fractional timestep of each from [`sigma_to_timestep`]. The two ends are
/// σ_max and σ_min exactly (the formula gives them only up to rounding), so they map to
/// t = T − 1 and t = 0 exactly.
///
/// The ρ = 7 spacing takes longer steps at high noise and shorter ones near the data, where the
/// ODE's truncation error matters most (Karras et al. 2022, §3). diffusers' DPM-Solver computes
/// exactly this; its Euler and Heun schedulers take σ_min and σ_max from their respaced
/// timesteps instead, which is the same for their default `linspace` spacing.
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is 0.
pub fn karras_sigmas(
    diffusion: &GaussianDiffusion,
    num_steps: usize,
) -> Result<SigmaSchedule, DiffusionError> {
    if num_steps == 0 {
        return Err(DiffusionError::argument(
            "num_inference_steps",
            "must be at least 1, got 0",
        ));
    }
    let train = training_sigmas(diffusion);
    let (sigma_min, sigma_max) = (train[0], train[train.len() - 1]);
    let (min_inv_rho, max_inv_rho) = (
        sigma_min.powf(1.0 / KARRAS_RHO),
        sigma_max.powf(1.0 / KARRAS_RHO),
    );
    let mut sigmas: Vec<f64> = np_linspace(0.0, 1.0, num_steps)
        .into_iter()
        // Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(KARRAS_RHO))
        .collect();
    sigmas[0] = sigma_max;
    if num_steps > 1 {
        sigmas[num_steps - 1] = sigma_min;
    }
    let timesteps = sigmas
        .iter()
        .map(|&s| sigma_to_timestep(&train, s))
        .collect();
    sigmas.push(0.0);
    Ok(SigmaSchedule { sigmas, timesteps })
}

/// Karras et al.'s denoiser D(x_σ; σ) = x̂₀ from a raw model output evaluated on
/// x_t = x_σ / √(σ² + 1), for any σ > 0 (between training steps too), in the σ-space forms of
/// diffusers' Euler scheduler. Uses the mean part of a learned-variance output and clamps x̂₀ to
/// [−1, 1] when `config.clip_sample` (as diffusers' Heun `clip_sample`).
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_sigma`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn denoise_at_sigma(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    x_sigma: Tensor<4>,
    sigma: f64,
) -> Tensor<4> {
    let (model_output, _) = diffusion.split_output(model_output);
    let x_start = match diffusion.config.prediction {
        // Karras et al. 2022, Table 1 (VP, ε-prediction): D(x; σ) = x − σ ε̂
        Prediction::Epsilon => x_sigma - model_output.mul_scalar(sigma as f32),
        Prediction::Sample => model_output,
        // Salimans & Ho 2022, §4 in σ-space: D(x; σ) = x/(σ² + 1) − σ/√(σ² + 1) v̂
        Prediction::Velocity => {
            let scale = sigma * sigma + 1.0;
            x_sigma.mul_scalar((1.0 / scale) as f32)
                - model_output.mul_scalar((sigma / scale.sqrt()) as f32)
        }
    };
    clip(diffusion, x_start)
}

/// x̂₀ from a raw model output at VP-space x_t for noise level σ, i.e. at the continuous
/// ᾱ = 1/(1 + σ²), in the forms of diffusers' DPM-Solver: with α = √ᾱ and s = √(1 − ᾱ),
/// x̂₀ = (x_t − s ε̂)/α, x̂₀ = x̂₀, or x̂₀ = α x_t − s v̂. Uses the mean part of a
/// learned-variance output and clamps x̂₀ to [−1, 1] when `config.clip_sample`.
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn predict_start_at_sigma(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    x_t: Tensor<4>,
    sigma: f64,
) -> Tensor<4> {
    let (model_output, _) = diffusion.split_output(model_output);
    let (alpha, sigma_t) = vp_coefficients(sigma);
    let x_start = match diffusion.config.prediction {
        // Ho et al. 2020, eq. 4 solved for x₀: x₀ = (x_t − √(1−ᾱ) ε)/√ᾱ
        Prediction::Epsilon => {
            (x_t - model_output.mul_scalar(sigma_t as f32)).mul_scalar((1.0 / alpha) as f32)
        }
        Prediction::Sample => model_output,
        // Salimans & Ho 2022, §4: x₀ = α_t x_t − σ_t v
        Prediction::Velocity => {
            x_t.mul_scalar(alpha as f32) - model_output.mul_scalar(sigma_t as f32)
        }
    };
    clip(diffusion, x_start)
}

/// (α_t, σ_t) = (1/√(σ² + 1), σ/√(σ² + 1)) of the VP process at σ-space noise level σ
/// (diffusers' `_sigma_to_alpha_sigma_t`).
pub(crate) fn vp_coefficients(sigma: f64) -> (f64, f64) {
    // Karras et al. 2022, Table 1 (VP): s(t) = 1/√(σ² + 1)
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// x̂₀ clamped to [−1, 1] when `config.clip_sample`.
fn clip(diffusion: &GaussianDiffusion, x_start: Tensor<4>) -> Tensor<4> {
    if diffusion.config.clip_sample {
        x_start.clamp(-1.0, 1.0)
    } else {
        x_start
    }
}

/// The timestep tensor a [`crate::Denoiser`] receives: the fractional `t` for every batch item.
///
/// # Shapes
///
/// - returns `[batch]`
pub(crate) fn fractional_timestep_tensor(t: f64, batch: usize, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![t as f32; batch], [batch]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiffusionConfig;

    fn diffusion(spacing: TimestepSpacing) -> GaussianDiffusion {
        GaussianDiffusion::new(DiffusionConfig {
            timestep_spacing: spacing,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn sigma_and_timestep_round_trip() {
        let train = training_sigmas(&diffusion(TimestepSpacing::Leading));
        for t in [0.0, 0.25, 1.0, 17.5, 500.0, 998.75, 999.0] {
            let back = sigma_to_timestep(&train, timestep_to_sigma(&train, t));
            assert!((back - t).abs() < 1e-9, "{t} -> {back}");
        }
        // Outside the training range the timestep clamps to its ends.
        assert_eq!(sigma_to_timestep(&train, 1e-6), 0.0);
        assert_eq!(sigma_to_timestep(&train, 1e6), 999.0);
    }

    #[test]
    fn schedules_end_at_zero_and_decrease() {
        for spacing in [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ] {
            let d = diffusion(spacing);
            for s in [
                discrete_sigmas(&d, 7).unwrap(),
                karras_sigmas(&d, 7).unwrap(),
            ] {
                assert_eq!(s.sigmas.len(), 8);
                assert_eq!(s.num_steps(), 7);
                assert_eq!(*s.sigmas.last().unwrap(), 0.0);
                assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]), "{s:?}");
            }
        }
        assert!(discrete_sigmas(&diffusion(TimestepSpacing::Leading), 0).is_err());
        assert!(discrete_sigmas(&diffusion(TimestepSpacing::Linspace), 1001).is_err());
        assert!(karras_sigmas(&diffusion(TimestepSpacing::Leading), 0).is_err());
    }

    #[test]
    fn zero_terminal_snr_keeps_sigma_max_finite() {
        let d = GaussianDiffusion::new(DiffusionConfig {
            rescale_zero_terminal_snr: true,
            prediction: Prediction::Velocity,
            ..Default::default()
        })
        .unwrap();
        let train = training_sigmas(&d);
        assert!((train[999] - 4096.0).abs() < 1e-3, "{}", train[999]);
        let karras = karras_sigmas(&d, 10).unwrap();
        assert_eq!(karras.sigmas[0], train[999]);
        assert_eq!(karras.timesteps[0], 999.0);
        assert!(karras.timesteps.iter().all(|t| t.is_finite()));
    }
}
