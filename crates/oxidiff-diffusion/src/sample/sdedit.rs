//! Editing and denoising an existing image by starting the reverse process part-way: SDEdit
//! (Meng et al. 2022) adds noise to a guide image up to a chosen timestep t₀ and runs DDIM back
//! down, so that the result keeps the guide's coarse structure while the model redraws the
//! detail; [`denoise_known_sigma`] does the same for an image that already carries Gaussian noise
//! of a known level, without adding any.
//!
//! Both visit `num_steps` timesteps of [0, t₀] from [`timesteps_within`]: t₀ itself, 0, and
//! evenly spaced ones in between (rounded half up), always starting exactly where the noise
//! level is known. This differs from diffusers' img2img pipelines, which cut the full respaced
//! schedule at `strength` and so run about `strength · num_steps` steps from a timestep near t₀.

use burn::tensor::Tensor;
use rand::Rng;

use super::check_eta;
use crate::{Denoiser, DiffusionError, GaussianDiffusion, noise::randn};

/// `num_steps` distinct timesteps of [0, `t_start`] in descending order, from `t_start` to 0:
/// τ_i = round(i · t_start / (n − 1)) for i = n − 1, …, 0 (integer rounding, half up), or
/// `[t_start]` alone when n = 1. Consecutive values differ by at least 1 because
/// t_start ≥ n − 1, and the two ends are exact.
///
/// A run that starts from a known noise level (SDEdit's t₀, or the level of a noisy photo) has to
/// evaluate the denoiser there first and then spread its steps over what is left; respacing the
/// whole [0, T − 1] range ([`crate::respace_timesteps`]) would start elsewhere.
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] (`num_steps`) when `num_steps` is not in
/// 1..=`t_start` + 1.
pub fn timesteps_within(t_start: usize, num_steps: usize) -> Result<Vec<usize>, DiffusionError> {
    let n = num_steps;
    if n == 0 || n > t_start + 1 {
        return Err(DiffusionError::argument(
            "num_steps",
            format!(
                "must be in 1..={} (the timesteps 0..={t_start} the run can visit), got {n}",
                t_start + 1
            ),
        ));
    }
    if n == 1 {
        return Ok(vec![t_start]);
    }
    let last = n - 1;
    // linspace(0, t₀, n) rounded half up, in integers so that the ends are exact
    Ok((0..n)
        .rev()
        .map(|i| (i * t_start + last / 2) / last)
        .collect())
}

/// SDEdit's starting timestep t₀ = round(`strength` · (T − 1)) (rounded half away from 0) and the
/// `num_steps` timesteps from t₀ down to 0 the run visits ([`timesteps_within`]).
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `strength` when it is not in (0, 1], or
/// `num_steps` when it is not in 1..=t₀ + 1.
pub fn sdedit_timesteps(
    diffusion: &GaussianDiffusion,
    strength: f64,
    num_steps: usize,
) -> Result<Vec<usize>, DiffusionError> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(DiffusionError::argument(
            "strength",
            format!(
                "must be in (0, 1] (the fraction of the noise schedule to add), got {strength}"
            ),
        ));
    }
    let last = diffusion.num_timesteps() - 1;
    // Meng et al. 2022, §3.2: t₀ ∈ [0, 1] as a fraction of the schedule, here of T − 1
    let t_start = (strength * last as f64).round() as usize;
    timesteps_within(t_start.min(last), num_steps)
}

/// SDEdit (Meng et al. 2022): noises `image` to t₀ = round(`strength` · (T − 1)) with q(x_{t₀} | x₀)
/// and runs DDIM from there down to a clean x₀ over `num_steps` timesteps of [0, t₀]
/// ([`sdedit_timesteps`]). A small strength keeps the image almost as it is; strength 1 starts
/// from (almost) pure noise and keeps little of it — the realism/faithfulness trade-off of the
/// paper's §3.2.
///
/// The forward noise, then (with `eta > 0`) each step's noise, come from `rng` through
/// [`randn`]. `progress(i, num_steps)` is called after step i = 1..=num_steps.
///
/// # Shapes
///
/// - `image`: `[B, C, H, W]`, x₀ in [−1, 1]
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `strength` when it is not in (0, 1], `num_steps`
/// when it is not in 1..=t₀ + 1, or `eta` when it is not in [0, 1].
#[allow(clippy::too_many_arguments)]
pub fn sdedit(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    image: Tensor<4>,
    strength: f64,
    num_steps: usize,
    eta: f64,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let timesteps = sdedit_timesteps(diffusion, strength, num_steps)?;
    check_eta(eta)?;
    let dims = image.dims();
    let noise = randn(rng, dims, &image.device());
    // Meng et al. 2022, §3.2 (VP form), Ho et al. 2020, eq. 4: x_{t₀} = √ᾱ_{t₀} x^(g) + √(1 − ᾱ_{t₀}) z
    let x_t = diffusion.q_sample(image, &vec![timesteps[0]; dims[0]], noise);
    Ok(super::ddim::ddim_over(
        denoiser, diffusion, x_t, &timesteps, eta, rng, progress,
    ))
}

