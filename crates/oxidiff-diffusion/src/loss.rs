//! The training loss: MSE in the parameterisation the network predicts, optionally weighted per
//! timestep by min-SNR-γ.

use burn::tensor::{Tensor, TensorData};

use crate::{GaussianDiffusion, Prediction};

impl GaussianDiffusion {
    /// Per-sample loss weights w(t) for the timesteps `t`.
    ///
    /// Without `min_snr_gamma` every weight is 1 (the "simple" loss of Ho et al. 2020, eq. 14).
    ///
    /// With min-SNR-γ (Hang et al. 2023), the loss measured in x₀-space is weighted by
    /// min(SNR(t), γ). The network is trained in its own space, so the weight is converted with
    /// the factor by which that space's squared error exceeds the x₀ error.
    ///
    /// # Derivation
    ///
    /// Write a = √ᾱ_t, s = √(1 − ᾱ_t), so a² + s² = 1, SNR = a²/s² and x_t = a x₀ + s ε.
    ///
    /// - **ε-space.** x̂₀ = (x_t − s ε̂)/a, so x̂₀ − x₀ = −(s/a)(ε̂ − ε) and
    ///   ‖ε̂ − ε‖² = (a²/s²) ‖x̂₀ − x₀‖² = SNR · ‖x̂₀ − x₀‖².
    ///   Weight: w_ε · SNR = min(SNR, γ), so **w_ε = min(SNR, γ) / SNR**.
    /// - **x₀-space.** The error is already ‖x̂₀ − x₀‖², so **w_x₀ = min(SNR, γ)**.
    /// - **v-space.** v = a ε − s x₀. Then a x_t − s v = a² x₀ + a s ε − a s ε + s² x₀ = x₀, so
    ///   x̂₀ = a x_t − s v̂ and x̂₀ − x₀ = −s (v̂ − v). Hence
    ///   ‖v̂ − v‖² = ‖x̂₀ − x₀‖² / s² = ‖x̂₀ − x₀‖² · (a² + s²)/s² = (SNR + 1) · ‖x̂₀ − x₀‖².
    ///   Weight: w_v · (SNR + 1) = min(SNR, γ), so **w_v = min(SNR, γ) / (SNR + 1)**.
    ///   (Dividing by SNR instead, as some trainers do, is the ε-space factor and over-weights
    ///   the noisy end.)
    ///
    /// At a zero terminal SNR (ᾱ = 0): w_x₀ = 0 and w_v = 0/1 = 0, no NaN. w_ε would be 0/0;
    /// its limit SNR → 0 is 1, which is what it returns (validation forbids ε-prediction with a
    /// zero terminal SNR anyway).
    ///
    /// # Panics
    ///
    /// If a timestep is `>= T`.
    pub fn loss_weights(&self, t: &[usize]) -> Vec<f64> {
        let Some(gamma) = self.config.min_snr_gamma else {
            return vec![1.0; t.len()];
        };
        t.iter()
            .map(|&ti| {
                let snr = self.schedule.snr(ti);
                // Hang et al. 2023, §3.4: w_t = min(SNR(t), γ) in x₀-space, converted above
                let clipped = snr.min(gamma);
                match self.config.prediction {
                    Prediction::Epsilon if snr == 0.0 => 1.0,
                    Prediction::Epsilon => clipped / snr,
                    Prediction::Sample => clipped,
                    Prediction::Velocity => clipped / (snr + 1.0),
                }
            })
            .collect()
    }

    /// The training loss: per-sample mean squared error between `model_output` and
    /// [`training_target`](Self::training_target) over C, H, W, times
    /// [`loss_weights`](Self::loss_weights), averaged over the batch. Differentiable with respect
    /// to `model_output`.
    ///
    /// # Shapes
    ///
    /// - `model_output`, `x_start`, `noise`: `[B, C, H, W]`
    /// - `t`: `[B]`
    /// - returns `[1]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn training_loss(
        &self,
        model_output: Tensor<4>,
        x_start: Tensor<4>,
        noise: Tensor<4>,
        t: &[usize],
    ) -> Tensor<1> {
        let batch = model_output.dims()[0];
        let device = model_output.device();
        let target = self.training_target(x_start, noise, t);
        // Ho et al. 2020, eq. 14: L_simple = E ‖target − model(x_t, t)‖²
        let per_sample: Tensor<1> = (model_output - target)
            .square()
            .mean_dims(&[1, 2, 3])
            .reshape([batch]);
        let weights: Vec<f32> = self.loss_weights(t).iter().map(|&w| w as f32).collect();
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [batch]), &device);
        (per_sample * weights).mean()
    }
}
