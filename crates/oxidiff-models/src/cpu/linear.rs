//! A linear layer, y = x W + b over rows, as row blocks of single-threaded GEMMs writing into
//! the output directly, and its backward pass; burn's [`Linear`] on other backends.
//!
//! Why: burn's `flex` matmul zero-fills its output before the GEMM and adds the bias in a
//! second pass; on the `latent-text` UNet's transformers (every projection a `[B·N, C]` GEMM)
//! the fill and the add were a quarter of the forward pass's main thread (bench/NOTES.md). Here
//! the output starts as the broadcast bias (or is written by the GEMM alone), and the weight
//! gradient is one GEMM per block of input features.
//!
//! Buffers are contiguous row-major f32: `x` is `[R, I]`, the weight `[I, O]` (burn's layout),
//! the output `[R, O]`.

use std::mem::MaybeUninit;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::matmul::{Mat, matmul, matmul_uninit};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor, vectorised};

/// Rows of `x` per parallel GEMM.
const ROWS_PER_TASK: usize = 64;
/// Input features (rows of the weight gradient) per parallel GEMM.
const FEATURES_PER_TASK: usize = 16;

/// Sizes of one linear layer call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearGeometry {
    /// R: rows (tokens) of the input.
    pub rows: usize,
    /// I: input features.
    pub d_input: usize,
    /// O: output features.
    pub d_output: usize,
}

/// `layer.forward(x)`.
///
/// # Shapes
/// - `x`: `[R, I]`
/// - output: `[R, O]`
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let route = linear_route(layer, &x);
    if route == BackendKind::Other {
        return layer.forward(x);
    }
    let weight = layer.weight.val();
    let [d_input, d_output] = weight.dims();
    let g = LinearGeometry {
        rows: x.dims()[0],
        d_input,
        d_output,
    };
    let bias = layer.bias.as_ref().map(|b| b.val());
    match route {
        BackendKind::Flex => {
            let (Ok(x), Ok(w)) = (
                x.try_into_primitive::<Flex>(),
                weight.try_into_primitive::<Flex>(),
            ) else {
                unreachable!("linear_route said every tensor is on flex");
            };
            let b = bias.map(|b| {
                b.try_into_primitive::<Flex>()
                    .unwrap_or_else(|_| unreachable!("linear_route checked the bias"))
            });
            let out = run_forward(&g, &x, &w, b.as_ref());
            Tensor::from_primitive::<Flex>(flex_tensor(out, [g.rows, g.d_output]))
        }
        BackendKind::AutodiffFlex => forward_autodiff(g, x, weight, bias),
        BackendKind::Other => unreachable!("burn's path is taken above"),
    }
}

/// `layer.forward(x)` over the last axis of tokens, as one GEMM on `[B·N, I]` rows.
///
/// # Shapes
/// - `x`: `[B, N, I]`
/// - output: `[B, N, O]`
pub fn linear_tokens(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, width] = x.dims();
    let out = linear(layer, x.reshape([batch * tokens, width]));
    let [_, out_width] = out.dims();
    out.reshape([batch, tokens, out_width])
}

/// Which path [`linear`] takes: [`BackendKind::Other`] is burn's.
pub fn linear_route(layer: &Linear, x: &Tensor<2>) -> BackendKind {
    let weight = layer.weight.val();
    if x.dims()[1] != weight.dims()[0] {
        return BackendKind::Other;
    }
    let kind = backend_kind(x, &weight);
    match &layer.bias {
        Some(b) if backend_kind(x, &b.val()) != kind => BackendKind::Other,
        _ => kind,
    }
}

fn run_forward(
    g: &LinearGeometry,
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
) -> Vec<f32> {
    let bias = b.map(|b| f32_storage(b).expect("f32 bias"));
    linear_forward(
        g,
        &f32_storage(x).expect("f32 input"),
        &f32_storage(w).expect("f32 weight"),
        bias.as_deref(),
    )
}

/// y = x W (+ b): `[R, O]`.
pub fn linear_forward(g: &LinearGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (i, o) = (g.d_input, g.d_output);
    assert_eq!(x.len(), g.rows * i, "x: wrong buffer length");
    assert_eq!(w.len(), i * o, "weight: wrong buffer length");
    if let Some(b) = bias {
        assert_eq!(b.len(), o, "bias: wrong length");
    }
    let mut out = Vec::<f32>::with_capacity(g.rows * o);
    out.spare_capacity_mut()[..g.rows * o]
        .par_chunks_mut(ROWS_PER_TASK * o)
        .zip(x.par_chunks(ROWS_PER_TASK * i))
        .for_each(|(out, x)| {
            let rows = x.len() / i;
            match bias {
                Some(b) => {
                    // The bias first, then the GEMM adds x W onto it.
                    let out = init_rows(out, b);
                    // SAFETY: x is [rows, I], w [I, O], out [rows, O].
                    unsafe { matmul(rows, o, i, out, true, Mat::rows(x, i), Mat::rows(w, o)) };
                }
                // SAFETY: as above; the GEMM writes every element of out without reading it.
                None => unsafe { matmul_uninit(rows, o, i, out, Mat::rows(x, i), Mat::rows(w, o)) },
            }
        });
    // SAFETY: every one of the first R·O elements was written above.
    unsafe { out.set_len(g.rows * o) };
    out
}

