//! The forward process q(x_t | x₀), its posterior q(x_{t−1} | x_t, x₀) and the conversions
//! between the ε, x₀ and v parameterisations.

use burn::tensor::{Device, Tensor, TensorData};

use crate::{DiffusionConfig, DiffusionError, NoiseSchedule, Prediction};

/// A Gaussian diffusion process: a validated config and the schedule computed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianDiffusion {
    /// The config this process was built from.
    pub config: DiffusionConfig,
    /// β_t and its derived coefficients.
    pub schedule: NoiseSchedule,
}

/// Gathers `coefs[t[i]]` for each batch item into an f32 tensor that broadcasts over an image.
///
/// # Shapes
///
/// - `t`: `[B]` (a slice of timestep indices)
/// - returns `[B, 1, 1, 1]`
///
/// # Panics
///
/// If any `t[i] >= coefs.len()`.
pub fn extract(coefs: &[f64], t: &[usize], device: &Device) -> Tensor<4> {
    extract_with(t, device, |ti| coefs[ti])
}

/// Like [`extract`], with the per-timestep coefficient computed by `coef` (in f64, rounded to
/// f32 once).
///
/// # Shapes
///
/// - `t`: `[B]`
/// - returns `[B, 1, 1, 1]`
pub(crate) fn extract_with(t: &[usize], device: &Device, coef: impl Fn(usize) -> f64) -> Tensor<4> {
    let values: Vec<f32> = t.iter().map(|&ti| coef(ti) as f32).collect();
    Tensor::<1>::from_data(TensorData::new(values, [t.len()]), device).reshape([t.len(), 1, 1, 1])
}

/// Panics with a clear message when the timestep slice does not match the batch.
fn check_batch(x: &Tensor<4>, t: &[usize]) {
    let batch = x.dims()[0];
    assert_eq!(
        t.len(),
        batch,
        "one timestep per batch item expected: got {} timesteps for a batch of {batch}",
        t.len()
    );
}

