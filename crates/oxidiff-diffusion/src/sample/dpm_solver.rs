//! DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
//! solver of the diffusion ODE in data prediction (x̂₀) form, exponential in λ = log(α_t/σ_t), one
//! network evaluation per step; and its SDE variant SDE-DPM-Solver++(2M). The step maths is
//! diffusers' `DPMSolverMultistepScheduler` with `solver_order = 2`, `solver_type = "midpoint"`,
//! `final_sigmas_type = "zero"`, `algorithm_type = "dpmsolver++"` or `"sde-dpmsolver++"`.
//!
//! The solver works on the VP-space x_t with α_t = 1/√(σ² + 1), σ_t = σ α_t for each σ of the
//! schedule, so λ = −log σ.

use burn::tensor::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::sigmas::{
    SigmaSchedule, fractional_timestep_tensor, karras_sigmas, predict_start_at_sigma,
    training_sigmas, vp_coefficients,
};
use crate::{
    Denoiser, DiffusionError, GaussianDiffusion, TimestepSpacing, noise::randn,
    respace::apply_steps_offset, respace_timesteps,
};

crate::named_enum! {
    /// Deterministic DPM-Solver++ or its stochastic variant.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DpmSolverAlgorithm {
        /// DPM-Solver++(2M), the ODE solver (diffusers `"dpmsolver++"`).
        #[default]
        DpmSolverPlusPlus = "dpmsolver++",
        /// SDE-DPM-Solver++(2M): the same multistep data-prediction update for the reverse SDE,
        /// integrating its linear part exactly and adding fresh noise every step (diffusers
        /// `"sde-dpmsolver++"`, contributed by the DPM-Solver++ authors; not in the paper itself).
        SdeDpmSolverPlusPlus = "sde-dpmsolver++",
    }
}

/// Options of [`sample_dpm_solver`]. `Default` is diffusers' default: the ODE solver on the
/// respaced training sigmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DpmSolverOptions {
    /// ODE or SDE variant.
    pub algorithm: DpmSolverAlgorithm,
    /// Step through the Karras sigmas ([`karras_sigmas`], ρ = 7) instead of training sigmas.
    pub karras_sigmas: bool,
}

/// The σ schedule of diffusers' `DPMSolverMultistepScheduler.set_timesteps`: Karras sigmas, or
/// the training sigmas at its own choice of timesteps, then σ = 0.
///
/// Its discrete timesteps leave out t = 0, the step to σ = 0 standing in for it: `trailing` is
/// [`respace_timesteps`] for n; `leading` and `linspace` are the first n of
/// [`respace_timesteps`] for n + 1 (diffusers: `arange(n + 1) · T // (n + 1)` and
/// `linspace(0, T − 1, n + 1).round()`, reversed, the last dropped).
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is 0 or above T (`trailing`) or T − 1
/// (`leading`, `linspace`).
pub fn dpm_solver_sigmas(
    diffusion: &GaussianDiffusion,
    num_steps: usize,
    karras: bool,
) -> Result<SigmaSchedule, DiffusionError> {
    if karras {
        return karras_sigmas(diffusion, num_steps);
    }
    let total = diffusion.num_timesteps();
    let spacing = diffusion.config.timestep_spacing;
    let timesteps = match spacing {
        TimestepSpacing::Trailing => respace_timesteps(total, num_steps, spacing)?,
        TimestepSpacing::Leading | TimestepSpacing::Linspace => {
            if num_steps == 0 || num_steps >= total {
                return Err(DiffusionError::argument(
                    "num_inference_steps",
                    format!(
                        "must be in 1..={} (one below the number of training timesteps, for {spacing:?} spacing), got {num_steps}",
                        total.saturating_sub(1)
                    ),
                ));
            }
            let mut timesteps = respace_timesteps(total, num_steps + 1, spacing)?;
            timesteps.truncate(num_steps);
            apply_steps_offset(timesteps, &diffusion.config)?
        }
    };
    let train = training_sigmas(diffusion);
    let sigmas = timesteps
        .iter()
        .map(|&t| train[t])
        .chain(std::iter::once(0.0))
        .collect();
    let timesteps = timesteps.iter().map(|&t| t as f64).collect();
    Ok(SigmaSchedule { sigmas, timesteps })
}

