//! Parity with diffusers' `UNet2DModel`: tiny random models saved by the real diffusers
//! (`tests/fixtures/tiny_unet2d/`, additive time injection, and
//! `tests/fixtures/tiny_unet2d_scale_shift/`, scale-shift with class labels; written by
//! `/opt/refenv/bin/python tools/reference/unet2d_golden.py` with torch 2.15, diffusers 0.42.1)
//! load here and give diffusers' outputs on the stored inputs; exported, they and a UNet built
//! by oxidiff read back to the same config and the same numbers.
//!
//! The other direction needs python, which CI has not, so it is a step by hand: with
//! `OXIDIFF_EXPORT_DIR` set, `an_export_reads_back_to_the_same_config_and_outputs` keeps its
//! exports (each with oxidiff's inputs and outputs in `oxidiff_io.safetensors`) for diffusers to
//! load and run:
//!
//! ```text
//! OXIDIFF_EXPORT_DIR=/tmp/unet2d_export cargo test --workspace --features oxidiff-train/wgpu --test unet2d
//! /opt/refenv/bin/python tools/reference/unet2d_golden.py --check-export /tmp/unet2d_export
//! ```
//!
//! which printed (2026-12-02; the fixtures themselves load here within 2.9e-6 and 1.4e-5 of
//! diffusers' outputs):
//!
//! ```text
//! /tmp/unet2d_export/oxidiff_built: max |diffusers - oxidiff| = 4.29e-06 (|out| max 4.56)
//! /tmp/unet2d_export/tiny_unet2d: max |diffusers - oxidiff| = 2.92e-06 (|out| max 2.42)
//! /tmp/unet2d_export/tiny_unet2d_scale_shift: max |diffusers - oxidiff| = 1.38e-05 (|out| max 3.05)
//! ```

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxidiff_models::{
    TimeInjection, UNet, UNetConfig, load_diffusers_unet, save_diffusers_unet, unet2d_config_json,
};
use serde_json::{Value, json};

use common::{TensorFile, fixture};

const FIXTURES: [&str; 2] = ["tiny_unet2d", "tiny_unet2d_scale_shift"];
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

/// A model's inputs and the output it should give.
struct Io {
    x: Tensor<4>,
    timesteps: Tensor<1>,
    class_labels: Option<Tensor<1, Int>>,
    out: Tensor<4>,
}

/// `io.safetensors` of a fixture (float32 `x`, `timesteps`, `out`; int64 `class_labels`).
fn read_io(path: &Path, device: &Device) -> Io {
    let io = TensorFile::read(path);
    Io {
        x: io.float("x", device),
        timesteps: io.float("timesteps", device),
        class_labels: io.int("class_labels", device),
        out: io.float("out", device),
    }
}

/// Writes `io` as `oxidiff_io.safetensors` in `dir`, for `unet2d_golden.py --check-export`.
fn write_io(dir: &Path, io: &Io) {
    let f32_bytes = |data: TensorData| -> (Vec<u8>, Vec<usize>) {
        let shape = data.shape().to_vec();
        let bytes = data
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        (bytes, shape)
    };
    let mut tensors = vec![
        ("x", safetensors::Dtype::F32, f32_bytes(io.x.to_data())),
        (
            "timesteps",
            safetensors::Dtype::F32,
            f32_bytes(io.timesteps.to_data()),
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
    unet.forward(io.x.clone(), io.timesteps.clone(), io.class_labels.clone())
}

fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar::<f32>()
}

/// Where an export goes: kept under `OXIDIFF_EXPORT_DIR` when it is set (for the python check),
/// else in `tmp`.
fn export_dir(tmp: &Path, name: &str) -> PathBuf {
    std::env::var_os("OXIDIFF_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf())
        .join(name)
}

#[test]
fn diffusers_unets_load_and_give_diffusers_outputs() {
    let device = Device::flex();
    for name in FIXTURES {
        let (config, unet) = load_diffusers_unet(&fixture(name), &device).unwrap();
        let io = read_io(&fixture(name).join("io.safetensors"), &device);
        let diff = max_abs_diff(run(&unet, &io), io.out.clone());
        eprintln!("{name}: max |oxidiff - diffusers| = {diff:e}");
        assert!(
            diff <= 1e-4,
            "{name}: differs from diffusers' output by {diff}"
        );
        // A misplaced weight would show far above the tolerance: the outputs are O(1).
        assert!(io.out.abs().max().into_scalar::<f32>() > 0.5);
        match name {
            "tiny_unet2d" => {
                assert_eq!(config.channel_mult, [1, 2]);
                assert_eq!(config.attention_resolutions, [4]);
                assert_eq!(config.num_heads, 4);
                assert_eq!(config.time_embed_dim, 64);
                assert_eq!(config.time_injection, TimeInjection::Add);
                assert_eq!(config.num_classes, None);
            }
            _ => {
                assert_eq!(config.channel_mult, [1, 2, 2]);
                assert_eq!(config.attention_resolutions, [8]);
                assert_eq!(config.num_heads, 4);
                assert_eq!(config.time_embed_dim, 40);
                assert_eq!(config.time_injection, TimeInjection::ScaleShift);
                // num_class_embeds 5 = 4 classes and the "no class" row.
                assert_eq!(config.num_classes, Some(4));
                assert_eq!(unet.null_label(), Some(4));
            }
        }
    }
}

/// Draws every parameter again from a fixed sequence (so the export checked by python is the
/// same every run), none of them zero as a fresh UNet's output convolution, attention outputs
/// and second convolutions are: vectors in [0.4, 1.2] (scales and biases alike), the rest
/// uniform with variance 1/fan-in.
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
}

impl ModuleMapper for Redraw {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let dims = t.dims();
            let count: usize = dims.iter().product();
            let fan_in: usize = dims[1..].iter().product();
            let values: Vec<f32> = (0..count)
                .map(|_| match D {
                    1 => 0.8 + 0.4 * self.next(),
                    _ => self.next() * (3.0 / fan_in as f32).sqrt(),
                })
                .collect();
            Tensor::from_data(TensorData::new(values, dims), &t.device())
        })
    }
}

