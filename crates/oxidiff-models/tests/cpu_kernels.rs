//! The CPU fast paths against burn's own implementation: same forward values and same gradients
//! (input and every parameter) on random inputs, for the layer shapes the UNet uses.
//!
//! Tolerance: 1e-4 of the largest magnitude of the reference tensor. Both sides accumulate in
//! f32 in a different order (one GEMM over C_in·k², or Winograd's transformed products, versus
//! burn's tiles), so bit equality is not expected; an indexing or transposition error shows up
//! as O(1) differences.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{gelu, silu, softmax};
use burn::tensor::{Device, Distribution, Gradients, Tensor, TensorData};
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
/// (C_in, C_out, kernel, stride, padding, size). 3×3 stride-1 convolutions take Winograd's
/// F(2×2) below 16×16 and F(4×4) from 16×16 on (18×18 leaves partial tiles at the edges).
const CASES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (3, 8, 3, 1, 1, 8),
    (8, 6, 3, 1, 1, 16),
    (4, 5, 3, 1, 1, 18),
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

/// burn's scaled dot-product attention, the reference for [`cpu::attention`].
fn reference_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [_, _, _, d] = q.dims();
    softmax(q.matmul(k.transpose()) / (d as f64).sqrt(), 3).matmul(v)
}

/// (batch, heads, queries, keys, head_dim): self-attention with one head as in `small`, two
/// heads, an odd token count; cross-attention to fewer and to more keys than queries (77 text
/// tokens).
const ATTENTION_CASES: [(usize, usize, usize, usize, usize); 5] = [
    (2, 1, 16, 16, 8),
    (2, 2, 9, 9, 4),
    (1, 3, 25, 25, 6),
    (2, 2, 16, 7, 8),
    (1, 4, 9, 77, 4),
];

#[test]
fn attention_forward_matches_burn_without_autodiff() {
    let device = Device::flex();
    device.seed(6);
    for (b, h, n, m, d) in ATTENTION_CASES {
        let qkv = |n| Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 2.0), &device);
        let (q, k, v) = (qkv(n), qkv(m), qkv(m));
        assert_eq!(cpu::attention_route(&q, &k, &v), BackendKind::Flex);
        assert_close(
            &format!("attention B{b} H{h} N{n} M{m} d{d}"),
            to_vec(cpu::attention(q.clone(), k.clone(), v.clone())),
            to_vec(reference_attention(q, k, v)),
        );
    }
}

#[test]
fn attention_gradients_match_burn() {
    let device = Device::flex().autodiff();
    device.seed(7);
    for (b, h, n, m, d) in ATTENTION_CASES {
        let qkv = |n| {
            Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 2.0), &device)
                .require_grad()
        };
        let (q, k, v) = (qkv(n), qkv(m), qkv(m));
        assert_eq!(cpu::attention_route(&q, &k, &v), BackendKind::AutodiffFlex);
        let probe = Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
        let case = format!("B{b} H{h} N{n} M{m} d{d}");
        let run = |fast: bool| {
            let out = if fast {
                cpu::attention(q.clone(), k.clone(), v.clone())
            } else {
                reference_attention(q.clone(), k.clone(), v.clone())
            };
            let forward = to_vec(out.clone());
            let grads = (out * probe.clone()).sum().backward();
            (
                forward,
                to_vec(q.grad(&grads).unwrap()),
                to_vec(k.grad(&grads).unwrap()),
                to_vec(v.grad(&grads).unwrap()),
            )
        };
        let (f_ours, dq_ours, dk_ours, dv_ours) = run(true);
        let (f_burn, dq_burn, dk_burn, dv_burn) = run(false);
        assert_close(&format!("forward {case}"), f_ours, f_burn);
        assert_close(&format!("dL/dq {case}"), dq_ours, dq_burn);
        assert_close(&format!("dL/dk {case}"), dk_ours, dk_burn);
        assert_close(&format!("dL/dv {case}"), dv_ours, dv_burn);
    }
}

