//! Classifier-free guidance (Ho & Salimans 2022): one conditional network, trained with its
//! condition dropped now and then, asked twice per step — with the condition and without it
//! (the "no class" label; the empty prompt's text states) — and the two answers extrapolated
//! away from the unconditional one. Both answers come from one batched call.

use burn::tensor::{Int, Tensor, TensorData};

use crate::{Denoiser, GaussianDiffusion};

/// A network that can be told the class of what it denoises.
pub trait ConditionalDenoiser: Sync {
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
        guide(self.diffusion, both, batch, self.scale)
    }
}

/// A network that attends to a context: the text encoder's hidden states of a prompt.
pub trait ContextDenoiser: Sync {
    /// Raw output for `x_t` at timesteps `t` given each item's `context`.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, `t`: `[B]`, `context`: `[B, L, D]`
    /// - returns the network's output, `[B, C·factor, H, W]`
    fn denoise_with_context(&self, x_t: Tensor<4>, t: Tensor<1>, context: Tensor<3>) -> Tensor<4>;
}

/// A [`Denoiser`] that steers a text-conditioned network toward a prompt: the conditional
/// answer with `cond` (the prompt's text states), the unconditional one with `uncond` (the
/// empty prompt's, or a negative prompt's), guided as [`ClassifierFreeGuidance`] guides.
pub struct PromptGuidance<'a, M> {
    pub model: &'a M,
    pub diffusion: &'a GaussianDiffusion,
    /// `[B, L, D]`, or `[1, L, D]` for one prompt shared by the whole batch.
    pub cond: Tensor<3>,
    /// `[B, L, D]` or `[1, L, D]`, as `cond`.
    pub uncond: Tensor<3>,
    pub scale: f64,
}

impl<M: ContextDenoiser> Denoiser for PromptGuidance<'_, M> {
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, `t`: `[B]`; returns `[B, C·factor, H, W]`
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let batch = x_t.dims()[0];
        let per_item = |context: &Tensor<3>| {
            let [n, l, d] = context.dims();
            if n == batch {
                context.clone()
            } else {
                context.clone().expand([batch, l, d])
            }
        };
        if self.scale == 1.0 {
            return self
                .model
                .denoise_with_context(x_t, t, per_item(&self.cond));
        }
        let both = self.model.denoise_with_context(
            Tensor::cat(vec![x_t.clone(), x_t], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Tensor::cat(vec![per_item(&self.cond), per_item(&self.uncond)], 0),
        );
        guide(self.diffusion, both, batch, self.scale)
    }
}

/// The guided output from one call's two halves (`[2B, …]`: conditional, then unconditional).
fn guide(diffusion: &GaussianDiffusion, both: Tensor<4>, batch: usize, scale: f64) -> Tensor<4> {
    let cond = both.clone().narrow(0, 0, batch);
    let uncond = both.narrow(0, batch, batch);
    let (cond_mean, variance) = diffusion.split_output(cond);
    let (uncond_mean, _) = diffusion.split_output(uncond);
    // Ho & Salimans 2022, eq. 6: ε̃ = (1 + w') ε(c) − w' ε(∅) with w = 1 + w'
    let guided = uncond_mean.clone() + (cond_mean - uncond_mean).mul_scalar(scale as f32);
    match variance {
        Some(v) => Tensor::cat(vec![guided, v], 1),
        None => guided,
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

    /// Answers the mean of each item's context everywhere.
    struct ByContext;

    impl ContextDenoiser for ByContext {
        fn denoise_with_context(
            &self,
            x_t: Tensor<4>,
            _t: Tensor<1>,
            context: Tensor<3>,
        ) -> Tensor<4> {
            let [b, c, h, w] = x_t.dims();
            assert_eq!(context.dims()[0], b, "one context per item");
            context
                .mean_dim(2)
                .mean_dim(1)
                .reshape([b, 1, 1, 1])
                .expand([b, c, h, w])
        }
    }

    #[test]
    fn prompt_guidance_extrapolates_from_the_unconditional_context() {
        let device = Device::flex();
        let fixed = GaussianDiffusion::new(DiffusionConfig::default()).unwrap();
        let context = |v: f32| Tensor::<3>::full([1, 2, 3], v, &device);
        let guided = |scale: f64| PromptGuidance {
            model: &ByContext,
            diffusion: &fixed,
            cond: context(3.0),
            uncond: context(7.0),
            scale,
        };
        let x = Tensor::<4>::zeros([2, 1, 1, 1], &device);
        let t = Tensor::<1>::zeros([2], &device);
        assert_eq!(
            values(guided(7.5).denoise(x.clone(), t.clone())),
            [-23.0, -23.0]
        );
        assert_eq!(
            values(guided(1.0).denoise(x.clone(), t.clone())),
            [3.0, 3.0]
        );
        assert_eq!(values(guided(0.0).denoise(x, t)), [7.0, 7.0]);
    }
}