/// A UNet built by oxidiff rather than diffusers: three levels with attention at two of one
/// width (2 heads of 8), class labels, a time embedding width of its own.
fn oxidiff_config() -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 3,
        out_channels: 6,
        model_channels: 8,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 2,
        attention_resolutions: vec![8, 4],
        num_heads: 2,
        dropout: 0.0,
        norm_groups: 4,
        time_embed_dim: 24,
        time_injection: TimeInjection::Add,
        num_classes: Some(3),
        cross_attention_dim: None,
        transformer_layers_per_block: 1,
        use_linear_projection: false,
        heads_per_level: None,
    }
}

#[test]
fn an_export_reads_back_to_the_same_config_and_outputs() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let (config, unet) = load_diffusers_unet(&fixture(name), &device).unwrap();
        let io = read_io(&fixture(name).join("io.safetensors"), &device);
        let out = export_dir(tmp.path(), name);
        save_diffusers_unet(&unet, &config, &out).unwrap();
        let (again, reloaded) = load_diffusers_unet(&out, &device).unwrap();
        assert_eq!(again, config, "{name}");
        let ours = run(&unet, &io);
        assert_eq!(
            max_abs_diff(run(&reloaded, &io), ours.clone()),
            0.0,
            "{name}"
        );
        write_io(&out, &Io { out: ours, ..io });
    }

    let config = oxidiff_config();
    let unet = config.init(&device).map(&mut Redraw(7));
    let mut draw = Redraw(11);
    let x: Vec<f32> = (0..3 * 3 * 16 * 16).map(|_| 2.0 * draw.next()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [3, 3, 16, 16]), &device);
    let timesteps =
        Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 250.25, 998.0], [3]), &device);
    // Label 3 is the "no class" label: diffusers' fourth embedding row.
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 1], [3]), &device);
    let ours = unet.forward(x.clone(), timesteps.clone(), Some(labels.clone()));
    assert!(ours.clone().abs().max().into_scalar::<f32>() > 0.1);
    let out = export_dir(tmp.path(), "oxidiff_built");
    save_diffusers_unet(&unet, &config, &out).unwrap();
    // Written twice into the same directory: the second replaces the first.
    save_diffusers_unet(&unet, &config, &out).unwrap();
    let (again, reloaded) = load_diffusers_unet(&out, &device).unwrap();
    assert_eq!(again, config);
    let io = Io {
        x,
        timesteps,
        class_labels: Some(labels),
        out: ours,
    };
    assert_eq!(max_abs_diff(run(&reloaded, &io), io.out.clone()), 0.0);
    write_io(&out, &io);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Numbers compare by value (diffusers writes `dropout` as 0.0, `freq_shift` as 0).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn the_config_json_written_is_diffusers_own() {
    let device = Device::flex();
    // For a model diffusers saved, oxidiff writes back the config.json diffusers wrote, key for
    // key and value for value.
    for name in FIXTURES {
        let (config, _) = load_diffusers_unet(&fixture(name), &device).unwrap();
        let written = unet2d_config_json(&config).unwrap();
        let theirs = read_json(&fixture(name).join("config.json"));
        assert!(
            same_json(&written, &theirs),
            "{name}:\n ours   {written}\n theirs {theirs}"
        );
    }
    let written = unet2d_config_json(&oxidiff_config()).unwrap();
    let expected = json!({
        "_class_name": "UNet2DModel",
        "sample_size": 16,
        "in_channels": 3,
        "out_channels": 6,
        "block_out_channels": [8, 16, 16],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "mid_block_type": "UNetMidBlock2D",
        "attention_head_dim": 8,
        "norm_num_groups": 4,
        "resnet_time_scale_shift": "default",
        "time_embedding_type": "positional",
        "time_embedding_dim": 24,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "num_class_embeds": 4,
        "class_embed_type": null,
        "center_input_sample": false,
        "act_fn": "silu",
        "norm_eps": 1e-5,
        "downsample_padding": 1,
        "add_attention": true,
    });
    for (key, value) in expected.as_object().unwrap() {
        assert!(
            written.get(key).is_some_and(|w| same_json(w, value)),
            "{key}: {:?}, expected {value}",
            written.get(key)
        );
    }
    assert_eq!(written["_diffusers_version"], "0.42.1");

    let scale_shift = UNetConfig {
        time_injection: TimeInjection::ScaleShift,
        time_embed_dim: 32,
        ..oxidiff_config()
    };
    let written = unet2d_config_json(&scale_shift).unwrap();
    assert_eq!(written["resnet_time_scale_shift"], "scale_shift");
    // Keeps the mid-block attention's GroupNorm, which diffusers drops under scale_shift when
    // this is null; and 4 × model_channels is diffusers' null.
    assert_eq!(written["attn_norm_num_groups"], 4);
    assert_eq!(written["time_embedding_dim"], Value::Null);
}

