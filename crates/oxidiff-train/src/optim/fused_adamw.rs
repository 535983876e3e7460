//! AdamW as one pass over each parameter on the `flex` CPU backend.
//!
//! Why: burn's `AdamW` updates a parameter with a dozen tensor operations, each a pass over the
//! tensor into a new buffer on the calling thread; on the `latent-text` UNet that was 41–44 ms
//! of a 660–700 ms training step and the largest serial stretch left (bench/NOTES.md,
//! 2026-12-03). Here the parameter and its moments are updated in place, in one pass split over
//! the thread pool. The state is burn's own [`AdamWState`], so optimiser checkpoints are the
//! same either way; on another backend, or another float type, burn's `AdamW` takes the step.

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// AdamW (Loshchilov & Hutter 2019, algorithm 2) with burn's conventions: bias-corrected
/// moments, ε added to √v̂, decoupled weight decay θ ← θ·(1 − lr·λ) before the step.
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// burn's implementation of the same update, for tensors the fused pass does not take.
    fallback: AdamW,
}

impl FusedAdamW {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let fallback = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            fallback,
        }
    }

    /// The per-step scalars at 1-based step `time`, computed as burn's `AdamW` computes them.
    fn coefficients(&self, lr: f64, time: usize) -> Coefficients {
        let time = time as i32;
        Coefficients {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            decay: (1.0 - lr * f64::from(self.weight_decay)) as f32,
            lr: lr as f32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Coefficients {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// 1 − β₁ᵗ and 1 − β₂ᵗ.
    correction_1: f32,
    correction_2: f32,
    /// 1 − lr·λ.
    decay: f32,
    lr: f32,
}

/// One AdamW step over flat buffers, in place: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// θ ← θ(1 − lr·λ) − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
fn update(c: Coefficients, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(
        grad.len() == param.len() && m.len() == param.len() && v.len() == param.len(),
        "fused AdamW: buffers of different lengths"
    );
    let (f1, f2) = (1.0 - c.beta_1, 1.0 - c.beta_2);
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                *m = *m * c.beta_1 + g * f1;
                *v = *v * c.beta_2 + g * g * f2;
                let step = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
                *p = *p * c.decay - step * c.lr;
            }
        });
}

fn on_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Flex(_)) && tensor.dtype() == DType::F32
}

/// The flex tensor behind `tensor` (which [`on_flex_f32`] accepted), made to own exactly its
/// elements in order so that its storage is the tensor.
fn flex_primitive<const D: usize>(tensor: Tensor<D>) -> FlexTensor {
    let Ok(flex) = tensor.try_into_primitive::<Flex>() else {
        unreachable!("on_flex_f32 checked the backend");
    };
    let whole = flex
        .as_slice::<f32>()
        .is_some_and(|s| s.len() == flex.storage::<f32>().len());
    if whole { flex } else { flex.to_contiguous() }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let state_fits = state.as_ref().is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && on_flex_f32(&s.momentum.moment_1)
                && on_flex_f32(&s.momentum.moment_2)
        });
        if !(on_flex_f32(&tensor) && on_flex_f32(&grad) && state_fits) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let (shape, device) = (tensor.shape(), tensor.device());
        let (time, m, v) = match state {
            Some(s) => (s.momentum.time, s.momentum.moment_1, s.momentum.moment_2),
            None => (
                0,
                Tensor::zeros(shape.clone(), &device),
                Tensor::zeros(shape.clone(), &device),
            ),
        };
        let time = time + 1;
        let (mut param, grad) = (flex_primitive(tensor), flex_primitive(grad));
        let (mut m, mut v) = (flex_primitive(m), flex_primitive(v));
        update(
            self.coefficients(lr, time),
            param.storage_mut::<f32>(),
            grad.storage::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
        );
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_primitive::<Flex>(m),
            Tensor::from_primitive::<Flex>(v),
        );
        (
            Tensor::from_primitive::<Flex>(param),
            Some(AdamWState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamWState::new(state.momentum.to_device(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    }

    /// Five steps of the fused update against burn's `AdamW` on the same tensors, with weight
    /// decay, over a tensor larger than one parallel chunk.
    #[test]
    fn matches_burns_adamw_step_for_step() {
        let device = Device::flex();
        let n = 3 * CHUNK + 17;
        let fused = FusedAdamW::new(0.9, 0.999, 1e-8, 0.01);
        let burn = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(0.01)
            .build();
        let start = Tensor::<1>::from_floats(values(n, 1).as_slice(), &device);
        let (mut ours, mut theirs) = (start.clone(), start);
        let (mut our_state, mut their_state) = (None, None);
        for step in 0..5u32 {
            let grad = Tensor::<1>::from_floats(values(n, 7 + step).as_slice(), &device);
            let lr = 1e-3 * f64::from(step + 1);
            (ours, our_state) = fused.step(lr, ours, grad.clone(), our_state);
            (theirs, their_state) = burn.step(lr, theirs, grad, their_state);
        }
        let (ours, theirs) = (ours.into_data(), theirs.into_data());
        let (ours, theirs) = (
            ours.as_slice::<f32>().unwrap(),
            theirs.as_slice::<f32>().unwrap(),
        );
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!((a - b).abs() <= 1e-6, "element {i}: {a} vs {b}");
        }
        let (ours, theirs) = (our_state.unwrap().momentum, their_state.unwrap().momentum);
        assert_eq!(ours.time, theirs.time);
        let (m_a, m_b) = (ours.moment_2.into_data(), theirs.moment_2.into_data());
        let (m_a, m_b) = (
            m_a.as_slice::<f32>().unwrap(),
            m_b.as_slice::<f32>().unwrap(),
        );
        for (a, b) in m_a.iter().zip(m_b) {
            assert!((a - b).abs() <= 1e-9 + 1e-6 * b.abs());
        }
    }

    /// A first step with a shared (cloned) parameter leaves the other handle unchanged: the
    /// in-place update copies shared storage first.
    #[test]
    fn a_shared_parameter_is_not_overwritten() {
        let device = Device::flex();
        let start = Tensor::<1>::from_floats([1.0, -2.0, 3.0], &device);
        let kept = start.clone();
        let grad = Tensor::<1>::from_floats([0.5, 0.5, -0.5], &device);
        let (updated, _) = FusedAdamW::new(0.9, 0.999, 1e-8, 0.0).step(0.1, start, grad, None);
        assert_eq!(
            kept.into_data().as_slice::<f32>().unwrap(),
            &[1.0, -2.0, 3.0]
        );
        let updated = updated.into_data();
        let updated = updated.as_slice::<f32>().unwrap();
        // The first bias-corrected step is lr·sign(g) (up to ε).
        for (u, want) in updated.iter().zip([0.9, -2.1, 3.1]) {
            assert!((u - want).abs() < 1e-5, "{u} vs {want}");
        }
    }
}
