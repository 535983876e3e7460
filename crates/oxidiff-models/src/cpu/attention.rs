//! Routes scaled dot-product attention (with an optional additive mask on the tokens' path) to
//! [`super::attention_kernels`] on burn's `flex` backend, with a hand-written backward pass for
//! burn's autodiff; burn's operations everywhere else.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::attention_kernels::{
    AttentionGeometry, AttentionLayout, AttentionLayouts, attention_backward, attention_forward,
};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// softmax(q kᵀ / √d) v: self-attention (M = N) or cross-attention (keys from other tokens).
///
/// # Shapes
/// - `q`: `[B, heads, N, d]`; `k`, `v`: `[B, heads, M, d]`
/// - output: `[B, heads, N, d]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [images, heads, tokens, head_dim] = q.dims();
    let g = AttentionGeometry {
        images,
        heads,
        tokens,
        key_tokens: k.dims()[2],
        head_dim,
    };
    let layouts = AttentionLayouts {
        q: AttentionLayout::heads_major(&g, g.tokens),
        kv: AttentionLayout::heads_major(&g, g.key_tokens),
    };
    match attention_route(&q, &k, &v) {
        BackendKind::Other => burn_attention(q, k, v, None),
        route => routed(route, g, layouts, q, k, v, None),
    }
}

/// softmax(q kᵀ / √d + bias) v through burn's operations.
///
/// # Shapes
/// - `q`: `[B, heads, N, d]`; `k`, `v`: `[B, heads, M, d]`
/// - `bias`: broadcastable to `[B, heads, N, M]`
/// - output: `[B, heads, N, d]`
fn burn_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<4> {
    let head_dim = q.dims()[3];
    let scores = q.matmul(k.transpose()) / (head_dim as f64).sqrt();
    let scores = match bias {
        Some(bias) => scores + bias,
        None => scores,
    };
    softmax(scores, 3).matmul(v)
}

