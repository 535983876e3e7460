//! The training loss: MSE in the parameterisation the network predicts (optionally weighted per
//! timestep by min-SNR-γ), the variational bound, or the hybrid of both.

use burn::tensor::{Tensor, TensorData};

use crate::{GaussianDiffusion, LossKind, Prediction};

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

    /// The training loss of `config.loss` (see [`Self::training_losses`]), averaged over the
    /// batch, every sample weighted 1.
    ///
    /// # Shapes
    ///
    /// - `model_output`: `[B, C·factor, H, W]` (factor 2 with a learned variance)
    /// - `x_start`, `noise`: `[B, C, H, W]`
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
        self.training_losses(model_output, x_start, noise, t, None)
            .loss
    }

    /// The training loss of `config.loss` per sample and its weighted batch mean:
    ///
    /// - `simple`: the MSE between the mean part of the output and
    ///   [`training_target`](Self::training_target) over C, H, W, times
    ///   [`loss_weights`](Self::loss_weights);
    /// - `hybrid`: that plus λ·T·L_t, the bound's term at t in bits per dimension computed with
    ///   the mean part detached, so the bound trains only the variance (Nichol & Dhariwal 2021,
    ///   §3.1). T·L_t is the one-sample estimate of L_vlb = Σ_t L_t that λ multiplies in the
    ///   paper; at λ = 0.001, T = 1000 it is L_t at weight 1, as improved-diffusion's
    ///   `rescaled_mse`;
    /// - `vlb`: L_t alone (an estimate of L_vlb / T, in bits per dimension), through mean and
    ///   variance.
    ///
    /// `importance` (the weights of [`crate::timesteps::draw_timesteps`]) multiplies each
    /// sample's loss in the mean; [`TrainingLoss::per_sample`] stays unweighted for the
    /// importance sampler's history.
    ///
    /// # Shapes
    ///
    /// - `model_output`: `[B, C·factor, H, W]`
    /// - `x_start`, `noise`: `[B, C, H, W]`
    /// - `t`, `importance`: `[B]`
    ///
    /// # Panics
    ///
    /// If `t.len() != B` or a timestep is `>= T`.
    pub fn training_losses(
        &self,
        model_output: Tensor<4>,
        x_start: Tensor<4>,
        noise: Tensor<4>,
        t: &[usize],
        importance: Option<&[f64]>,
    ) -> TrainingLoss {
        let batch = model_output.dims()[0];
        let device = model_output.device();
        let per_batch = |values: Vec<f64>| {
            let values: Vec<f32> = values.iter().map(|&w| w as f32).collect();
            Tensor::<1>::from_data(TensorData::new(values, [batch]), &device)
        };
        let (mean_part, v) = self.split_output(model_output);
        let mse = || {
            let target = self.training_target(x_start.clone(), noise.clone(), t);
            // Ho et al. 2020, eq. 14: L_simple = E ‖target − model(x_t, t)‖²
            let per_sample: Tensor<1> = (mean_part.clone() - target)
                .square()
                .mean_dims(&[1, 2, 3])
                .reshape([batch]);
            per_sample * per_batch(self.loss_weights(t))
        };
        let vlb = |mean_part: Tensor<4>| {
            let x_t = self.q_sample(x_start.clone(), t, noise.clone());
            let step = self.reverse_step(mean_part, v.clone(), x_t.clone(), t, false);
            self.vlb_terms(&step, x_start.clone(), x_t, t)
        };
        let per_sample = match self.config.loss {
            LossKind::Simple => mse(),
            LossKind::Hybrid => {
                let scale = self.config.vlb_weight * self.num_timesteps() as f64;
                mse() + vlb(mean_part.clone().detach()).mul_scalar(scale as f32)
            }
            LossKind::Vlb => vlb(mean_part.clone()),
        };
        let loss = match importance {
            Some(w) => (per_sample.clone() * per_batch(w.to_vec())).mean(),
            None => per_sample.clone().mean(),
        };
        TrainingLoss {
            loss,
            per_sample: per_sample.detach(),
        }
    }
}

/// A batch's training loss.
#[derive(Debug, Clone)]
pub struct TrainingLoss {
    /// `[1]`: the importance-weighted batch mean, to differentiate.
    pub loss: Tensor<1>,
    /// `[B]`: each sample's loss before importance weighting, detached.
    pub per_sample: Tensor<1>,
}
