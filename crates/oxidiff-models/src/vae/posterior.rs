//! The autoencoder's posterior: a Gaussian with diagonal covariance per latent element
//! (Kingma & Welling 2014; latent-diffusion's and diffusers' `DiagonalGaussianDistribution`).

use burn::tensor::Tensor;

/// N(mean, exp(logvar)) per latent element.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// `[B, L, s, s]`
    pub mean: Tensor<4>,
    /// `[B, L, s, s]`, clamped to [−30, 20] as diffusers does, so exp() stays finite.
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// Splits the encoder's `[B, 2L, s, s]` output into mean and log-variance.
    pub fn new(moments: Tensor<4>) -> Self {
        let [_, two_l, _, _] = moments.dims();
        let l = two_l / 2;
        Self {
            mean: moments.clone().narrow(1, 0, l),
            logvar: moments.narrow(1, l, l).clamp(-30.0, 20.0),
        }
    }

    /// σ = exp(logvar / 2).
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// z = mean + σ·ε (the reparameterisation trick) for standard normal `noise` of the mean's
    /// shape.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.std() * noise
    }

    /// The mean: what a diffusion model trains on when the latents are not sampled.
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }

    /// KL(q ‖ N(0, I)) per image, summed over the latent elements: ½ Σ (μ² + σ² − 1 − log σ²).
    ///
    /// # Shapes
    /// - output: `[B]`
    pub fn kl(&self) -> Tensor<1> {
        let [b, _, _, _] = self.mean.dims();
        let terms = self.mean.clone().powi_scalar(2) + self.logvar.clone().exp()
            - 1.0
            - self.logvar.clone();
        (terms * 0.5)
            .reshape([b as i32, -1])
            .sum_dim(1)
            .reshape([b])
    }
}
