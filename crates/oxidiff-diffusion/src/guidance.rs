//! Classifier-free guidance (Ho & Salimans 2022): one class-conditional network, trained with
//! its labels dropped now and then, asked twice per step — with the class and with the "no
//! class" label — and the two answers extrapolated away from the unconditional one.

use burn::tensor::{Int, Tensor, TensorData};

use crate::{Denoiser, GaussianDiffusion};

/// A network that can be told the class of what it denoises.
pub trait ConditionalDenoiser {
    /// Raw output for `x_t` at timesteps `t` given `labels` (one per batch item; the network's
    /// "no class" label for the unconditional answer).
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, `t`: `[B]`, `labels`: `[B]`
    /// - returns the network's output, `[B, C·factor, H, W]`
    fn denoise_with_labels(
        &self,
        x_t: Tensor<4>,
        t: Tensor<1>,
        labels: Tensor<1, Int>,
    ) -> Tensor<4>;
}

/// A [`Denoiser`] that steers a conditional network toward `class` with guidance scale `scale`:
/// ε̃ = ε(∅) + w·(ε(c) − ε(∅)) on the mean part of the output (w = 1: the plain conditional
/// model, 0: unconditional). A learned variance is taken from the conditional answer, as GLIDE
/// does: the extrapolation is meant for the mean.
pub struct ClassifierFreeGuidance<'a, M> {
    pub model: &'a M,
    pub diffusion: &'a GaussianDiffusion,
    /// The class every image of the batch is drawn from.
    pub class: usize,
    /// The network's "no class" label (the one its training dropped labels to).
    pub null_label: usize,
    pub scale: f64,
}

impl<M: ConditionalDenoiser> Denoiser for ClassifierFreeGuidance<'_, M> {
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, `t`: `[B]`; returns `[B, C·factor, H, W]`
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let batch = x_t.dims()[0];
        let device = x_t.device();
        let labels = |label: usize| {
            Tensor::<1, Int>::from_data(
                TensorData::new(vec![label as i64; batch], [batch]),
                &device,
            )
        };
        if self.scale == 1.0 {
            return self.model.denoise_with_labels(x_t, t, labels(self.class));
        }
        // Both answers in one call: the conditional half first, then the unconditional half.
        let both = self.model.denoise_with_labels(
            Tensor::cat(vec![x_t.clone(), x_t], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Tensor::cat(vec![labels(self.class), labels(self.null_label)], 0),
        );
        let cond = both.clone().narrow(0, 0, batch);
        let uncond = both.narrow(0, batch, batch);
        let (cond_mean, variance) = self.diffusion.split_output(cond);
        let (uncond_mean, _) = self.diffusion.split_output(uncond);
        // Ho & Salimans 2022, eq. 6: ε̃ = (1 + w') ε(c) − w' ε(∅) with w = 1 + w'
        let guided = uncond_mean.clone() + (cond_mean - uncond_mean).mul_scalar(self.scale as f32);
        match variance {
            Some(v) => Tensor::cat(vec![guided, v], 1),
            None => guided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiffusionConfig, LossKind, VarianceType};
    use burn::tensor::Device;

    /// Answers label + 10·channel everywhere (so each half and each channel is recognisable).
    struct ByLabel;

    impl ConditionalDenoiser for ByLabel {
        fn denoise_with_labels(
            &self,
            x_t: Tensor<4>,
            _t: Tensor<1>,
            labels: Tensor<1, Int>,
        ) -> Tensor<4> {
            let [b, c, h, w] = x_t.dims();
            let labels: Vec<i64> = labels.into_data().convert::<i64>().try_to_vec().unwrap();
            let values: Vec<f32> = (0..b * c * h * w)
                .map(|i| labels[i / (c * h * w)] as f32 + 10.0 * ((i / (h * w)) % c) as f32)
                .collect();
            Tensor::from_data(TensorData::new(values, [b, c, h, w]), &x_t.device())
        }
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn guidance_extrapolates_the_mean_and_keeps_the_conditional_variance() {
        let device = Device::flex();
        let fixed = GaussianDiffusion::new(DiffusionConfig::default()).unwrap();
        let x = Tensor::<4>::zeros([2, 1, 1, 1], &device);
        let t = Tensor::<1>::zeros([2], &device);
        fn guided(d: &GaussianDiffusion, scale: f64) -> ClassifierFreeGuidance<'_, ByLabel> {
            ClassifierFreeGuidance {
                model: &ByLabel,
                diffusion: d,
                class: 3,
                null_label: 7,
                scale,
            }
        }
        // ε(∅) + w(ε(c) − ε(∅)) = 7 + w·(3 − 7)
        assert_eq!(
            values(guided(&fixed, 2.0).denoise(x.clone(), t.clone())),
            [-1.0, -1.0]
        );
        assert_eq!(
            values(guided(&fixed, 1.0).denoise(x.clone(), t.clone())),
            [3.0, 3.0]
        );
        assert_eq!(
            values(guided(&fixed, 0.0).denoise(x.clone(), t.clone())),
            [7.0, 7.0]
        );

        let learned = GaussianDiffusion::new(DiffusionConfig {
            variance_type: VarianceType::Learned,
            loss: LossKind::Hybrid,
            ..Default::default()
        })
        .unwrap();
        let x2 = Tensor::<4>::zeros([1, 2, 1, 1], &device);
        let out = guided(&learned, 2.0).denoise(x2, Tensor::<1>::zeros([1], &device));
        // Mean channel guided (7 + 2·(3 − 7)); variance channel the conditional one (3 + 10).
        assert_eq!(values(out), [-1.0, 13.0]);
    }
}
