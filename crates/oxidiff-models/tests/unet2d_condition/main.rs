//! The cross-attention UNet against diffusers' `UNet2DConditionModel`: tiny random models saved
//! by the real diffusers (`tests/fixtures/tiny_unet2d_condition/`, diffusers' own test config
//! at a quarter of its width, 1×1-convolution projections; `tests/fixtures/
//! tiny_unet2d_condition_linear/`, linear projections, 2 transformer blocks each, heads per
//! level, scale-shift, class labels; written by
//! `/opt/refenv/bin/python tools/reference/unet2d_condition_golden.py` with torch 2.15,
//! diffusers 0.42.1) load here and give diffusers' outputs on the stored inputs; exported, they
//! and a UNet built by oxidiff at diffusers' test config itself read back to the same config
//! and the same numbers. SD 1.5's parameter count is pinned through the footprint walk, which
//! is checked against the built network on every tiny config here (building 860M parameters
//! would take 3.4 GB in a test).
//!
//! By hand, with python (CI has none): `--full DIR` also writes diffusers' test config at full
//! width (5.7 MB, not committed), which the first test loads when
//! `OXIDIFF_UNET2D_CONDITION_FULL` names it; `OXIDIFF_EXPORT_DIR` keeps the exports (each with
//! oxidiff's inputs and outputs in `oxidiff_io.safetensors`) for diffusers to load and run:
//!
//! ```text
//! /opt/refenv/bin/python tools/reference/unet2d_condition_golden.py --full /tmp/ucfull
//! OXIDIFF_UNET2D_CONDITION_FULL=/tmp/ucfull/tiny_unet2d_condition_full \
//! OXIDIFF_EXPORT_DIR=/tmp/unet2d_condition_export \
//!   cargo test --workspace --features oxidiff-train/wgpu --test unet2d_condition -- --nocapture
//! /opt/refenv/bin/python tools/reference/unet2d_condition_golden.py \
//!   --check-export /tmp/unet2d_condition_export
//! ```
//!
//! which printed (2026-12-02; loaded here, the fixtures gave 9.7e-6 and 3.7e-5 and the
//! full-width one 8.3e-6 as their max |oxidiff - diffusers|):
//!
//! ```text
//! /tmp/unet2d_condition_export/oxidiff_built: max |diffusers - oxidiff| = 9.42e-06 (|out| max 5.5)
//! /tmp/unet2d_condition_export/oxidiff_built_small: max |diffusers - oxidiff| = 1.61e-06 (|out| max 2.86)
//! /tmp/unet2d_condition_export/tiny_unet2d_condition: max |diffusers - oxidiff| = 9.7e-06 (|out| max 2.78)
//! /tmp/unet2d_condition_export/tiny_unet2d_condition_linear: max |diffusers - oxidiff| = 3.35e-05 (|out| max 3.85)
//! ```
//!
//! `oxidiff_built` is diffusers' test config itself (block_out_channels (32, 64), 32 groups),
//! built and exported by oxidiff.

#[path = "../common/mod.rs"]
mod common;
mod diffusers;
mod network;

use std::path::Path;

use burn::module::{ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxidiff_models::{TimeInjection, UNet, UNetConfig};

use common::TensorFile;

const FIXTURES: [&str; 2] = ["tiny_unet2d_condition", "tiny_unet2d_condition_linear"];
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

pub(crate) use common::fixture;

/// A model's inputs and the output it should give.
#[derive(Clone)]
struct Io {
    x: Tensor<4>,
    timesteps: Tensor<1>,
    context: Tensor<3>,
    class_labels: Option<Tensor<1, Int>>,
    out: Tensor<4>,
}

/// `io.safetensors` of a fixture (float32 `x`, `timesteps`, `encoder_hidden_states`, `out`;
/// int64 `class_labels`).
fn read_io(path: &Path, device: &Device) -> Io {
    let io = TensorFile::read(path);
    Io {
        x: io.float("x", device),
        timesteps: io.float("timesteps", device),
        context: io.float("encoder_hidden_states", device),
        class_labels: io.int("class_labels", device),
        out: io.float("out", device),
    }
}

/// Writes `io` as `oxidiff_io.safetensors` in `dir`, for `--check-export`.
fn write_io(dir: &Path, io: &Io) {
    let f32_bytes = |data: TensorData| -> (Vec<u8>, Vec<usize>) {
        let shape = data.shape().to_vec();
        let bytes = data.iter::<f32>().flat_map(|v| v.to_le_bytes()).collect();
        (bytes, shape)
    };
    let mut tensors = vec![
        ("x", safetensors::Dtype::F32, f32_bytes(io.x.to_data())),
        (
            "timesteps",
            safetensors::Dtype::F32,
            f32_bytes(io.timesteps.to_data()),
        ),
        (
            "encoder_hidden_states",
            safetensors::Dtype::F32,
            f32_bytes(io.context.to_data()),
        ),
        ("out", safetensors::Dtype::F32, f32_bytes(io.out.to_data())),
    ];
    if let Some(labels) = &io.class_labels {
        let data = labels.to_data();
        let bytes = data.iter::<i64>().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((
            "class_labels",
            safetensors::Dtype::I64,
            (bytes, data.shape().to_vec()),
        ));
    }
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, (bytes, shape))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (*name, view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("oxidiff_io.safetensors")).unwrap();
}

