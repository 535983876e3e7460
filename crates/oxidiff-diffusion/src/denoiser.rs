//! The one interface between samplers and networks.

use burn::tensor::Tensor;

/// What every sampler calls: a network (or anything else) that maps a noisy batch to its raw
/// output in the config's [`crate::Prediction`] parameterisation (ε, x₀ or v).
///
/// `Sync` because samplers run on the CPU kernels' thread pool, not on the caller's thread (see
/// `oxidiff_models::cpu::on_pool`); a denoiser that records its calls needs a `Mutex`, not a
/// `RefCell`.
pub trait Denoiser: Sync {
    /// Raw model output for `x_t` at timesteps `t`. `t` holds the original, un-respaced
    /// training timestep index per batch item, as f32 (a DDIM sampler with 50 steps still passes
    /// e.g. 980, not 49).
    ///
    /// # Shapes
    ///
    /// - `x_t`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4>;
}

impl<D: Denoiser + ?Sized> Denoiser for &D {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        (**self).denoise(x_t, t)
    }
}

impl<D: Denoiser + ?Sized> Denoiser for Box<D> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        (**self).denoise(x_t, t)
    }
}
