//! Random draws for training and sampling, made on the host so that a seeded run gives the same
//! numbers on every backend.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::StandardNormal;

/// A tensor of independent N(0, 1) values drawn from `rng` in row-major order.
///
/// # Shapes
///
/// - returns `shape` = `[B, C, H, W]`
pub fn randn(rng: &mut impl Rng, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Training noise ε: standard normal plus, when `offset_noise > 0`, a per-(sample, channel)
/// constant `offset_noise` · N(0, 1) (Guttenberg 2023), which lets the model learn to shift an
/// image's mean brightness. With `offset_noise == 0` it draws exactly what [`randn`] draws.
///
/// # Shapes
///
/// - returns `shape` = `[B, C, H, W]`
pub fn training_noise(
    rng: &mut impl Rng,
    shape: [usize; 4],
    offset_noise: f64,
    device: &Device,
) -> Tensor<4> {
    let noise = randn(rng, shape, device);
    if offset_noise == 0.0 {
        return noise;
    }
    let [b, c, _, _] = shape;
    // Guttenberg 2023: ε = N(0, I) + offset · N(0, 1) shared over H × W
    noise + randn(rng, [b, c, 1, 1], device).mul_scalar(offset_noise as f32)
}

/// `batch` timesteps drawn uniformly from 0..`num_timesteps` (Ho et al. 2020, Algorithm 1).
///
/// # Panics
///
/// If `num_timesteps == 0`.
pub fn sample_timesteps(rng: &mut impl Rng, batch: usize, num_timesteps: usize) -> Vec<usize> {
    assert!(num_timesteps > 0, "num_timesteps must be at least 1");
    (0..batch)
        .map(|_| rng.random_range(0..num_timesteps))
        .collect()
}