fn run(unet: &UNet, io: &Io) -> Tensor<4> {
    unet.forward_with_context(
        io.x.clone(),
        io.timesteps.clone(),
        io.class_labels.clone(),
        Some(io.context.clone()),
    )
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar::<f32>()
}

/// Draws every parameter again from a fixed sequence (so the export checked by python is the
/// same every run), none of them zero as a fresh UNet's output layers are: vectors in
/// [0.4, 1.2] (scales and biases alike), the rest uniform with variance 1/fan-in.
struct Redraw(u64);

impl Redraw {
    /// Uniform in [-1, 1) (a 64-bit LCG's top bits).
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn tensor<const D: usize>(
        &mut self,
        dims: [usize; D],
        scale: f32,
        device: &Device,
    ) -> Tensor<D> {
        let values: Vec<f32> = (0..dims.iter().product())
            .map(|_| scale * self.next())
            .collect();
        Tensor::from_data(TensorData::new(values, dims), device)
    }
}

impl ModuleMapper for Redraw {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let dims = t.dims();
            // burn's linear weights are [in, out]: the fan-in is the first axis there.
            let fan_in: usize = match D {
                2 => dims[0],
                _ => dims[1..].iter().product(),
            };
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|_| match D {
                    1 => 0.8 + 0.4 * self.next(),
                    _ => self.next() * (3.0 / fan_in as f32).sqrt(),
                })
                .collect();
            let drawn = Tensor::from_data(TensorData::new(values, dims), &t.device());
            // The drawn value stays a trained parameter where the old one was.
            if t.is_require_grad() {
                drawn.require_grad()
            } else {
                drawn
            }
        })
    }
}

/// diffusers' own `UNet2DConditionModel` test config, built by oxidiff.
fn diffusers_test_config() -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 4,
        out_channels: 4,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 2,
        attention_resolutions: vec![8],
        num_heads: 8,
        dropout: 0.0,
        norm_groups: 32,
        time_embed_dim: 128,
        time_injection: TimeInjection::Add,
        num_classes: None,
        cross_attention_dim: Some(32),
        transformer_layers_per_block: 1,
        use_linear_projection: false,
        heads_per_level: None,
    }
}

/// A small cross-attention UNet of oxidiff's own: attention at both levels, 2 heads, classes.
fn small_config() -> UNetConfig {
    UNetConfig {
        image_size: 8,
        in_channels: 3,
        out_channels: 3,
        model_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![8, 4],
        num_heads: 2,
        dropout: 0.0,
        norm_groups: 4,
        time_embed_dim: 24,
        time_injection: TimeInjection::Add,
        num_classes: Some(3),
        cross_attention_dim: Some(6),
        transformer_layers_per_block: 1,
        use_linear_projection: false,
        heads_per_level: None,
    }
}

/// `[B, L, D]` states: one fixed pattern, scaled by `values[i]` in item `i`.
fn states(batch: usize, tokens: usize, dim: usize, values: &[f32], device: &Device) -> Tensor<3> {
    let data: Vec<f32> = (0..batch * tokens * dim)
        .map(|i| values[i / (tokens * dim)] * ((i % 7) as f32 - 3.0) / 3.0)
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, tokens, dim]), device)
}
