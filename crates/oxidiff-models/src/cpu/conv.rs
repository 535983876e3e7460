//! Routes a [`Conv2d`] to the GEMM kernels of [`super::conv_kernels`] when its tensors live on
//! burn's `flex` CPU backend, with a hand-written backward pass for burn's autodiff. Every other
//! backend (wgpu, Vulkan, CUDA), and any convolution the kernels do not cover, goes through
//! burn's own `Conv2d::forward`, so the weights and records are the same either way.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::conv_kernels::{
    ConvGeometry, conv2d_bias_backward, conv2d_forward, conv2d_weight_backward, conv2d_x_backward,
};
use super::{BackendKind, backend_kind, f32_storage, flex_tensor};

/// `conv.forward(x)`, on the CPU through the GEMM kernels.
///
/// # Shapes
/// - `x`: `[B, C_in, H, W]`
/// - output: `[B, C_out, H_out, W_out]`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let (Some(geometry), Some(bias)) = (geometry(conv, &x), &conv.bias) else {
        return conv.forward(x);
    };
    let weight = conv.weight.val();
    match backend_kind(&x, &weight) {
        BackendKind::Flex => forward_flex(geometry, x, weight, bias.val()),
        BackendKind::AutodiffFlex => forward_autodiff(geometry, x, weight, bias.val()),
        BackendKind::Other => conv.forward(x),
    }
}

/// Which path [`conv2d`] takes for this layer and input: [`BackendKind::Other`] is burn's.
pub fn conv2d_route(conv: &Conv2d, x: &Tensor<4>) -> BackendKind {
    match (geometry(conv, x), &conv.bias) {
        (Some(_), Some(_)) => backend_kind(x, &conv.weight.val()),
        _ => BackendKind::Other,
    }
}

fn geometry(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvGeometry> {
    if conv.groups != 1 || conv.dilation != [1, 1] || conv.stride[0] != conv.stride[1] {
        return None;
    }
    let padding = match conv.padding {
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Explicit(a, b, c, d) if a == b && b == c && c == d => a,
        _ => return None,
    };
    ConvGeometry::new(x.dims(), conv.weight.dims(), conv.stride[0], padding)
}

fn run_forward(
    g: &ConvGeometry,
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
) -> Option<FlexTensor> {
    let (x, w, b) = (f32_storage(x)?, f32_storage(w)?, f32_storage(b)?);
    let out = conv2d_forward(g, &x, &w, Some(&b));
    Some(flex_tensor(out, [g.batch, g.c_out, g.h_out, g.w_out]))
}

fn forward_flex(g: ConvGeometry, x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let primitives = (
        x.try_into_primitive::<Flex>(),
        weight.try_into_primitive::<Flex>(),
        bias.try_into_primitive::<Flex>(),
    );
    let (Ok(x), Ok(w), Ok(b)) = primitives else {
        unreachable!("backend_kind said every tensor is on flex");
    };
    let out = run_forward(&g, &x, &w, &b).expect("flex tensors of dtype f32");
    Tensor::from_primitive::<Flex>(out)
}

/// The backward step: reads x and the weight back from the graph and computes the three
/// gradients the parents ask for.
#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (NodeId, NodeId, ConvGeometry);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad_tensor = grads.consume::<Flex>(&ops.node);
        let grad = f32_storage(&grad_tensor).expect("f32 gradient");
        let (x_id, weight_id, g) = ops.state;
        if let Some(node) = node_x {
            let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_id);
            let weight = f32_storage(&weight).expect("f32 weight");
            let dx = conv2d_x_backward(&g, &weight, &grad);
            grads.register::<Flex>(
                node.id,
                flex_tensor(dx, [g.batch, g.c_in, g.height, g.width]),
            );
        }
        if let Some(node) = node_weight {
            let x = checkpointer.retrieve_node_output::<FlexTensor>(x_id);
            let x = f32_storage(&x).expect("f32 input");
            let dw = conv2d_weight_backward(&g, &x, &grad);
            grads.register::<Flex>(
                node.id,
                flex_tensor(dw, [g.c_out, g.c_in, g.kernel, g.kernel]),
            );
        }
        if let Some(node) = node_bias {
            let db = conv2d_bias_backward(&g, &grad);
            grads.register::<Flex>(node.id, flex_tensor(db, [g.c_out]));
        }
    }
}

fn forward_autodiff(
    g: ConvGeometry,
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
) -> Tensor<4> {
    let primitives = (
        x.try_into_primitive::<Autodiff<Flex>>(),
        weight.try_into_primitive::<Autodiff<Flex>>(),
        bias.try_into_primitive::<Autodiff<Flex>>(),
    );
    let (Ok(x), Ok(w), Ok(b)) = primitives else {
        unreachable!("backend_kind said every tensor is on autodiff(flex)");
    };
    let out = run_forward(&g, x.primitive(), w.primitive(), b.primitive())
        .expect("flex tensors of dtype f32");
    let out = match Conv2dBackward
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_id = prep.checkpoint(&x);
            let weight_id = prep.checkpoint(&w);
            prep.finish((x_id, weight_id, g), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}
