//! Routes scaled dot-product attention to [`super::attention_kernels`] on burn's `flex` backend,
//! with a hand-written backward pass for burn's autodiff; burn's operations everywhere else.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::attention_kernels::{AttentionGeometry, attention_backward, attention_forward};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// softmax(q kᵀ / √d) v: self-attention (M = N) or cross-attention (keys from other tokens).
///
/// # Shapes
/// - `q`: `[B, heads, N, d]`; `k`, `v`: `[B, heads, M, d]`
/// - output: `[B, heads, N, d]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [batch, heads, tokens, head_dim] = q.dims();
    let g = AttentionGeometry {
        blocks: batch * heads,
        tokens,
        key_tokens: k.dims()[2],
        head_dim,
    };
    match attention_route(&q, &k, &v) {
        BackendKind::Flex => {
            let (Ok(q), Ok(k), Ok(v)) = (
                q.try_into_primitive::<Flex>(),
                k.try_into_primitive::<Flex>(),
                v.try_into_primitive::<Flex>(),
            ) else {
                unreachable!("attention_route said every tensor is on flex");
            };
            let (out, _) = run_forward(&g, &q, &k, &v);
            Tensor::from_primitive::<Flex>(flex_tensor(out, q.layout().shape().to_vec()))
        }
        BackendKind::AutodiffFlex => forward_autodiff(g, q, k, v),
        BackendKind::Other => {
            let scores = q.matmul(k.transpose()) / (head_dim as f64).sqrt();
            softmax(scores, 3).matmul(v)
        }
    }
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

fn run_forward(
    g: &AttentionGeometry,
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
) -> (Vec<f32>, Vec<f32>) {
    let (q, k, v) = (
        f32_storage(q).expect("f32 q"),
        f32_storage(k).expect("f32 k"),
        f32_storage(v).expect("f32 v"),
    );
    let out = attention_forward(g, &q, &k, &v);
    (out.output, out.probs)
}

#[derive(Debug)]
struct AttentionBackward;

/// Checkpointed q, k, v; the sizes; the shapes of q and of k (and v); the softmax
/// probabilities of the forward pass.
type AttentionState = (
    NodeId,
    NodeId,
    NodeId,
    AttentionGeometry,
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
        let (q_id, k_id, v_id, g, [q_shape, kv_shape], probs) = ops.state;
        let q = checkpointer.retrieve_node_output::<FlexTensor>(q_id);
        let k = checkpointer.retrieve_node_output::<FlexTensor>(k_id);
        let v = checkpointer.retrieve_node_output::<FlexTensor>(v_id);
        let (dq, dk, dv) = attention_backward(
            &g,
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

fn forward_autodiff(g: AttentionGeometry, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let (shape, kv_shape) = (q.dims().to_vec(), k.dims().to_vec());
    let (Ok(q), Ok(k), Ok(v)) = (
        q.try_into_primitive::<Autodiff<Flex>>(),
        k.try_into_primitive::<Autodiff<Flex>>(),
        v.try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        unreachable!("attention_route said every tensor is on autodiff(flex)");
    };
    let (out, probs) = run_forward(&g, q.primitive(), k.primitive(), v.primitive());
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
            prep.finish((ids.0, ids.1, ids.2, g, [shape, kv_shape], probs), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