impl GaussianDiffusion {
    /// Validates `config` and computes its schedule.
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidConfig`] when the config does not validate.
    pub fn new(config: DiffusionConfig) -> Result<Self, DiffusionError> {
        let schedule = NoiseSchedule::new(&config)?;
        Ok(Self { config, schedule })
    }

    /// Number of training timesteps T.
    pub fn num_timesteps(&self) -> usize {
        self.schedule.num_timesteps()
    }

    /// Draws x_t ~ q(x_t | x₀) given the noise.
    ///
    /// # Shapes
    ///
    /// - `x_start`, `noise`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn q_sample(&self, x_start: Tensor<4>, t: &[usize], noise: Tensor<4>) -> Tensor<4> {
        check_batch(&x_start, t);
        let device = x_start.device();
        let s = &self.schedule;
        // Ho et al. 2020, eq. 4: x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
        extract(&s.sqrt_alphas_cumprod, t, &device) * x_start
            + extract(&s.sqrt_one_minus_alphas_cumprod, t, &device) * noise
    }

    /// The velocity target v.
    ///
    /// # Shapes
    ///
    /// - `x_start`, `noise`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn velocity(&self, x_start: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        check_batch(&x_start, t);
        let device = x_start.device();
        let s = &self.schedule;
        // Salimans & Ho 2022, §4: v = α_t ε − σ_t x₀ with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t)
        extract(&s.sqrt_alphas_cumprod, t, &device) * noise
            - extract(&s.sqrt_one_minus_alphas_cumprod, t, &device) * x_start
    }

    /// What the network should output for (x₀, ε, t) under `config.prediction`.
    ///
    /// # Shapes
    ///
    /// - `x_start`, `noise`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn training_target(&self, x_start: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        check_batch(&x_start, t);
        match self.config.prediction {
            Prediction::Epsilon => noise,
            Prediction::Sample => x_start,
            Prediction::Velocity => self.velocity(x_start, noise, t),
        }
    }

    /// Turns a raw model output (in the `config.prediction` parameterisation) into the pair
    /// (x̂₀, ε̂) consistent with x_t. x̂₀ is not clipped here.
    ///
    /// # Shapes
    ///
    /// - `model_output`, `x_t`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns (`[B, C, H, W]`, `[B, C, H, W]`)
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn predict_start_and_noise(
        &self,
        model_output: Tensor<4>,
        x_t: Tensor<4>,
        t: &[usize],
    ) -> (Tensor<4>, Tensor<4>) {
        check_batch(&x_t, t);
        let device = x_t.device();
        let s = &self.schedule;
        match self.config.prediction {
            Prediction::Epsilon => {
                let x_start = self.predict_start_from_noise(x_t, model_output.clone(), t);
                (x_start, model_output)
            }
            Prediction::Sample => {
                let noise = self.predict_noise_from_start(x_t, model_output.clone(), t);
                (model_output, noise)
            }
            Prediction::Velocity => {
                let sqrt_ac = extract(&s.sqrt_alphas_cumprod, t, &device);
                let sqrt_1m_ac = extract(&s.sqrt_one_minus_alphas_cumprod, t, &device);
                // Salimans & Ho 2022, §4: x₀ = α_t x_t − σ_t v
                let x_start =
                    sqrt_ac.clone() * x_t.clone() - sqrt_1m_ac.clone() * model_output.clone();
                // Salimans & Ho 2022, §4: ε = σ_t x_t + α_t v
                let noise = sqrt_1m_ac * x_t + sqrt_ac * model_output;
                (x_start, noise)
            }
        }
    }

    /// x̂₀ from x_t and ε̂; infinite where ᾱ_t = 0 (validation keeps ε-prediction away from a
    /// zero terminal SNR).
    ///
    /// # Shapes
    ///
    /// - `x_t`, `noise`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn predict_start_from_noise(
        &self,
        x_t: Tensor<4>,
        noise: Tensor<4>,
        t: &[usize],
    ) -> Tensor<4> {
        check_batch(&x_t, t);
        let device = x_t.device();
        let s = &self.schedule;
        // Ho et al. 2020, eq. 4 solved for x₀: x₀ = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε
        extract(&s.sqrt_recip_alphas_cumprod, t, &device) * x_t
            - extract(&s.sqrt_recipm1_alphas_cumprod, t, &device) * noise
    }

    /// ε̂ from x_t and x̂₀; finite for every t, including ᾱ_t = 0 (it divides by √(1 − ᾱ_t)).
    ///
    /// # Shapes
    ///
    /// - `x_t`, `x_start`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn predict_noise_from_start(
        &self,
        x_t: Tensor<4>,
        x_start: Tensor<4>,
        t: &[usize],
    ) -> Tensor<4> {
        check_batch(&x_t, t);
        let device = x_t.device();
        let s = &self.schedule;
        // Ho et al. 2020, eq. 4 solved for ε: ε = (x_t − √ᾱ_t x₀) / √(1 − ᾱ_t)
        (x_t - extract(&s.sqrt_alphas_cumprod, t, &device) * x_start)
            * extract_with(t, &device, |ti| 1.0 / s.sqrt_one_minus_alphas_cumprod[ti])
    }

    /// Mean of the posterior q(x_{t−1} | x_t, x₀).
    ///
    /// # Shapes
    ///
    /// - `x_start`, `x_t`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[B, C, H, W]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn q_posterior_mean(&self, x_start: Tensor<4>, x_t: Tensor<4>, t: &[usize]) -> Tensor<4> {
        check_batch(&x_t, t);
        let device = x_t.device();
        let s = &self.schedule;
        // Ho et al. 2020, eq. 7: μ̃_t(x_t, x₀) = coef1 · x₀ + coef2 · x_t
        extract(&s.posterior_mean_coef1, t, &device) * x_start
            + extract(&s.posterior_mean_coef2, t, &device) * x_t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_gathers_per_batch_item() {
        let coefs = [0.5, 0.25, 0.125];
        let x = extract(&coefs, &[2, 0], &Device::flex());
        assert_eq!(x.dims(), [2, 1, 1, 1]);
        assert_eq!(x.into_data().try_to_vec::<f32>().unwrap(), vec![0.125, 0.5]);
    }

    #[test]
    #[should_panic(expected = "one timestep per batch item")]
    fn mismatched_timesteps_panic_clearly() {
        let d = GaussianDiffusion::new(DiffusionConfig::default()).unwrap();
        let x = Tensor::<4>::zeros([2, 1, 1, 1], &Device::flex());
        let _ = d.q_sample(x.clone(), &[0], x);
    }
}
