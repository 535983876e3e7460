//! Samplers: functions that turn noise into data by calling a [`crate::Denoiser`] once per step.
//! One file per sampler family.
//!
//! Samplers never record gradients themselves: pass a model and a starting tensor that live on a
//! device without autodiff (or a model in inference mode) to keep memory flat over many steps.

mod ddim;
mod ddpm;
mod dpm_solver;
mod euler;
mod heun;
mod inpaint;
mod pndm;
mod sdedit;
mod sigmas;

pub use ddim::{check_eta, ddim_step, sample_ddim};
pub use ddpm::{ddpm_step, respaced_ddpm_step, sample_ddpm};
pub use dpm_solver::{
    DpmSolverAlgorithm, DpmSolverOptions, dpm_solver_sigmas, dpm_solver_step, sample_dpm_solver,
};
pub use euler::{KarrasOptions, churn, euler_step, ode_derivative, sample_euler};
pub use heun::{heun_correction, heun_error_gain, sample_heun};
pub use inpaint::{RePaintOptions, inpaint_ddim, repaint, repaint_schedule};
pub use pndm::{pndm_transfer, sample_pndm};
pub use sdedit::{
    denoise_known_sigma, largest_sigma, sdedit, sdedit_timesteps, timestep_for_sigma,
    timesteps_within,
};
pub use sigmas::{
    KARRAS_RHO, SigmaSchedule, ZERO_SNR_ALPHA_CUMPROD, denoise_at_sigma, discrete_sigmas,
    karras_sigmas, predict_start_at_sigma, sigma_to_timestep, timestep_to_sigma, training_sigmas,
};

use burn::tensor::{Device, Tensor, TensorData};

/// The timestep tensor a [`crate::Denoiser`] receives: `t` for every batch item.
///
/// # Shapes
///
/// - returns `[batch]`
pub(crate) fn timestep_tensor(t: usize, batch: usize, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![t as f32; batch], [batch]), device)
}

/// The loop of the samplers over discrete timesteps: from `x_t` at `timesteps[0]`, evaluates
/// the denoiser at each t and lets `step(model_output, x, t, prev_t)` take x to the next
/// timestep (`None` after the last: the clean end), then calls `progress(i, timesteps.len())`
/// for step i = 1, 2, ….
///
/// # Shapes
///
/// - `x_t`: `[B, C, H, W]`; `step` takes the denoiser's output and x, returns `[B, C, H, W]`
/// - returns `[B, C, H, W]`
pub(crate) fn over_timesteps(
    denoiser: &impl crate::Denoiser,
    x_t: Tensor<4>,
    timesteps: &[usize],
    mut step: impl FnMut(Tensor<4>, Tensor<4>, usize, Option<usize>) -> Tensor<4>,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let (batch, device) = (x_t.dims()[0], x_t.device());
    let mut x = x_t;
    for (i, &t) in timesteps.iter().enumerate() {
        let prev_t = timesteps.get(i + 1).copied();
        let model_output = denoiser.denoise(x.clone(), timestep_tensor(t, batch, &device));
        x = step(model_output, x, t, prev_t);
        progress(i + 1, timesteps.len());
    }
    x
}