/// Writes `bias` into every row of `out` and returns it initialised.
fn init_rows<'a>(out: &'a mut [MaybeUninit<f32>], bias: &[f32]) -> &'a mut [f32] {
    for row in out.chunks_exact_mut(bias.len()) {
        for (o, &b) in row.iter_mut().zip(bias) {
            o.write(b);
        }
    }
    // SAFETY: out is a whole number of rows (a chunk of R·O), each written just above.
    unsafe { &mut *(std::ptr::from_mut::<[MaybeUninit<f32>]>(out) as *mut [f32]) }
}

/// Gradients `(dX, dW, dB)` from `grad` = dL/dy (`[R, O]`): dX = dY Wᵀ, dW = Xᵀ dY,
/// dB = Σ_rows dY (when `with_bias`).
pub fn linear_backward(
    g: &LinearGeometry,
    x: &[f32],
    w: &[f32],
    grad: &[f32],
    with_bias: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let (r, i, o) = (g.rows, g.d_input, g.d_output);
    assert_eq!(x.len(), r * i, "x: wrong buffer length");
    assert_eq!(w.len(), i * o, "weight: wrong buffer length");
    assert_eq!(grad.len(), r * o, "grad: wrong buffer length");
    let mut dx = Vec::<f32>::with_capacity(r * i);
    dx.spare_capacity_mut()[..r * i]
        .par_chunks_mut(ROWS_PER_TASK * i)
        .zip(grad.par_chunks(ROWS_PER_TASK * o))
        .for_each(|(dx, dy)| {
            let rows = dy.len() / o;
            // SAFETY: dy is [rows, O], Wᵀ [O, I], dx [rows, I], written whole.
            unsafe {
                matmul_uninit(rows, i, o, dx, Mat::rows(dy, o), Mat::transposed(w, o));
            }
        });
    // SAFETY: every element was written above.
    unsafe { dx.set_len(r * i) };
    let mut dw = Vec::<f32>::with_capacity(i * o);
    dw.spare_capacity_mut()[..i * o]
        .par_chunks_mut(FEATURES_PER_TASK * o)
        .enumerate()
        .for_each(|(block, dw)| {
            let first = block * FEATURES_PER_TASK;
            let features = dw.len() / o;
            // SAFETY: Xᵀ's rows first..first + features are [features, R] under the transposed
            // view of x (row stride 1, column stride I); dY is [R, O]; dw [features, O].
            unsafe {
                matmul_uninit(
                    features,
                    o,
                    r,
                    dw,
                    Mat::transposed(&x[first..], i),
                    Mat::rows(grad, o),
                );
            }
        });
    // SAFETY: every element was written above.
    unsafe { dw.set_len(i * o) };
    let db = with_bias.then(|| {
        let mut db = vec![0.0f32; o];
        vectorised(|| {
            for row in grad.chunks_exact(o) {
                for (d, &v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
        });
        db
    });
    (dx, dw, db)
}

#[derive(Debug)]
struct LinearBackward;

/// The checkpointed input and weight, the sizes, and whether a bias was added.
type LinearState = (NodeId, NodeId, LinearGeometry);

fn backward_parts(
    state: &LinearState,
    grad: &FlexTensor,
    checkpointer: &mut Checkpointer,
    with_bias: bool,
) -> (FlexTensor, FlexTensor, Option<FlexTensor>) {
    let (x_id, w_id, g) = *state;
    let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
    let w = checkpointer.retrieve_node_output::<FlexTensor>(w_id);
    let (dx, dw, db) = linear_backward(
        &g,
        &f32_storage(&x).expect("f32 input"),
        &f32_storage(&w).expect("f32 weight"),
        &f32_storage(grad).expect("f32 gradient"),
        with_bias,
    );
    (
        flex_tensor(dx, [g.rows, g.d_input]),
        flex_tensor(dw, [g.d_input, g.d_output]),
        db.map(|db| flex_tensor(db, [g.d_output])),
    )
}

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dw, db) = backward_parts(&ops.state, &grad, checkpointer, true);
        let db = db.expect("a bias gradient was asked for");
        for (node, grad) in [(node_x, dx), (node_w, dw), (node_b, db)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// [`LinearBackward`] of a layer without bias.
#[derive(Debug)]
struct LinearNoBiasBackward;

impl Backward<Flex, 2> for LinearNoBiasBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dw, _) = backward_parts(&ops.state, &grad, checkpointer, false);
        for (node, grad) in [(node_x, dx), (node_w, dw)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn forward_autodiff(
    g: LinearGeometry,
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<2> {
    let (Ok(x), Ok(w)) = (
        x.try_into_primitive::<Autodiff<Flex>>(),
        weight.try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        unreachable!("linear_route said every tensor is on autodiff(flex)");
    };
    let b = bias.map(|b| {
        b.try_into_primitive::<Autodiff<Flex>>()
            .unwrap_or_else(|_| unreachable!("linear_route checked the bias"))
    });
    let out = run_forward(
        &g,
        x.primitive(),
        w.primitive(),
        b.as_ref().map(|b| b.primitive()),
    );
    let out = flex_tensor(out, [g.rows, g.d_output]);
    let out = match b {
        Some(b) => match LinearBackward
            .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = (prep.checkpoint(&x), prep.checkpoint(&w));
                prep.finish((ids.0, ids.1, g), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
        None => match LinearNoBiasBackward
            .prepare::<NoCheckpointing>([x.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = (prep.checkpoint(&x), prep.checkpoint(&w));
                prep.finish((ids.0, ids.1, g), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