/// One DPM-Solver++(2M) step of the VP-space `x_t` from noise level σ to `sigma_next`, given
/// x̂₀ at (x_t, σ) (see [`crate::sample::predict_start_at_sigma`]) and, for the second-order
/// update, x̂₀ of the previous step with its σ. diffusers' `DPMSolverMultistepScheduler.step`
/// after its `convert_model_output`.
///
/// It is first order (DPM-Solver++(1), i.e. DDIM) when `previous` is `None` (the first step) and
/// when `sigma_next = 0` (the last step, where it returns x̂₀ exactly: diffusers'
/// `lower_order_final`, which with `final_sigmas_type = "zero"` applies at every step count).
/// With `noise` (standard normal) it is the SDE variant SDE-DPM-Solver++(2M); with `None` the
/// ODE solver.
///
/// # Shapes
///
/// - `x_t`, `x_start`, the previous x̂₀, `noise`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub fn dpm_solver_step(
    x_t: Tensor<4>,
    x_start: Tensor<4>,
    previous: Option<(Tensor<4>, f64)>,
    sigma: f64,
    sigma_next: f64,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    if sigma_next == 0.0 {
        // λ_{i} = +∞: e^{−h} = 0 and α = 1, so every update below reduces to x̂₀.
        return x_start;
    }
    let (_, sigma_t) = vp_coefficients(sigma);
    let (alpha_next, sigma_t_next) = vp_coefficients(sigma_next);
    // Lu et al. 2022 (DPM-Solver++), Algorithm 2: h_i = λ_{t_i} − λ_{t_{i−1}}, with λ = −log σ
    let h = sigma.ln() - sigma_next.ln();
    // Lu et al. 2022 (DPM-Solver++), Algorithm 2: D_i = (1 + 1/(2r_i)) x̂₀_i − 1/(2r_i) x̂₀_{i−1},
    // written as D₀ + ½ D₁ with D₁ = (x̂₀_i − x̂₀_{i−1})/r_i, r_i = h_{i−1}/h_i
    let data = match previous {
        Some((prev_start, sigma_prev)) => {
            let r = (sigma_prev.ln() - sigma.ln()) / h;
            x_start.clone() + (x_start - prev_start).mul_scalar((0.5 / r) as f32)
        }
        None => x_start,
    };
    match noise {
        None => {
            // Lu et al. 2022 (DPM-Solver++), Algorithm 2: x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x − α_{t_i}(e^{−h_i} − 1) D_i
            x_t.mul_scalar((sigma_t_next / sigma_t) as f32)
                - data.mul_scalar((alpha_next * (-h).exp_m1()) as f32)
        }
        Some(noise) => {
            // SDE-DPM-Solver++ (diffusers `sde-dpmsolver++`): x_t = (σ_t/σ_s) e^{−h} x_s
            //   + α_t (1 − e^{−2h}) D + σ_t √(1 − e^{−2h}) z
            let one_minus = -(-2.0 * h).exp_m1();
            x_t.mul_scalar((sigma_t_next / sigma_t * (-h).exp()) as f32)
                + data.mul_scalar((alpha_next * one_minus) as f32)
                + noise.mul_scalar((sigma_t_next * one_minus.sqrt()) as f32)
        }
    }
}

/// DPM-Solver++(2M) or SDE-DPM-Solver++(2M) sampling over `num_steps` noise levels from `x_t`,
/// one network evaluation per step.
///
/// `x_t` is the VP-space starting noise x_T ~ N(0, I) (diffusers' `init_noise_sigma = 1`); the
/// network gets the VP-space sample as it is. The first step and the last (to σ = 0) are first
/// order, every other step second order. The SDE variant draws fresh noise for every step that
/// does not end at σ = 0 from `rng` through [`randn`]. The result is in x₀ space.
/// `progress(i, num_steps)` is called after step i = 1..=num_steps.
///
/// With Karras sigmas the network gets the fractional timestep of each σ (diffusers rounds it to
/// an integer, except for the cosine schedule, which makes the network's input timestep
/// disagree slightly with the σ the update assumes).
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_steps` is out of range (see
/// [`dpm_solver_sigmas`]).
pub fn sample_dpm_solver(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    x_t: Tensor<4>,
    num_steps: usize,
    options: &DpmSolverOptions,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let schedule = dpm_solver_sigmas(diffusion, num_steps, options.karras_sigmas)?;
    let dims = x_t.dims();
    let device = x_t.device();
    let mut x = x_t;
    let mut previous = None;
    for i in 0..num_steps {
        let (sigma, sigma_next) = (schedule.sigmas[i], schedule.sigmas[i + 1]);
        let t = fractional_timestep_tensor(schedule.timesteps[i], dims[0], &device);
        let model_output = denoiser.denoise(x.clone(), t);
        let x_start = predict_start_at_sigma(diffusion, model_output, x.clone(), sigma);
        let noise = (options.algorithm == DpmSolverAlgorithm::SdeDpmSolverPlusPlus
            && sigma_next > 0.0)
            .then(|| randn(rng, dims, &device));
        x = dpm_solver_step(x, x_start.clone(), previous, sigma, sigma_next, noise);
        previous = Some((x_start, sigma));
        progress(i + 1, num_steps);
    }
    Ok(x)
}
