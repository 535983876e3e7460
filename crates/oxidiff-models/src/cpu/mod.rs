//! Fast paths for burn's `flex` CPU backend.
//!
//! The layers call these instead of burn's modules directly; on any other backend, or with
//! `OXIDIFF_CPU_KERNELS=0` in the environment (to measure or rule them out), they fall back to
//! burn's implementation. The maths is the same: tests check forward values and gradients of
//! every fast path against burn's own on random inputs.

mod conv;
pub mod conv_kernels;

use std::sync::OnceLock;

use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
use burn::tensor::Tensor;

pub use conv::{conv2d, conv2d_route};

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
    // Compares the kind of the tensors themselves (not just their device): a parameter loaded
    // without autodiff next to a tracked activation is a mix, which burn handles.
    let (ka, kb) = (
        kind_of(a.device().as_dispatch()),
        kind_of(b.device().as_dispatch()),
    );
    if ka == kb { ka } else { BackendKind::Other }
}
