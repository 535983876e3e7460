//! Routes a [`LayerNorm`] over tokens to the kernel of [`super::layer_norm_kernels`] under burn's
//! autodiff on `flex`, with a hand-written backward pass; burn's module everywhere else.
//!
//! Only under autodiff: flex has a fused, parallel LayerNorm forward of its own, but burn's
//! autodiff composes LayerNorm (and its backward) from a dozen tensor operations.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use super::layer_norm_kernels::{LayerNormGeometry, layer_norm_backward, layer_norm_forward};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// `norm.forward(x)` for a LayerNorm over the last axis whose epsilon is `epsilon` (burn does
/// not expose it).
///
/// # Shapes
/// - `x`, output: `[B, N, C]`
pub fn layer_norm(norm: &LayerNorm, epsilon: f64, x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, channels] = x.dims();
    let gamma = norm.gamma.val();
    let on_kernel = |t: &Tensor<1>| backend_kind(&x, t) == BackendKind::AutodiffFlex;
    let beta = norm
        .beta
        .as_ref()
        .map(|beta| beta.val())
        .filter(|beta| gamma.dims() == [channels] && on_kernel(&gamma) && on_kernel(beta));
    let Some(beta) = beta else {
        return norm.forward(x);
    };
    let spec = Spec {
        geometry: LayerNormGeometry {
            rows: batch * tokens,
            channels,
        },
        epsilon,
        shape: [batch, tokens, channels],
    };
    forward_autodiff(spec, x, gamma, beta)
}

/// Everything about one call that the backward pass needs besides the tensors.
#[derive(Debug, Clone)]
struct Spec {
    geometry: LayerNormGeometry,
    epsilon: f64,
    shape: [usize; 3],
}

#[derive(Debug)]
struct LayerNormBackward;

/// Checkpointed x and γ; the call's sizes; and the row statistics of the forward pass.
type LayerNormState = (NodeId, NodeId, Spec, Vec<f32>, Vec<f32>);

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, gamma_id, spec, mean, rstd) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_id);
        let (dx, dgamma, dbeta) = layer_norm_backward(
            &spec.geometry,
            &f32_storage(&x).expect("f32 input"),
            &f32_storage(&gamma).expect("f32 gamma"),
            &mean,
            &rstd,
            &f32_storage(&grad).expect("f32 gradient"),
        );
        let channels = spec.geometry.channels;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, spec.shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [channels]));
        }
    }
}

fn forward_autodiff(spec: Spec, x: Tensor<3>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<3> {
    let (Ok(x), Ok(gm), Ok(bt)) = (
        x.try_into_primitive::<Autodiff<Flex>>(),
        gamma.try_into_primitive::<Autodiff<Flex>>(),
        beta.try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        unreachable!("layer_norm checked that every tensor is on autodiff(flex)");
    };
    let out = layer_norm_forward(
        &spec.geometry,
        &f32_storage(x.primitive()).expect("f32 input"),
        &f32_storage(gm.primitive()).expect("f32 gamma"),
        &f32_storage(bt.primitive()).expect("f32 beta"),
        spec.epsilon,
    );
    let output = flex_tensor(out.output, spec.shape);
    let out = match LayerNormBackward
        .prepare::<NoCheckpointing>([x.node(), gm.node(), bt.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let ids = (prep.checkpoint(&x), prep.checkpoint(&gm));
            prep.finish((ids.0, ids.1, spec, out.mean, out.rstd), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
