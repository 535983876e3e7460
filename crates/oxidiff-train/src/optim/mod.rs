//! Optimiser construction, the learning-rate schedule and global-norm gradient clipping.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::tensor::Tensor;

mod fused_adamw;
pub use fused_adamw::FusedAdamW;

use crate::config::{LrSchedule, OptimizerKind, TrainConfig};

/// Builds the configured optimiser. Clipping is not delegated to burn: its `Norm` clipping works
/// per parameter tensor, while diffusion training clips the global norm of all gradients.
pub fn build_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(config.beta1 as f32)
            .with_beta_2(config.beta2 as f32)
            .with_epsilon(config.eps as f32)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::AdamW => FusedAdamW::new(
            config.beta1 as f32,
            config.beta2 as f32,
            config.eps as f32,
            config.weight_decay as f32,
        )
        .into(),
        OptimizerKind::RmsProp => RmsPropConfig::new()
            .with_epsilon(config.eps as f32)
            .with_momentum(config.momentum as f32)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((config.momentum > 0.0).then(|| {
                // PyTorch's defaults: no dampening.
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(config.nesterov)
            }))
            .with_weight_decay(decay)
            .init(),
    }
}

/// The learning rate at (0-based) optimiser step `step`: linear warm-up from 0, then the
/// configured decay to `min_lr` at the last step.
pub fn learning_rate(config: &TrainConfig, step: u64) -> f64 {
    let warmup = config.warmup_steps.min(config.steps);
    if step < warmup {
        return config.lr * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = config.steps.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    let span = config.lr - config.min_lr;
    match config.lr_schedule {
        LrSchedule::Constant => config.lr,
        // SGDR (Loshchilov & Hutter 2017, eq. 5) without restarts.
        LrSchedule::Cosine => {
            config.min_lr + 0.5 * span * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        LrSchedule::Linear => config.lr - span * progress,
    }
}

/// Sums the squared gradient entries of every parameter into one scalar tensor.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let sum = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
}

/// Multiplies every gradient of the module it walks by one factor; the module itself is
/// returned unchanged.
pub struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<'a> ScaleGrads<'a> {
    pub fn new(grads: &'a mut GradientsParams, factor: f64) -> Self {
        Self { grads, factor }
    }
}

impl ModuleMapper for ScaleGrads<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, grad * self.factor);
        }
        param
    }
}

/// The global L2 norm of all gradients of `module`.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    visitor
        .total
        .map(|t| t.into_scalar::<f64>().sqrt())
        .unwrap_or(0.0)
}

/// Scales all gradients so their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`); returns the norm before clipping. `max_norm = 0` measures only.
pub fn clip_grad_norm<M: Module + Clone>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_grad_norm(module, grads);
    if max_norm > 0.0 && norm > max_norm {
        let mut scaler = ScaleGrads::new(grads, max_norm / (norm + 1e-6));
        // The mapper only touches the gradients; the module it walks is a throwaway clone.
        let _ = module.clone().map(&mut scaler);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: LrSchedule) -> TrainConfig {
        TrainConfig {
            steps: 110,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 10,
            lr_schedule: schedule,
            ..Default::default()
        }
    }

    #[test]
    fn warmup_then_decay_to_min_lr() {
        for schedule in [LrSchedule::Cosine, LrSchedule::Linear] {
            let c = config(schedule);
            assert!(
                (learning_rate(&c, 0) - 1e-4).abs() < 1e-12,
                "first warm-up step is lr/10"
            );
            assert!(
                (learning_rate(&c, 9) - 1e-3).abs() < 1e-12,
                "warm-up ends at lr"
            );
            assert!(
                (learning_rate(&c, 10) - 1e-3).abs() < 1e-12,
                "decay starts at lr"
            );
            let mid = learning_rate(&c, 60);
            assert!(
                (mid - (1e-3 + 1e-5) / 2.0).abs() < 1e-9,
                "{schedule:?} halfway: {mid}"
            );
            assert!(
                (learning_rate(&c, 110) - 1e-5).abs() < 1e-12,
                "ends at min_lr"
            );
            let lrs: Vec<f64> = (10..110).map(|s| learning_rate(&c, s)).collect();
            assert!(
                lrs.windows(2).all(|w| w[1] <= w[0]),
                "{schedule:?} decays monotonically"
            );
        }
        let c = config(LrSchedule::Constant);
        assert_eq!(learning_rate(&c, 50), 1e-3);
        assert_eq!(learning_rate(&c, 109), 1e-3);
    }

    #[test]
    fn cosine_quarter_point() {
        let c = config(LrSchedule::Cosine);
        // progress 1/4: min + (lr − min)·(1 + cos(π/4))/2
        let expected = 1e-5 + (1e-3 - 1e-5) * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0;
        assert!((learning_rate(&c, 35) - expected).abs() < 1e-12);
    }
}
