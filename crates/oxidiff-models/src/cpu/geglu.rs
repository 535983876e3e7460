//! The gated GELU of a transformer's feed-forward (Shazeer 2020, GEGLU): `h · gelu(g)` with
//! `[h, g]` the two halves of each row, in one pass with a vectorised erf, and its backward
//! pass; burn's operations on other backends.
//!
//! Why: through burn, the exact GELU is a per-element closure around libm's `erff` plus the
//! narrowing copies and the product, and it took 28% of the `latent-text` UNet's forward pass
//! (perf, bench/NOTES.md). Here each row is read once; the backward pass keeps only the input.
//!
//! Buffers are contiguous row-major f32: `x` is `[R, 2·I]` (hidden units, then gates), the
//! output `[R, I]`.

use std::f32::consts::FRAC_1_SQRT_2;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use rayon::prelude::*;

use super::buffer::zeroed;
use super::math::{erf_approx, exp_approx};
use super::simd::multiversion;
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// Rows per parallel task: one row of the feed-forward is a few hundred values.
const ROWS_PER_TASK: usize = 16;

/// 1/√(2π), the standard normal density's constant.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `h · gelu(g)` over the last axis of `x`, split in half: the exact (erf) GELU, as PyTorch's
/// `F.gelu` and diffusers' `GEGLU`.
///
/// # Shapes
/// - `x`: `[B, N, 2·I]`
/// - output: `[B, N, I]`
pub fn geglu(x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, double] = x.dims();
    let inner = double / 2;
    let out_shape = [batch, tokens, inner];
    match geglu_route(&x) {
        BackendKind::Flex => {
            let Ok(x) = x.try_into_primitive::<Flex>() else {
                unreachable!("geglu_route said the tensor is on flex");
            };
            let out = geglu_forward(inner, &f32_storage(&x).expect("f32 input"));
            Tensor::from_primitive::<Flex>(flex_tensor(out, out_shape))
        }
        BackendKind::AutodiffFlex => forward_autodiff(x, inner),
        BackendKind::Other => {
            let hidden = x.clone().narrow(2, 0, inner);
            hidden * gelu(x.narrow(2, inner, inner))
        }
    }
}

/// Which path [`geglu`] takes: [`BackendKind::Other`] is burn's.
pub fn geglu_route(x: &Tensor<3>) -> BackendKind {
    if x.dims()[2] % 2 == 1 {
        return BackendKind::Other;
    }
    backend_kind(x, x)
}

#[inline(always)]
fn cdf(g: f32) -> f32 {
    0.5 * (1.0 + erf_approx(g * FRAC_1_SQRT_2))
}

multiversion! {
    /// `out` = h · gelu(g) for each row [h | g] of `x` (rows of 2·`inner`).
    fn geglu_rows(inner: usize, x: &[f32], out: &mut [f32]) {
        for (o, row) in out.chunks_exact_mut(inner).zip(x.chunks_exact(2 * inner)) {
            let (h, g) = row.split_at(inner);
            for ((o, &h), &g) in o.iter_mut().zip(h).zip(g) {
                *o = h * g * cdf(g);
            }
        }
    }
}

multiversion! {
    /// `dx` = [dh | dg] for each row of `x` and of `grad` (see [`geglu_backward`]).
    fn geglu_grad_rows(inner: usize, x: &[f32], grad: &[f32], dx: &mut [f32]) {
        let rows = dx
            .chunks_exact_mut(2 * inner)
            .zip(x.chunks_exact(2 * inner))
            .zip(grad.chunks_exact(inner));
        for ((dx, x), grad) in rows {
            let (dh, dg) = dx.split_at_mut(inner);
            let (h, g) = x.split_at(inner);
            for i in 0..inner {
                let (gi, cdf) = (g[i], cdf(g[i]));
                let pdf = FRAC_1_SQRT_2PI * exp_approx(-0.5 * gi * gi);
                dh[i] = grad[i] * gi * cdf;
                dg[i] = grad[i] * h[i] * (cdf + gi * pdf);
            }
        }
    }
}

/// `[R, I]` = h · gelu(g) for `x` = `[R, 2·I]`.
pub fn geglu_forward(inner: usize, x: &[f32]) -> Vec<f32> {
    assert!(
        inner > 0 && x.len().is_multiple_of(2 * inner),
        "x: wrong buffer length"
    );
    let mut out = zeroed(x.len() / 2);
    out.par_chunks_mut(inner * ROWS_PER_TASK)
        .zip(x.par_chunks(2 * inner * ROWS_PER_TASK))
        .for_each(|(out, x)| geglu_rows(inner, x, out));
    out
}

/// dL/dx (`[R, 2·I]`) from `grad` = dL/d(output) (`[R, I]`): dh = grad · gelu(g),
/// dg = grad · h · (Φ(g) + g φ(g)).
pub fn geglu_backward(inner: usize, x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(grad.len() * 2, x.len(), "grad: wrong buffer length");
    let mut dx = zeroed(x.len());
    dx.par_chunks_mut(2 * inner * ROWS_PER_TASK)
        .zip(x.par_chunks(2 * inner * ROWS_PER_TASK))
        .zip(grad.par_chunks(inner * ROWS_PER_TASK))
        .for_each(|((dx, x), grad)| geglu_grad_rows(inner, x, grad, dx));
    dx
}

#[derive(Debug)]
struct GegluBackward;

/// The checkpointed input, the width of one half, and the input's shape.
type GegluState = (NodeId, usize, [usize; 3]);

impl Backward<Flex, 1> for GegluBackward {
    type State = GegluState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, inner, shape) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
        let dx = geglu_backward(
            inner,
            &f32_storage(&x).expect("f32 input"),
            &f32_storage(&grad).expect("f32 gradient"),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, shape));
        }
    }
}

fn forward_autodiff(x: Tensor<3>, inner: usize) -> Tensor<3> {
    let shape = x.dims();
    let Ok(x) = x.try_into_primitive::<Autodiff<Flex>>() else {
        unreachable!("geglu_route said the tensor is on autodiff(flex)");
    };
    let out = geglu_forward(inner, &f32_storage(x.primitive()).expect("f32 input"));
    let out = flex_tensor(out, [shape[0], shape[1], inner]);
    let out = match GegluBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let id = prep.checkpoint(&x);
            prep.finish((id, inner, shape), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