/// The largest finite noise level σ_t of the schedule, in [-1, 1] pixel units: the most noise
/// [`denoise_known_sigma`] can start from.
pub fn largest_sigma(diffusion: &GaussianDiffusion) -> f64 {
    finite_sigmas(diffusion).map(|(_, s)| s).fold(0.0, f64::max)
}

/// σ_t = √((1 − ᾱ_t)/ᾱ_t) for every t with ᾱ_t > 0, as (t, σ_t); a zero-terminal-SNR schedule's
/// last step (σ = ∞, no signal left to scale) is left out.
fn finite_sigmas(diffusion: &GaussianDiffusion) -> impl Iterator<Item = (usize, f64)> + '_ {
    diffusion
        .schedule
        .alphas_cumprod
        .iter()
        .enumerate()
        .filter(|&(_, &ac)| ac > 0.0)
        // Karras et al. 2022, Table 1 (VP): σ_t = √((1 − ᾱ_t)/ᾱ_t)
        .map(|(t, &ac)| (t, ((1.0 - ac) / ac).sqrt()))
}

/// The training timestep whose noise level σ_t = √((1 − ᾱ_t)/ᾱ_t) is closest to `sigma` (the
/// smaller t on a tie), for an image y = x₀ + σ n that carries Gaussian noise of standard
/// deviation σ in [−1, 1] pixel units.
///
/// Scaled by √ᾱ_t, such an image is x_t = √ᾱ_t x₀ + √ᾱ_t σ n, which is distributed exactly as
/// q(x_t | x₀) when σ = σ_t (Karras et al. 2022, Table 1, VP column: x_t = s(t) x_σ), and
/// nearly so for the nearest t. Any `sigma` gives an answer: 0 or below gives t = 0, a value
/// past the schedule's largest σ the timestep of that largest, NaN gives 0;
/// [`denoise_known_sigma`] rejects those first.
pub fn timestep_for_sigma(diffusion: &GaussianDiffusion, sigma: f64) -> usize {
    let mut best = (0, f64::INFINITY);
    for (t, sigma_t) in finite_sigmas(diffusion) {
        let distance = (sigma_t - sigma).abs();
        if distance < best.1 {
            best = (t, distance);
        }
    }
    best.0
}

/// Denoises an image y = x₀ + σ n that carries Gaussian noise of known standard deviation
/// `sigma` (in [−1, 1] pixel units): takes t = [`timestep_for_sigma`], scales y to
/// x_t = √ᾱ_t y and runs DDIM from t down to a clean x₀ over `num_steps` timesteps of [0, t]
/// ([`timesteps_within`]). Unlike [`sdedit`] no noise is added first: the image already is a
/// sample of q at t, up to the gap between σ and σ_t.
///
/// With `eta > 0` each step's noise comes from `rng` through [`randn`]; with `eta = 0` the
/// result is a deterministic function of `noisy`. `progress(i, num_steps)` is called after
/// step i = 1..=num_steps.
///
/// # Shapes
///
/// - `noisy`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `sigma` when it is not a finite number in
/// (0, largest σ_t of the schedule], `num_steps` when it is not in 1..=t + 1, or `eta` when it is
/// not in [0, 1].
#[allow(clippy::too_many_arguments)]
pub fn denoise_known_sigma(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    noisy: Tensor<4>,
    sigma: f64,
    num_steps: usize,
    eta: f64,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let largest = largest_sigma(diffusion);
    if !(sigma.is_finite() && sigma > 0.0 && sigma <= largest) {
        return Err(DiffusionError::argument(
            "sigma",
            format!(
                "must be in (0, {largest}] (the noise levels √((1 − ᾱ_t)/ᾱ_t) of the schedule, in [-1, 1] pixel units), got {sigma}"
            ),
        ));
    }
    check_eta(eta)?;
    let t = timestep_for_sigma(diffusion, sigma);
    let timesteps = timesteps_within(t, num_steps)?;
    // Karras et al. 2022, Table 1 (VP): x_t = √ᾱ_t x_σ
    let x_t = noisy.mul_scalar(diffusion.schedule.sqrt_alphas_cumprod[t] as f32);
    Ok(super::ddim::ddim_over(
        denoiser, diffusion, x_t, &timesteps, eta, rng, progress,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_within_spans_the_range() {
        assert_eq!(timesteps_within(9, 4).unwrap(), vec![9, 6, 3, 0]);
        assert_eq!(timesteps_within(10, 4).unwrap(), vec![10, 7, 3, 0]);
        assert_eq!(timesteps_within(5, 1).unwrap(), vec![5]);
        assert_eq!(timesteps_within(0, 1).unwrap(), vec![0]);
        assert_eq!(timesteps_within(3, 4).unwrap(), vec![3, 2, 1, 0]);
        for t in 0..60 {
            for n in 1..=t + 1 {
                let ts = timesteps_within(t, n).unwrap();
                assert_eq!(ts.len(), n);
                assert_eq!(ts[0], t);
                assert_eq!(*ts.last().unwrap(), if n == 1 { t } else { 0 });
                assert!(ts.windows(2).all(|w| w[0] > w[1]), "{t} {n}: {ts:?}");
            }
        }
        assert!(timesteps_within(3, 5).is_err());
        assert!(timesteps_within(3, 0).is_err());
    }
}
