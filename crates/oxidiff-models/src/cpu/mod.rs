//! Fast paths for burn's `flex` CPU backend.
//!
//! The layers call these instead of burn's modules directly; on any other backend, or with
//! `OXIDIFF_CPU_KERNELS=0` in the environment (to measure or rule them out), they fall back to
//! burn's implementation. The maths is the same: tests check forward values and gradients of
//! every fast path against burn's own on random inputs.
//!
//! The slice-level kernels behind the layers (`*_forward`, `*_backward` over a `*Geometry`) are
//! public too, for benchmarks; the Winograd transforms stay inside the crate.

mod attention;
mod attention_kernels;
mod buffer;
mod conv;
mod conv_kernels;
mod geglu;
mod group_norm;
mod group_norm_kernels;
mod layer_norm;
mod layer_norm_kernels;
mod linear;
mod math;
mod matmul;
mod simd;
mod winograd_kernels;

use std::sync::OnceLock;

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
use burn::tensor::{DType, Tensor, TensorData};

pub use attention::{attention, attention_route, attention_tokens, attention_tokens_route};
pub use attention_kernels::{
    AttentionForward, AttentionGeometry, AttentionLayout, AttentionLayouts, attention_backward,
    attention_forward,
};
pub use conv::{conv2d, conv2d_route};
pub use conv_kernels::{
    ConvGeometry, conv2d_bias_backward, conv2d_forward, conv2d_weight_backward, conv2d_x_backward,
};
pub use geglu::{geglu, geglu_backward, geglu_forward, geglu_route};
pub use group_norm::{group_norm, group_norm_route, group_norm_silu};
pub use group_norm_kernels::{
    GroupNormForward, GroupNormGeometry, group_norm_backward, group_norm_forward,
};
pub use layer_norm::layer_norm;
pub use layer_norm_kernels::{
    LayerNormForward, LayerNormGeometry, layer_norm_backward, layer_norm_forward,
};
pub use linear::{
    LinearGeometry, linear, linear_backward, linear_forward, linear_route, linear_tokens,
};
pub(crate) use simd::vectorised;

/// Whether the fast paths are on (the default) or `OXIDIFF_CPU_KERNELS=0` turned them off.
pub fn kernels_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("OXIDIFF_CPU_KERNELS").map_or(true, |v| v != "0"))
}

/// Where a set of tensors lives, as far as the fast paths care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// All on `flex` without autodiff.
    Flex,
    /// All on `flex` under autodiff without gradient checkpointing.
    AutodiffFlex,
    /// Anything else, including a mix: burn's own implementation handles it.
    Other,
}

fn kind_of(device: &DispatchDevice) -> BackendKind {
    match device {
        DispatchDevice::Flex(_) => BackendKind::Flex,
        DispatchDevice::Autodiff(inner)
            if matches!(**inner, DispatchDevice::Flex(_))
                && inner.gradient_checkpointing_strategy()
                    == GradientCheckpointingStrategy::Disabled =>
        {
            BackendKind::AutodiffFlex
        }
        _ => BackendKind::Other,
    }
}

fn backend_kind<const D: usize, const E: usize>(a: &Tensor<D>, b: &Tensor<E>) -> BackendKind {
    if !kernels_enabled() {
        return BackendKind::Other;
    }
    // The kernels are f32 only; other float types take burn's path.
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return BackendKind::Other;
    }
    // Compares the kind of the tensors themselves (not just their device): a parameter loaded
    // without autodiff next to a tracked activation is a mix, which burn handles.
    let (ka, kb) = (
        kind_of(a.device().as_dispatch()),
        kind_of(b.device().as_dispatch()),
    );
    if ka == kb { ka } else { BackendKind::Other }
}

/// Contiguous f32 storage of a flex tensor, or `None` for another dtype.
pub(crate) fn f32_storage(tensor: &FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    match tensor.as_slice::<f32>() {
        Some(values) => Some(std::borrow::Cow::Borrowed(values)),
        None => Some(std::borrow::Cow::Owned(
            tensor.to_contiguous().storage::<f32>().to_vec(),
        )),
    }
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Runs `f` on one of rayon's worker threads and waits for it.
///
/// Why: every parallel kernel called from a thread outside the pool is injected into it, wakes
/// the workers and puts the caller to sleep until they finish; on a training step's hundreds of
/// kernels those wake-ups and the caller's own serial stretches (with both workers idle) were a
/// sixth of the wall time on two cores (bench/NOTES.md, 2026-12-04). Run from a worker, a kernel
/// splits its work onto that worker's own queue and the other workers steal from it.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
