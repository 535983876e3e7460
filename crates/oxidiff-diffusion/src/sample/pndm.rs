//! Pseudo numerical methods for diffusion models (Liu et al. 2022, "PNDM") in the form Stable
//! Diffusion 1.x ships as its default scheduler: the pseudo linear multistep method (PLMS) with
//! the Runge–Kutta warm-up skipped (diffusers' `PNDMScheduler` with `skip_prk_steps = true`).
//!
//! Every step moves x along the same transfer φ (Liu et al. 2022, eq. 9; DDIM's deterministic
//! step in another form); what changes is the model output it moves along. The first step is a
//! pseudo improved-Euler step (two network calls: the output at the start, then the mean of it
//! and the output at the Euler prediction), every later step one call, combining the last two,
//! three or four outputs with the Adams–Bashforth weights. n steps take n + 1 network calls.

use burn::tensor::Tensor;

use super::timestep_tensor;
use crate::{Denoiser, DiffusionError, GaussianDiffusion, Prediction};

/// PNDM's transfer φ (Liu et al. 2022, eq. 9) from x_t at ᾱ_t to ᾱ_prev along the noise
/// estimate ε̂, in diffusers' `PNDMScheduler._get_prev_sample` form:
/// x_prev = √(ᾱ_prev/ᾱ_t) x_t − (ᾱ_prev − ᾱ_t) ε̂ / (ᾱ_t √(1 − ᾱ_prev) + √(ᾱ_t (1 − ᾱ_t) ᾱ_prev)).
///
/// # Shapes
///
/// - `x_t`, `eps`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn pndm_transfer(x_t: Tensor<4>, eps: Tensor<4>, alpha_t: f64, alpha_prev: f64) -> Tensor<4> {
    let sample_coeff = (alpha_prev / alpha_t).sqrt();
    let denominator =
        alpha_t * (1.0 - alpha_prev).sqrt() + (alpha_t * (1.0 - alpha_t) * alpha_prev).sqrt();
    x_t.mul_scalar(sample_coeff as f32)
        - eps.mul_scalar(((alpha_prev - alpha_t) / denominator) as f32)
}

/// The linear multistep combination of the last model outputs (oldest first, at most four):
/// Adams–Bashforth of order 1 to 4 (Liu et al. 2022, eq. 12).
///
/// # Shapes
///
/// - each of `outputs`: `[B, C, H, W]`; returns the same
fn linear_multistep(outputs: &[Tensor<4>]) -> Tensor<4> {
    let weights: &[f64] = match outputs.len() {
        1 => &[1.0],
        2 => &[-1.0 / 2.0, 3.0 / 2.0],
        3 => &[5.0 / 12.0, -16.0 / 12.0, 23.0 / 12.0],
        _ => &[-9.0 / 24.0, 37.0 / 24.0, -59.0 / 24.0, 55.0 / 24.0],
    };
    let recent = &outputs[outputs.len() - weights.len()..];
    recent
        .iter()
        .zip(weights)
        .map(|(e, &w)| e.clone().mul_scalar(w as f32))
        .reduce(|a, b| a + b)
        .expect("at least one output")
}

/// PLMS sampling (PNDM without its Runge–Kutta warm-up) over `num_steps` timesteps of
/// [`GaussianDiffusion::inference_timesteps`], from `x_t` to ᾱ =
/// [`GaussianDiffusion::final_alpha_cumprod`]: num_steps + 1 network calls (one for a single
/// step). Deterministic, as diffusers' `PNDMScheduler` with `skip_prk_steps = true`; each step
/// goes to the next timestep of the schedule, as [`super::sample_ddim`] does. For `leading`
/// spacing (Stable Diffusion's) that is diffusers' t − T/n; for `trailing` and `linspace` it is
/// only when n divides T (diffusers then steps between timesteps it does not evaluate).
/// `progress(i, num_steps)` is called after step i = 1..=num_steps.
///
/// The model's outputs are combined as they come, then read as ε (for `velocity`, converted at
/// the step's start as diffusers does after combining); x₀ is never clipped.
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is out of range, or the model predicts
/// x₀ (`prediction = "sample"`, which PNDM does not define).
pub fn sample_pndm(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    if diffusion.config.prediction == Prediction::Sample {
        return Err(DiffusionError::argument(
            "prediction",
            "\"sample\" (x0) is not a model output PNDM can step along: it needs \"epsilon\" or \
             \"velocity\", as diffusers' PNDMScheduler",
        ));
    }
    let timesteps = diffusion.inference_timesteps(num_steps)?;
    let ac = &diffusion.schedule.alphas_cumprod;
    let alpha_at = |i: usize| {
        timesteps
            .get(i)
            .map_or_else(|| diffusion.final_alpha_cumprod(), |&t| ac[t])
    };
    let (batch, device) = (x_t.dims()[0], x_t.device());
    let call = |x: Tensor<4>, t: usize| {
        let output = denoiser.denoise(x, timestep_tensor(t, batch, &device));
        diffusion.split_output(output).0
    };
    // ε̂ from the combined output m at the step's start (x, ᾱ): v = √ᾱ ε − √(1−ᾱ) x inverted
    // with x_t's own coefficients, as diffusers converts after combining.
    let as_noise = |m: Tensor<4>, x: &Tensor<4>, alpha: f64| match diffusion.config.prediction {
        Prediction::Velocity => {
            m.mul_scalar(alpha.sqrt() as f32) + x.clone().mul_scalar((1.0 - alpha).sqrt() as f32)
        }
        _ => m,
    };
    let step = |x: Tensor<4>, m: Tensor<4>, from: usize| {
        let (alpha, alpha_prev) = (alpha_at(from), alpha_at(from + 1));
        let eps = as_noise(m, &x, alpha);
        pndm_transfer(x, eps, alpha, alpha_prev)
    };

    // Step 1: pseudo improved Euler, the mean of the outputs at both ends of an Euler step.
    let first = call(x_t.clone(), timesteps[0]);
    let mut x = step(x_t.clone(), first.clone(), 0);
    if num_steps > 1 {
        let at_prediction = call(x, timesteps[1]);
        x = step(x_t, (first.clone() + at_prediction).div_scalar(2.0), 0);
    }
    progress(1, num_steps);
    // The outputs at the start of each step, which the multistep combines (the Euler
    // prediction's output is not one of them).
    let mut outputs = vec![first];
    for (i, &t) in timesteps.iter().enumerate().skip(1) {
        let output = call(x.clone(), t);
        if outputs.len() == 4 {
            outputs.remove(0);
        }
        outputs.push(output);
        x = step(x, linear_multistep(&outputs), i);
        progress(i + 1, num_steps);
    }
    Ok(x)
}