/// Loads a copy of fixture `name` whose config.json is edited by `edit`; the error's text.
fn load_edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("unet");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = read_json(&fixture(name).join("config.json"));
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(fixture(name).join(WEIGHTS), dir.join(WEIGHTS)).unwrap();
    load_diffusers_unet(&dir, &Device::flex())
        .expect_err("refused")
        .to_string()
}

#[test]
fn what_oxidiffs_unet_cannot_represent_is_refused_naming_key_and_value() {
    // A resampler type where no attention block has that resampler changes nothing.
    let config = read_json(&fixture("tiny_unet2d").join("config.json"));
    let mut resnet_down = config.as_object().unwrap().clone();
    resnet_down.insert("downsample_type".into(), json!("resnet"));
    oxidiff_models::unet_config_from_unet2d_json(&Value::Object(resnet_down), Path::new("c.json"))
        .unwrap();

    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "time_embedding_type",
            json!("fourier"),
            "time_embedding_type = \"fourier\"",
        ),
        (
            "center_input_sample",
            json!(true),
            "center_input_sample = true",
        ),
        (
            "class_embed_type",
            json!("timestep"),
            "class_embed_type = \"timestep\"",
        ),
        (
            "resnet_time_scale_shift",
            json!("spatial"),
            "resnet_time_scale_shift = \"spatial\"",
        ),
        ("norm_eps", json!(1e-6), "norm_eps = 1e-6"),
        ("flip_sin_to_cos", json!(false), "flip_sin_to_cos = false"),
        ("freq_shift", json!(1), "freq_shift = 1"),
        ("act_fn", json!("gelu"), "act_fn = \"gelu\""),
        (
            "mid_block_scale_factor",
            json!(2),
            "mid_block_scale_factor = 2",
        ),
        ("downsample_padding", json!(0), "downsample_padding = 0"),
        ("mid_block_type", Value::Null, "mid_block_type = null"),
        ("add_attention", json!(false), "add_attention = false"),
        (
            "_class_name",
            json!("UNet2DConditionModel"),
            "_class_name = \"UNet2DConditionModel\"",
        ),
        (
            "cross_attention_dim",
            json!(32),
            "cross_attention_dim = 32 is not a key",
        ),
        ("num_class_embeds", json!(1), "num_class_embeds = 1"),
        ("norm_num_groups", Value::Null, "norm_num_groups = null"),
        (
            "attention_head_dim",
            json!(3),
            "attention_head_dim = 3 does not divide the 32",
        ),
        ("sample_size", json!([8, 16]), "sample_size = [8,16]"),
        (
            "block_out_channels",
            json!([16, 24]),
            "block_out_channels = [16,24]",
        ),
        // Attention down at 4×4 but not up at 4×4.
        (
            "up_block_types",
            json!(["UpBlock2D", "UpBlock2D"]),
            "up_block_types = [\"UpBlock2D\",\"UpBlock2D\"] entry 0 (UpBlock2D) does not mirror",
        ),
        (
            "down_block_types",
            json!(["DownBlock2D", "CrossAttnDownBlock2D"]),
            "entry 1 is neither",
        ),
        // Up at 4×4 attention has an upsampler (down at 4×4, the lowest level, has none).
        (
            "upsample_type",
            json!("resnet"),
            "upsample_type = \"resnet\"",
        ),
    ];
    for (key, value, expected) in refused {
        let err = load_edited("tiny_unet2d", |c| {
            c.insert(key.to_string(), value.clone());
        });
        assert!(
            err.contains("config.json") && err.contains(expected),
            "{key}: {err}"
        );
    }

    // Attention at both levels: 2 heads of 8 at 16 channels, 4 at 32, where oxidiff has one
    // head count.
    let err = load_edited("tiny_unet2d", |c| {
        c.insert(
            "down_block_types".into(),
            json!(["AttnDownBlock2D", "AttnDownBlock2D"]),
        );
        c.insert(
            "up_block_types".into(),
            json!(["AttnUpBlock2D", "AttnUpBlock2D"]),
        );
    });
    assert!(
        err.contains("attention_head_dim = 8 gives the attention blocks different head counts")
            && err.contains("2 at 16 channels, 4 at 32 channels"),
        "{err}"
    );

    // Scale-shift with diffusers' default attn_norm_num_groups: a mid attention without a norm.
    let err = load_edited("tiny_unet2d_scale_shift", |c| {
        c.remove("attn_norm_num_groups");
    });
    assert!(
        err.contains("attn_norm_num_groups = absent") && err.contains("without a GroupNorm"),
        "{err}"
    );
    let err = load_edited("tiny_unet2d_scale_shift", |c| {
        c.insert("attn_norm_num_groups".into(), json!(2));
    });
    assert!(err.contains("attn_norm_num_groups = 2"), "{err}");
}