/// The devices the transformer kernels are checked on: flex alone (forward values) and flex
/// under autodiff (gradients too), seeded.
fn both_devices(seed: u64) -> [(bool, Device); 2] {
    [false, true].map(|autodiff| {
        let device = if autodiff {
            Device::flex().autodiff()
        } else {
            Device::flex()
        };
        device.seed(seed);
        (autodiff, device)
    })
}

/// `N(0, std)` of `shape`, tracked when `autodiff`.
fn input<const D: usize>(
    shape: [usize; D],
    std: f64,
    autodiff: bool,
    device: &Device,
) -> Tensor<D> {
    let t = Tensor::random(shape, Distribution::Normal(0.0, std), device);
    if autodiff { t.require_grad() } else { t }
}

/// Checks one case of a fast path against burn's: `run(true)` is oxidiff's, `run(false)`
/// burn's. Their forward values must agree and, under autodiff, so must every gradient `grads`
/// reads (by name) of ⟨output, probe⟩.
fn check_case<const D: usize>(
    case: &str,
    autodiff: bool,
    probe: &Tensor<D>,
    run: impl Fn(bool) -> Tensor<D>,
    grads: impl Fn(&Gradients) -> Vec<(&'static str, Vec<f32>)>,
) {
    let results = [true, false].map(|fast| {
        let out = run(fast);
        let forward = to_vec(out.clone());
        let gradients = if autodiff {
            grads(&(out * probe.clone()).sum().backward())
        } else {
            vec![]
        };
        (forward, gradients)
    });
    let [(f_ours, g_ours), (f_burn, g_burn)] = results;
    assert_close(&format!("forward {case}"), f_ours, f_burn);
    for ((name, ours), (_, burn)) in g_ours.into_iter().zip(g_burn) {
        assert_close(&format!("dL/d{name} {case}"), ours, burn);
    }
}

/// The route a fast path must take on `autodiff`'s device.
fn kernel_route(autodiff: bool) -> BackendKind {
    if autodiff {
        BackendKind::AutodiffFlex
    } else {
        BackendKind::Flex
    }
}

/// burn's GEGLU, the reference for [`cpu::geglu`]: the first half times the exact GELU of the
/// second.
fn reference_geglu(x: Tensor<3>) -> Tensor<3> {
    let inner = x.dims()[2] / 2;
    x.clone().narrow(2, 0, inner) * gelu(x.narrow(2, inner, inner))
}

/// (batch, tokens, inner): the feed-forward of a 64-channel transformer (inner 256), a row
/// count that leaves a partial task, and an inner width off the vector length.
const GEGLU_CASES: [(usize, usize, usize); 3] = [(2, 16, 256), (1, 37, 12), (3, 5, 9)];

#[test]
fn geglu_forward_and_gradients_match_burn() {
    for (autodiff, device) in both_devices(8) {
        for (b, n, inner) in GEGLU_CASES {
            let x = input([b, n, 2 * inner], 2.0, autodiff, &device);
            assert_eq!(cpu::geglu_route(&x), kernel_route(autodiff));
            let probe = input([b, n, inner], 1.0, false, &device);
            check_case(
                &format!("geglu B{b} N{n} I{inner} autodiff {autodiff}"),
                autodiff,
                &probe,
                |fast| {
                    if fast {
                        cpu::geglu(x.clone())
                    } else {
                        reference_geglu(x.clone())
                    }
                },
                |grads| vec![("x", to_vec(x.grad(grads).unwrap()))],
            );
        }
    }
}

/// (batch, tokens, channels): a 64-channel transformer's tokens, an odd width, and rows over
/// several of the kernel's blocks with a partial last one.
const LAYER_NORM_CASES: [(usize, usize, usize); 3] = [(2, 16, 64), (3, 5, 13), (2, 50, 24)];

#[test]
fn layer_norm_forward_and_gradients_match_burn() {
    const EPS: f64 = 1e-5;
    for (autodiff, device) in both_devices(9) {
        for (b, n, c) in LAYER_NORM_CASES {
            let mut norm = LayerNormConfig::new(c).with_epsilon(EPS).init(&device);
            // Random affine parameters, so that a swapped γ and β would show.
            let param = |mean| {
                Param::from_tensor(Tensor::random(
                    [c],
                    Distribution::Normal(mean, 0.5),
                    &device,
                ))
            };
            norm.gamma = param(1.0);
            norm.beta = Some(param(0.0));
            // Off-centre inputs: the mean must come out.
            let x = Tensor::<3>::random([b, n, c], Distribution::Normal(2.0, 3.0), &device);
            let x = if autodiff { x.require_grad() } else { x };
            let probe = input([b, n, c], 1.0, false, &device);
            check_case(
                &format!("layer norm B{b} N{n} C{c} autodiff {autodiff}"),
                autodiff,
                &probe,
                |fast| {
                    if fast {
                        cpu::layer_norm(&norm, EPS, x.clone())
                    } else {
                        norm.forward(x.clone())
                    }
                },
                |grads| {
                    vec![
                        ("x", to_vec(x.grad(grads).unwrap())),
                        ("gamma", to_vec(norm.gamma.grad(grads).unwrap())),
                        (
                            "beta",
                            to_vec(norm.beta.as_ref().unwrap().grad(grads).unwrap()),
                        ),
                    ]
                },
            );
        }
    }
}

/// (rows, d_input, d_output, bias): a transformer projection over 16×16 tokens, a row count
/// that leaves a partial task, a feature count that leaves a partial weight-gradient block,
/// and the bias-free attention projections.
const LINEAR_CASES: [(usize, usize, usize, bool); 4] = [
    (512, 64, 64, true),
    (70, 13, 9, true),
    (33, 40, 17, false),
    (5, 384, 64, false),
];

#[test]
fn linear_forward_and_gradients_match_burn() {
    for (autodiff, device) in both_devices(10) {
        for (rows, d_in, d_out, bias) in LINEAR_CASES {
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let x = input([rows, d_in], 2.0, autodiff, &device);
            assert_eq!(cpu::linear_route(&layer, &x), kernel_route(autodiff));
            let probe = input([rows, d_out], 1.0, false, &device);
            check_case(
                &format!("linear R{rows} I{d_in} O{d_out} bias {bias} autodiff {autodiff}"),
                autodiff,
                &probe,
                |fast| {
                    if fast {
                        cpu::linear(&layer, x.clone())
                    } else {
                        layer.forward(x.clone())
                    }
                },
                |grads| {
                    let mut all = vec![
                        ("x", to_vec(x.grad(grads).unwrap())),
                        ("W", to_vec(layer.weight.grad(grads).unwrap())),
                    ];
                    if let Some(b) = &layer.bias {
                        all.push(("b", to_vec(b.grad(grads).unwrap())));
                    }
                    all
                },
            );
        }
    }
}

/// No mask, and the additive masks the text encoders put on their attention scores: each
/// image's last `b` keys hidden (padding, `[B, 1, 1, M]`), plus a causal mask (`[1, 1, N, N]`)
/// where queries and keys are the same tokens. -1e9 as `text::layers::MASKED`.
fn masks(b: usize, n: usize, m: usize, device: &Device) -> Vec<(&'static str, Option<Tensor<4>>)> {
    let padding: Vec<f32> = (0..b * m)
        .map(|i| if i % m >= m - i / m { -1e9 } else { 0.0 })
        .collect();
    let padding = Tensor::<4>::from_data(TensorData::new(padding, [b, 1, 1, m]), device);
    let mut all = vec![("unmasked", None), ("padding", Some(padding.clone()))];
    if n == m {
        let causal: Vec<f32> = (0..n * n)
            .map(|i| if i % n > i / n { -1e9 } else { 0.0 })
            .collect();
        let causal = Tensor::<4>::from_data(TensorData::new(causal, [1, 1, n, n]), device);
        all.push(("causal", Some(causal.clone())));
        all.push(("causal + padding", Some(causal + padding)));
    }
    all
}

/// [`cpu::attention_tokens`] against burn's attention on the heads split out of the tokens,
/// without a mask and with every mask shape the encoders build: forward and gradients. A
/// per-head bias takes burn's path.
#[test]
fn attention_on_tokens_matches_burn() {
    for (autodiff, device) in both_devices(12) {
        for (b, h, n, m, d) in ATTENTION_CASES {
            let c = h * d;
            let (q, k, v) = (
                input([b, n, c], 2.0, autodiff, &device),
                input([b, m, c], 2.0, autodiff, &device),
                input([b, m, c], 2.0, autodiff, &device),
            );
            let per_head = Tensor::<4>::zeros([b, h, n, m], &device);
            assert_eq!(
                cpu::attention_tokens_route(&q, &k, &v, h, Some(&per_head)),
                if h == 1 {
                    kernel_route(autodiff)
                } else {
                    BackendKind::Other
                }
            );
            for (mask, bias) in masks(b, n, m, &device) {
                assert_eq!(
                    cpu::attention_tokens_route(&q, &k, &v, h, bias.as_ref()),
                    kernel_route(autodiff)
                );
                let split = |t: Tensor<3>, n| t.reshape([b, n, h, d]).swap_dims(1, 2);
                let probe = input([b, n, c], 1.0, false, &device);
                check_case(
                    &format!("{mask} attention B{b} H{h} N{n} M{m} d{d} autodiff {autodiff}"),
                    autodiff,
                    &probe,
                    |fast| {
                        if fast {
                            cpu::attention_tokens(q.clone(), k.clone(), v.clone(), h, bias.clone())
                        } else {
                            let (q, k, v) = (
                                split(q.clone(), n),
                                split(k.clone(), m),
                                split(v.clone(), m),
                            );
                            let scores = q.matmul(k.transpose()) / (d as f64).sqrt();
                            let scores = match &bias {
                                Some(bias) => scores + bias.clone(),
                                None => scores,
                            };
                            softmax(scores, 3)
                                .matmul(v)
                                .swap_dims(1, 2)
                                .reshape([b, n, c])
                        }
                    },
                    |grads| {
                        vec![
                            ("q", to_vec(q.grad(grads).unwrap())),
                            ("k", to_vec(k.grad(grads).unwrap())),
                            ("v", to_vec(v.grad(grads).unwrap())),
                        ]
                    },
                );
            }
        }
    }
}

/// A masked key's probability is exactly 0, and no probability is subnormal: the kernel's exp
/// would give a masked score e^−87, subnormal once normalised, and GEMMs over subnormals run
/// many times slower.
#[test]
fn masked_probabilities_are_zero_not_subnormal() {
    let g = cpu::AttentionGeometry {
        images: 2,
        heads: 2,
        tokens: 9,
        key_tokens: 9,
        head_dim: 4,
    };
    let layouts = cpu::AttentionLayouts {
        q: cpu::AttentionLayout::tokens_major(&g, 9),
        kv: cpu::AttentionLayout::tokens_major(&g, 9),
    };
    let len = 2 * 9 * 8;
    let q: Vec<f32> = (0..len)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
        .collect();
    let k: Vec<f32> = (0..len)
        .map(|i| ((i * 11 % 13) as f32 - 6.0) / 3.0)
        .collect();
    // Causal: key j is hidden from query i where j > i.
    let bias: Vec<f32> = (0..2 * 81)
        .map(|i| if i % 9 > (i / 9) % 9 { -1e9 } else { 0.0 })
        .collect();
    let out = cpu::attention_forward(&g, &layouts, &q, &k, &k, Some(&bias));
    for (i, p) in out.probs.iter().enumerate() {
        let (query, key) = ((i / 9) % 9, i % 9);
        if key > query {
            assert_eq!(*p, 0.0, "masked probability {i}");
        }
        assert!(!p.is_subnormal(), "probability {i} is subnormal: {p:e}");
    }
}
