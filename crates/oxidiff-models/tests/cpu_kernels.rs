//! The CPU fast paths against burn's own implementation: same forward values and same gradients
//! (input and every parameter) on random inputs, for the layer shapes the UNet uses.
//!
//! Tolerance: 1e-4 of the largest magnitude of the reference tensor. Both sides accumulate in
//! f32 in a different order (one GEMM over C_in·k² versus burn's tiles), so bit equality is not
//! expected; an indexing or transposition error shows up as O(1) differences.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Distribution, Tensor};
use oxidiff_models::cpu::{self, BackendKind};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(name: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{name}: max |difference| {worst} exceeds 1e-4 × {scale}"
    );
}

/// (C_in, C_out, kernel, stride, padding, H): conv3×3, the strided downsample, the 1×1 skip,
/// and an odd size that exercises the edges of the strided im2col.
const CASES: [(usize, usize, usize, usize, usize, usize); 5] = [
    (3, 8, 3, 1, 1, 8),
    (8, 8, 3, 2, 1, 8),
    (6, 4, 1, 1, 0, 8),
    (5, 7, 3, 2, 1, 7),
    (16, 8, 3, 1, 1, 4),
];

fn conv(c_in: usize, c_out: usize, k: usize, s: usize, p: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

#[test]
fn conv2d_forward_matches_burn_without_autodiff() {
    let device = Device::flex();
    device.seed(1);
    for (c_in, c_out, k, s, p, h) in CASES {
        let layer = conv(c_in, c_out, k, s, p, &device);
        let x = Tensor::<4>::random([3, c_in, h, h], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(cpu::conv2d_route(&layer, &x), BackendKind::Flex);
        let ours = to_vec(cpu::conv2d(&layer, x.clone()));
        let burns = to_vec(layer.forward(x));
        assert_close(
            &format!("forward {c_in}->{c_out} k{k} s{s} {h}x{h}"),
            ours,
            burns,
        );
    }
}

#[test]
fn conv2d_gradients_match_burn() {
    let device = Device::flex().autodiff();
    device.seed(2);
    for (c_in, c_out, k, s, p, h) in CASES {
        let layer = conv(c_in, c_out, k, s, p, &device);
        let x = Tensor::<4>::random([3, c_in, h, h], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        assert_eq!(cpu::conv2d_route(&layer, &x), BackendKind::AutodiffFlex);
        let probe_shape = layer.forward(x.clone()).dims();
        // A random linear functional of the output, so every output element has its own weight.
        let probe = Tensor::<4>::random(probe_shape, Distribution::Normal(0.0, 1.0), &device);
        let case = format!("{c_in}->{c_out} k{k} s{s} {h}x{h}");

        let run = |fast: bool| {
            let out = if fast {
                cpu::conv2d(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let forward = to_vec(out.clone());
            let grads = (out * probe.clone()).sum().backward();
            let bias = layer.bias.as_ref().unwrap();
            (
                forward,
                to_vec(x.grad(&grads).unwrap()),
                to_vec(layer.weight.grad(&grads).unwrap()),
                to_vec(bias.grad(&grads).unwrap()),
            )
        };
        let (f_ours, dx_ours, dw_ours, db_ours) = run(true);
        let (f_burn, dx_burn, dw_burn, db_burn) = run(false);
        assert_close(&format!("forward {case}"), f_ours, f_burn);
        assert_close(&format!("dL/dx {case}"), dx_ours, dx_burn);
        assert_close(&format!("dL/dW {case}"), dw_ours, dw_burn);
        assert_close(&format!("dL/db {case}"), db_ours, db_burn);
    }
}

/// GroupNorm with random γ and β (the initial 1 and 0 would hide a swapped or missing term).
fn group_norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    let mut norm = GroupNormConfig::new(groups, channels).init(device);
    let random = || Tensor::<1>::random([channels], Distribution::Normal(0.0, 1.0), device);
    norm.gamma = Some(Param::from_tensor(random()));
    norm.beta = Some(Param::from_tensor(random()));
    norm
}

/// (groups, channels, H): one channel per group, several, and the UNet's 32 groups.
const NORM_CASES: [(usize, usize, usize); 3] = [(4, 4, 5), (2, 6, 4), (32, 64, 3)];

#[test]
fn group_norm_and_silu_forward_match_burn_without_autodiff() {
    let device = Device::flex();
    device.seed(4);
    for (groups, channels, h) in NORM_CASES {
        let norm = group_norm(groups, channels, &device);
        // An offset and scale far from N(0, 1) checks that the statistics are really used.
        let x = Tensor::<4>::random([3, channels, h, h], Distribution::Normal(2.0, 3.0), &device);
        assert_eq!(cpu::group_norm_route(&norm, &x), BackendKind::Flex);
        let case = format!("G{groups} C{channels} {h}x{h}");
        assert_close(
            &format!("group_norm {case}"),
            to_vec(cpu::group_norm(&norm, x.clone())),
            to_vec(norm.forward(x.clone())),
        );
        assert_close(
            &format!("group_norm_silu {case}"),
            to_vec(cpu::group_norm_silu(&norm, x.clone())),
            to_vec(silu(norm.forward(x))),
        );
    }
}

#[test]
fn group_norm_and_silu_gradients_match_burn() {
    let device = Device::flex().autodiff();
    device.seed(5);
    for (groups, channels, h) in NORM_CASES {
        for with_silu in [false, true] {
            let norm = group_norm(groups, channels, &device);
            let x =
                Tensor::<4>::random([3, channels, h, h], Distribution::Normal(2.0, 3.0), &device)
                    .require_grad();
            assert_eq!(cpu::group_norm_route(&norm, &x), BackendKind::AutodiffFlex);
            let probe =
                Tensor::<4>::random([3, channels, h, h], Distribution::Normal(0.0, 1.0), &device);
            let case = format!("G{groups} C{channels} {h}x{h} silu={with_silu}");
            let run = |fast: bool| {
                let out = match (fast, with_silu) {
                    (true, true) => cpu::group_norm_silu(&norm, x.clone()),
                    (true, false) => cpu::group_norm(&norm, x.clone()),
                    (false, true) => silu(norm.forward(x.clone())),
                    (false, false) => norm.forward(x.clone()),
                };
                let forward = to_vec(out.clone());
                let grads = (out * probe.clone()).sum().backward();
                (
                    forward,
                    to_vec(x.grad(&grads).unwrap()),
                    to_vec(norm.gamma.as_ref().unwrap().grad(&grads).unwrap()),
                    to_vec(norm.beta.as_ref().unwrap().grad(&grads).unwrap()),
                )
            };
            let (f_ours, dx_ours, dg_ours, db_ours) = run(true);
            let (f_burn, dx_burn, dg_burn, db_burn) = run(false);
            assert_close(&format!("forward {case}"), f_ours, f_burn);
            assert_close(&format!("dL/dx {case}"), dx_ours, dx_burn);
            assert_close(&format!("dL/dgamma {case}"), dg_ours, dg_burn);
            assert_close(&format!("dL/dbeta {case}"), db_ours, db_burn);
        }
    }
}