/// Which path [`attention`] takes: [`BackendKind::Other`] is burn's.
pub fn attention_route(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> BackendKind {
    let [b, h, _, d] = q.dims();
    let [kb, kh, _, kd] = k.dims();
    let shapes_fit = (b, h, d) == (kb, kh, kd) && k.dims() == v.dims();
    match backend_kind(q, k) {
        kind if shapes_fit && backend_kind(q, v) == kind => kind,
        _ => BackendKind::Other,
    }
}

/// Multi-head attention on tokens as the projections make them: `heads` heads side by side in
/// each token's C channels, attended without transposing them out and back, with an optional
/// additive `bias` on the scores (a causal or padding mask: a constant, given no gradient).
///
/// # Shapes
/// - `q`: `[B, N, C]`; `k`, `v`: `[B, M, C]`
/// - `bias`: broadcastable to `[B, heads, N, M]`; the kernels take one shared by the heads
///   (`[B or 1, 1, N or 1, M or 1]`), burn's operations any other
/// - output: `[B, N, C]`
pub fn attention_tokens(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    bias: Option<Tensor<4>>,
) -> Tensor<3> {
    let [images, tokens, channels] = q.dims();
    let key_tokens = k.dims()[1];
    let route = attention_tokens_route(&q, &k, &v, heads, bias.as_ref());
    if route == BackendKind::Other {
        let head_dim = channels / heads.max(1);
        let split =
            |t: Tensor<3>, n: usize| t.reshape([images, n, heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (split(q, tokens), split(k, key_tokens), split(v, key_tokens));
        let out = match bias {
            Some(bias) => burn_attention(q, k, v, Some(bias)),
            None => attention(q, k, v),
        };
        return out.swap_dims(1, 2).reshape([images, tokens, channels]);
    }
    let g = AttentionGeometry {
        images,
        heads,
        tokens,
        key_tokens,
        head_dim: channels / heads,
    };
    let layouts = AttentionLayouts {
        q: AttentionLayout::tokens_major(&g, tokens),
        kv: AttentionLayout::tokens_major(&g, key_tokens),
    };
    // [B, N, M], one block per image, as the kernel reads it.
    let bias = bias.map(|bias| {
        bias.expand([images, 1, tokens, key_tokens])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 after convert")
    });
    routed(route, g, layouts, q, k, v, bias)
}

/// Which path [`attention_tokens`] takes: [`BackendKind::Other`] is burn's.
pub fn attention_tokens_route(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    heads: usize,
    bias: Option<&Tensor<4>>,
) -> BackendKind {
    let [b, n, c] = q.dims();
    let [kb, m, kc] = k.dims();
    let bias_fits = bias.is_none_or(|bias| {
        let [bb, bh, bn, bm] = bias.dims();
        let fits = |dim: usize, full: usize| dim == full || dim == 1;
        bh == 1 && fits(bb, b) && fits(bn, n) && fits(bm, m) && !bias.is_require_grad()
    });
    let shapes_fit = heads > 0
        && c.is_multiple_of(heads)
        && (b, c) == (kb, kc)
        && k.dims() == v.dims()
        && bias_fits;
    match backend_kind(q, k) {
        kind if shapes_fit && backend_kind(q, v) == kind => kind,
        _ => BackendKind::Other,
    }
}

/// The kernel's path, once a route (not [`BackendKind::Other`]) is chosen.
fn routed<const D: usize>(
    route: BackendKind,
    g: AttentionGeometry,
    layouts: AttentionLayouts,
    q: Tensor<D>,
    k: Tensor<D>,
    v: Tensor<D>,
    bias: Option<Vec<f32>>,
) -> Tensor<D> {
    match route {
        BackendKind::Flex => {
            let shape = q.dims().to_vec();
            let (Ok(q), Ok(k), Ok(v)) = (
                q.try_into_primitive::<Flex>(),
                k.try_into_primitive::<Flex>(),
                v.try_into_primitive::<Flex>(),
            ) else {
                unreachable!("the route said every tensor is on flex");
            };
            let (out, _) = run_forward(&g, &layouts, &q, &k, &v, bias.as_deref());
            Tensor::from_primitive::<Flex>(flex_tensor(out, shape))
        }
        BackendKind::AutodiffFlex => forward_autodiff(g, layouts, q, k, v, bias.as_deref()),
        BackendKind::Other => unreachable!("the callers take burn's path for Other"),
    }
}

fn run_forward(
    g: &AttentionGeometry,
    layouts: &AttentionLayouts,
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (q, k, v) = (
        f32_storage(q).expect("f32 q"),
        f32_storage(k).expect("f32 k"),
        f32_storage(v).expect("f32 v"),
    );
    let out = attention_forward(g, layouts, &q, &k, &v, bias);
    (out.output, out.probs)
}

#[derive(Debug)]
struct AttentionBackward;

/// Checkpointed q, k, v; the sizes and layouts; the shapes of q and of k (and v); the softmax
/// probabilities of the forward pass.
type AttentionState = (
    NodeId,
    NodeId,
    NodeId,
    AttentionGeometry,
    AttentionLayouts,
    [Vec<usize>; 2],
    Vec<f32>,
);

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad_tensor = grads.consume::<Flex>(&ops.node);
        let (q_id, k_id, v_id, g, layouts, [q_shape, kv_shape], probs) = ops.state;
        let q = checkpointer.retrieve_node_output::<FlexTensor>(q_id);
        let k = checkpointer.retrieve_node_output::<FlexTensor>(k_id);
        let v = checkpointer.retrieve_node_output::<FlexTensor>(v_id);
        let (dq, dk, dv) = attention_backward(
            &g,
            &layouts,
            &f32_storage(&q).expect("f32 q"),
            &f32_storage(&k).expect("f32 k"),
            &f32_storage(&v).expect("f32 v"),
            &probs,
            &f32_storage(&grad_tensor).expect("f32 gradient"),
        );
        for (node, grad, shape) in [
            (node_q, dq, &q_shape),
            (node_k, dk, &kv_shape),
            (node_v, dv, &kv_shape),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(grad, shape.clone()));
            }
        }
    }
}

fn forward_autodiff<const D: usize>(
    g: AttentionGeometry,
    layouts: AttentionLayouts,
    q: Tensor<D>,
    k: Tensor<D>,
    v: Tensor<D>,
    bias: Option<&[f32]>,
) -> Tensor<D> {
    let (shape, kv_shape) = (q.dims().to_vec(), k.dims().to_vec());
    let (Ok(q), Ok(k), Ok(v)) = (
        q.try_into_primitive::<Autodiff<Flex>>(),
        k.try_into_primitive::<Autodiff<Flex>>(),
        v.try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        unreachable!("the route said every tensor is on autodiff(flex)");
    };
    let (out, probs) = run_forward(
        &g,
        &layouts,
        q.primitive(),
        k.primitive(),
        v.primitive(),
        bias,
    );
    let out = flex_tensor(out, shape.clone());
    let out = match AttentionBackward
        .prepare::<NoCheckpointing>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let ids = (
                prep.checkpoint(&q),
                prep.checkpoint(&k),
                prep.checkpoint(&v),
            );
            prep.finish(
                (ids.0, ids.1, ids.2, g, layouts, [shape, kv_shape], probs),
                out,
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