/// Writes fixture `name`'s config.json and `weights` (bytes) into a fresh directory under
/// `tmp`; the error of loading it.
fn load_with_weights(tmp: &Path, name: &str, weights: Option<&[u8]>) -> String {
    let dir = tmp.join(format!("{name}-{}", weights.map_or(0, <[u8]>::len)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(name).join("config.json"), dir.join("config.json")).unwrap();
    if let Some(bytes) = weights {
        std::fs::write(dir.join(WEIGHTS), bytes).unwrap();
    }
    load_diffusers_unet(&dir, &Device::flex())
        .expect_err("refused")
        .to_string()
}

#[test]
fn bad_model_files_are_refused_naming_the_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "tiny_unet2d";
    let weights = std::fs::read(fixture(name).join(WEIGHTS)).unwrap();

    let err = load_with_weights(tmp.path(), name, None);
    assert!(err.contains(WEIGHTS) && err.contains("missing"), "{err}");

    let err = load_with_weights(tmp.path(), name, Some(&weights[..weights.len() / 2]));
    assert!(err.contains(WEIGHTS) && err.contains("unreadable"), "{err}");

    // All tensors but one, written again.
    let file = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let dropped = "mid_block.attentions.0.to_k.weight";
    let kept: HashMap<String, safetensors::tensor::TensorView<'_>> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != dropped)
        .collect();
    let fewer = safetensors::serialize(kept, None).unwrap();
    let err = load_with_weights(tmp.path(), name, Some(&fewer));
    assert!(
        err.contains(WEIGHTS) && err.contains(&format!("missing `{dropped}`")),
        "{err}"
    );

    // A config with fewer resnets than the weights: diffusers' names of the extra tensors.
    let err = load_edited(name, |c| {
        c.insert("layers_per_block".into(), json!(1));
    });
    assert!(
        err.contains(WEIGHTS) && err.contains("unexpected `down_blocks.0.resnets.1."),
        "{err}"
    );
    // One input channel more than the weights have.
    let err = load_edited(name, |c| {
        c.insert("in_channels".into(), json!(4));
    });
    assert!(
        err.contains("`conv_in.weight` has shape [16, 3, 3, 3]"),
        "{err}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = load_diffusers_unet(&empty, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(empty.join("config.json"), "{ not json").unwrap();
    let err = load_diffusers_unet(&empty, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("not JSON"),
        "{err}"
    );
}

#[test]
fn a_unet_diffusers_cannot_express_is_not_exported() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    // Attention at 8 and 16 channels with 2 heads: heads of 4 and of 8.
    let config = UNetConfig {
        attention_resolutions: vec![16, 8],
        ..oxidiff_config()
    };
    let unet = config.init(&device);
    let dir = tmp.path().join("refused");
    let err = save_diffusers_unet(&unet, &config, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("num_heads") && err.contains("attention_head_dim"),
        "{err}"
    );
    assert!(!dir.exists());
    // One head everywhere is diffusers' null attention_head_dim.
    let one_head = UNetConfig {
        num_heads: 1,
        ..config
    };
    assert_eq!(
        unet2d_config_json(&one_head).unwrap()["attention_head_dim"],
        Value::Null
    );

    // A network that is not the config's.
    let err = save_diffusers_unet(&unet, &oxidiff_config(), &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not built from this config"), "{err}");
}
