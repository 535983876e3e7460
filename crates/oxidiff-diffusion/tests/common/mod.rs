//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_diffusion::{Denoiser, GaussianDiffusion};

pub fn device() -> Device {
    Device::flex()
}

/// A `[B, C, H, W]` tensor from row-major values.
pub fn tensor4(values: &[f32], shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The largest element-wise |a − b|.
pub fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Asserts `|actual − expected| ≤ rtol · max(1, max|expected|)` element-wise: a tolerance relative
/// to the tensor's scale, so that elements that cancel to near zero are not held to a tighter
/// bound than the numbers they were computed from.
pub fn assert_close_scaled(actual: &[f32], expected: &[f32], rtol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= rtol * scale,
            "{what}[{i}]: got {a}, expected {e} (tolerance {})",
            rtol * scale
        );
    }
}

/// The ideal denoiser for a data distribution that is a single point `x0`: it knows x₀ exactly
/// and answers in the diffusion's parameterisation.
pub struct PointDenoiser<'a> {
    pub diffusion: &'a GaussianDiffusion,
    pub x0: Tensor<4>,
}

impl Denoiser for PointDenoiser<'_> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t: Vec<usize> = to_vec(t).iter().map(|&v| v as usize).collect();
        let x0 = self.x0.clone();
        let eps = self.diffusion.predict_noise_from_start(x_t, x0.clone(), &t);
        self.diffusion.training_target(x0, eps, &t)
    }
}
