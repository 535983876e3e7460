//! Routes a [`GroupNorm`] (and the SiLU that usually follows it) to the fused kernels of
//! [`super::group_norm_kernels`] on burn's `flex` backend, with a hand-written backward pass for
//! burn's autodiff; burn's modules everywhere else.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::group_norm_kernels::{GroupNormGeometry, group_norm_backward, group_norm_forward};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// `norm.forward(x)`.
///
/// # Shapes
/// - `x`, output: `[B, C, H, W]`
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match group_norm_route(norm, &x) {
        BackendKind::Other => norm.forward(x),
        route => fused(norm, x, false, route),
    }
}

/// `silu(norm.forward(x))` in one pass.
///
/// # Shapes
/// - `x`, output: `[B, C, H, W]`
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match group_norm_route(norm, &x) {
        BackendKind::Other => silu(norm.forward(x)),
        route => fused(norm, x, true, route),
    }
}

/// Which path [`group_norm`] and [`group_norm_silu`] take: [`BackendKind::Other`] is burn's.
pub fn group_norm_route(norm: &GroupNorm, x: &Tensor<4>) -> BackendKind {
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(_)) if geometry(norm, x).is_some() => backend_kind(x, &gamma.val()),
        _ => BackendKind::Other,
    }
}

fn geometry(norm: &GroupNorm, x: &Tensor<4>) -> Option<GroupNormGeometry> {
    let [batch, channels, h, w] = x.dims();
    let ok = norm.affine
        && norm.num_groups > 0
        && channels == norm.num_channels
        && channels.is_multiple_of(norm.num_groups);
    ok.then_some(GroupNormGeometry {
        batch,
        channels,
        groups: norm.num_groups,
        plane: h * w,
    })
}

/// The fused path, once [`group_norm_route`] has chosen `route` (not [`BackendKind::Other`]).
fn fused(norm: &GroupNorm, x: Tensor<4>, silu: bool, route: BackendKind) -> Tensor<4> {
    let (Some(g), Some(gamma), Some(beta)) = (geometry(norm, &x), &norm.gamma, &norm.beta) else {
        unreachable!("group_norm_route checked the geometry and the affine parameters");
    };
    let spec = Spec {
        geometry: g,
        epsilon: norm.epsilon,
        silu,
        shape: x.dims(),
    };
    let (gamma, beta) = (gamma.val(), beta.val());
    match route {
        BackendKind::Flex => {
            let (Ok(x), Ok(gm), Ok(bt)) = (
                x.try_into_primitive::<Flex>(),
                gamma.try_into_primitive::<Flex>(),
                beta.try_into_primitive::<Flex>(),
            ) else {
                unreachable!("the route said every tensor is on flex");
            };
            let (out, _, _) = spec.forward(&x, &gm, &bt);
            Tensor::from_primitive::<Flex>(out)
        }
        BackendKind::AutodiffFlex => forward_autodiff(spec, x, gamma, beta),
        BackendKind::Other => unreachable!("the callers take burn's path for Other"),
    }
}

/// Everything about one call that the backward pass needs besides the tensors.
#[derive(Debug, Clone)]
struct Spec {
    geometry: GroupNormGeometry,
    epsilon: f64,
    silu: bool,
    shape: [usize; 4],
}

impl Spec {
    fn forward(
        &self,
        x: &FlexTensor,
        gamma: &FlexTensor,
        beta: &FlexTensor,
    ) -> (FlexTensor, Vec<f32>, Vec<f32>) {
        let (x, gamma, beta) = (
            f32_storage(x).expect("f32 input"),
            f32_storage(gamma).expect("f32 gamma"),
            f32_storage(beta).expect("f32 beta"),
        );
        let out = group_norm_forward(&self.geometry, &x, &gamma, &beta, self.epsilon, self.silu);
        (flex_tensor(out.output, self.shape), out.mean, out.rstd)
    }
}

#[derive(Debug)]
struct GroupNormBackward;

/// Checkpointed x, γ, β; the call's sizes; and the group statistics of the forward pass.
type GroupNormState = (NodeId, NodeId, NodeId, Spec, Vec<f32>, Vec<f32>);

impl Backward<Flex, 3> for GroupNormBackward {
    type State = GroupNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, gamma_id, beta_id, spec, mean, rstd) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_id);
        let beta = checkpointer.retrieve_node_output::<FlexTensor>(beta_id);
        let (dx, dgamma, dbeta) = group_norm_backward(
            &spec.geometry,
            &f32_storage(&x).expect("f32 input"),
            &f32_storage(&gamma).expect("f32 gamma"),
            &f32_storage(&beta).expect("f32 beta"),
            &mean,
            &rstd,
            &f32_storage(&grad).expect("f32 gradient"),
            spec.silu,
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

fn forward_autodiff(spec: Spec, x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<4> {
    let (Ok(x), Ok(gm), Ok(bt)) = (
        x.try_into_primitive::<Autodiff<Flex>>(),
        gamma.try_into_primitive::<Autodiff<Flex>>(),
        beta.try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        unreachable!("group_norm_route said every tensor is on autodiff(flex)");
    };
    let (out, mean, rstd) = spec.forward(x.primitive(), gm.primitive(), bt.primitive());
    let out = match GroupNormBackward
        .prepare::<NoCheckpointing>([x.node(), gm.node(), bt.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let ids = (
                prep.checkpoint(&x),
                prep.checkpoint(&gm),
                prep.checkpoint(&bt),
            );
            prep.finish((ids.0, ids.1, ids.2, spec, mean, rstd), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
