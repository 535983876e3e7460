//! Denoising diffusion implicit models (Song et al. 2021): deterministic (η = 0) or partly
//! stochastic sampling over a respaced subset of the training timesteps.

use burn::tensor::Tensor;
use rand::Rng;

use super::over_timesteps;
use crate::{Denoiser, DiffusionError, GaussianDiffusion, noise::randn};

/// Checks DDIM's η (Song et al. 2021, eq. 16), the stochasticity of every sampler built on
/// [`ddim_step`]: 0 is deterministic, 1 gives the DDPM posterior's variance.
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `eta` when it is not in [0, 1] (NaN included).
pub fn check_eta(eta: f64) -> Result<(), DiffusionError> {
    if (0.0..=1.0).contains(&eta) {
        Ok(())
    } else {
        Err(DiffusionError::argument(
            "eta",
            format!("must be in [0, 1], got {eta}"),
        ))
    }
}

/// One DDIM step from timestep `t` to `prev_t` (`None` after the last step, where ᾱ_prev is
/// [`GaussianDiffusion::final_alpha_cumprod`]: 1, or ᾱ_0 without `set_alpha_to_one`).
///
/// x̂₀ is clamped to [−1, 1] when `config.clip_sample`, and ε̂ is then re-derived from the
/// clamped x̂₀ so that the pair stays consistent with x_t (GLIDE/ADM behaviour; diffusers'
/// `use_clipped_model_output = True`). Without clipping this is exactly diffusers' step.
/// `noise` is scaled by σ_t(η) and added when given; with `None` the step is deterministic.
///
/// # Shapes
///
/// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance; only the mean part is used)
/// - `x_t`, `noise`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Panics
///
/// If `t >= T` or `prev_t >= T`.
pub fn ddim_step(
    diffusion: &GaussianDiffusion,
    model_output: Tensor<4>,
    t: usize,
    prev_t: Option<usize>,
    x_t: Tensor<4>,
    eta: f64,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let ac = &diffusion.schedule.alphas_cumprod;
    let (alpha_t, alpha_prev) = (
        ac[t],
        prev_t.map_or_else(|| diffusion.final_alpha_cumprod(), |p| ac[p]),
    );
    let ts = vec![t; x_t.dims()[0]];
    // DDIM's update has its own σ_t(η); a learned variance is not used.
    let (model_output, _) = diffusion.split_output(model_output);
    let (x_start, eps) = diffusion.predict_start_and_noise(model_output, x_t.clone(), &ts);
    let (x_start, eps) = if diffusion.config.clip_sample {
        let x_start = x_start.clamp(-1.0, 1.0);
        let eps = diffusion.predict_noise_from_start(x_t, x_start.clone(), &ts);
        (x_start, eps)
    } else {
        (x_start, eps)
    };
    // Song et al. 2021, eq. 16: σ_t(η) = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1})
    let sigma = eta * ((1.0 - alpha_prev) / (1.0 - alpha_t) * (1.0 - alpha_t / alpha_prev)).sqrt();
    // Rounding can take 1 − ᾱ_{t−1} − σ² a hair below 0 at η = 1; it is 0 in exact arithmetic.
    let direction = (1.0 - alpha_prev - sigma * sigma).max(0.0).sqrt();
    // Song et al. 2021, eq. 12: x_{t−1} = √ᾱ_{t−1} x̂₀ + √(1 − ᾱ_{t−1} − σ²_t) ε̂ + σ_t ε
    let x_prev = x_start.mul_scalar(alpha_prev.sqrt() as f32) + eps.mul_scalar(direction as f32);
    match noise {
        Some(noise) if sigma > 0.0 => x_prev + noise.mul_scalar(sigma as f32),
        _ => x_prev,
    }
}

/// DDIM sampling over `num_steps` timesteps picked by `config.timestep_spacing`
/// ([`GaussianDiffusion::inference_timesteps`]), starting at `x_t` (normally standard normal
/// noise).
///
/// Each step goes to the next timestep of that schedule, as in the DDIM paper's sub-sequence τ.
/// (diffusers instead always steps to t − T/n, which for `trailing` and `linspace` spacing is not
/// the timestep it evaluates next.) With `eta > 0`, fresh noise for every step comes from `rng`
/// through [`randn`]. `progress(i, num_steps)` is called after step i = 1..=num_steps.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is not in 1..=T or `eta` is not in
/// [0, 1].
pub fn sample_ddim(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    eta: f64,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    check_eta(eta)?;
    let timesteps = diffusion.inference_timesteps(num_steps)?;
    Ok(ddim_over(
        denoiser, diffusion, x_t, &timesteps, eta, rng, progress,
    ))
}

/// DDIM ([`ddim_step`]) from `x_t` at `timesteps[0]` through each following timestep to a clean
/// x₀ (ᾱ = [`GaussianDiffusion::final_alpha_cumprod`] after the last), the loop of
/// [`sample_ddim`] over its respaced schedule and of SDEdit over its shortened one;
/// [`ddim_over_with`] without a hook.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub(crate) fn ddim_over<R: Rng>(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    timesteps: &[usize],
    eta: f64,
    rng: &mut R,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    ddim_over_with(
        denoiser,
        diffusion,
        x_t,
        timesteps,
        eta,
        rng,
        |x, _, _| x,
        progress,
    )
}

/// [`ddim_over`] with `after_step(x, prev_t, rng)` applied to the result of every step before
/// `progress` is called: `prev_t` is the timestep the step went to (`None` after the last,
/// clean one), and what it returns is the x the next step starts from (inpainting's
/// known-region replacement).
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`; `after_step` takes and returns `[B, C, H, W]`
/// - returns `[B, C, H, W]`
#[allow(clippy::too_many_arguments)]
pub(crate) fn ddim_over_with<R: Rng>(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    timesteps: &[usize],
    eta: f64,
    rng: &mut R,
    mut after_step: impl FnMut(Tensor<4>, Option<usize>, &mut R) -> Tensor<4>,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let (dims, device) = (x_t.dims(), x_t.device());
    over_timesteps(
        denoiser,
        x_t,
        timesteps,
        |model_output, x, t, prev_t| {
            let noise = (eta > 0.0).then(|| randn(rng, dims, &device));
            let x = ddim_step(diffusion, model_output, t, prev_t, x, eta, noise);
            after_step(x, prev_t, rng)
        },
        progress,
    )
}
