//! diffusers' files both ways: fixtures saved by diffusers load and compute its outputs,
//! exports read back, configs are diffusers' own, what oxidiff does not build is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_models::{
    Projection, TimeInjection, UNetConfig, load_diffusers_unet, save_diffusers_unet,
    unet2d_condition_config_json, unet2d_config_json,
};
use serde_json::{Value, json};

use super::{
    FIXTURES, Io, Redraw, WEIGHTS, diffusers_test_config, fixture, max_abs_diff, read_io, run,
    small_config, write_io,
};

/// Where an export goes: kept under `OXIDIFF_EXPORT_DIR` when it is set (for the python check),
/// else in `tmp`.
fn export_dir(tmp: &Path, name: &str) -> PathBuf {
    std::env::var_os("OXIDIFF_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf())
        .join(name)
}

/// The committed fixtures, and the full-width one where `OXIDIFF_UNET2D_CONDITION_FULL` names
/// it.
fn fixtures() -> Vec<(String, PathBuf)> {
    let mut all: Vec<(String, PathBuf)> = FIXTURES
        .iter()
        .map(|n| (n.to_string(), fixture(n)))
        .collect();
    if let Some(full) = std::env::var_os("OXIDIFF_UNET2D_CONDITION_FULL") {
        all.push(("tiny_unet2d_condition_full".into(), PathBuf::from(full)));
    }
    all
}

#[test]
fn diffusers_unets_load_and_give_diffusers_outputs() {
    let device = Device::flex();
    for (name, dir) in fixtures() {
        let (config, unet) = load_diffusers_unet(&dir, &device).unwrap();
        let io = read_io(&dir.join("io.safetensors"), &device);
        let diff = max_abs_diff(run(&unet, &io), io.out.clone());
        eprintln!("{name}: max |oxidiff - diffusers| = {diff:e}");
        assert!(
            diff <= 1e-4,
            "{name}: differs from diffusers' output by {diff}"
        );
        // A misplaced weight would show far above the tolerance: the outputs are O(1).
        assert!(io.out.clone().abs().max().into_scalar::<f32>() > 0.5);
        // The text is wired: other states give another output.
        let other = Io {
            context: io.context.clone() * 0.5 + 0.3,
            ..io.clone()
        };
        assert!(
            max_abs_diff(run(&unet, &other), io.out.clone()) > 1e-2,
            "{name}"
        );
        // The footprint walk counts what config.init builds.
        assert_eq!(
            config.footprint().parameters,
            unet.num_params() as f64,
            "{name}"
        );
        assert!(unet.mid_attn.is_none() && unet.mid_transformer.is_some());
        match name.as_str() {
            "tiny_unet2d_condition_linear" => {
                assert_eq!(config.channel_mult, [1, 2, 2]);
                assert_eq!(config.attention_resolutions, [16, 8]);
                assert_eq!(config.cross_attention_dim, Some(12));
                assert_eq!(config.heads_per_level, Some(vec![2, 4, 8]));
                assert_eq!(config.transformer_layers_per_block, 2);
                assert!(config.use_linear_projection);
                assert_eq!(config.time_injection, TimeInjection::ScaleShift);
                assert_eq!(config.time_embed_dim, 40);
                assert_eq!(config.num_classes, Some(2));
                // The middle block has the last level's heads, the up levels their own.
                let mid = unet.mid_transformer.as_ref().unwrap();
                assert_eq!(mid.heads(), 8);
                assert_eq!(mid.transformer_blocks.len(), 2);
                assert!(matches!(mid.proj_in, Projection::Linear(_)));
                let up_top = unet.up[2].blocks[0].transformer.as_ref().unwrap();
                assert_eq!(up_top.heads(), 2);
                assert!(unet.up[0].blocks[0].transformer.is_none());
            }
            _ => {
                assert_eq!(config.channel_mult, [1, 2]);
                assert_eq!(config.num_res_blocks, 2);
                assert_eq!(config.attention_resolutions, [8]);
                assert_eq!(config.cross_attention_dim, Some(32));
                assert_eq!(config.num_heads, 8);
                assert_eq!(config.heads_per_level, None);
                assert_eq!(config.transformer_layers_per_block, 1);
                assert!(!config.use_linear_projection);
                assert_eq!(config.num_classes, None);
                let block = &unet.down[1].blocks[0];
                assert!(block.attn.is_none());
                let transformer = block.transformer.as_ref().unwrap();
                assert!(matches!(transformer.proj_out, Projection::Conv(_)));
                assert!(unet.down[0].blocks[0].transformer.is_none());
            }
        }
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

    for (name, config, batch, tokens) in [
        ("oxidiff_built", diffusers_test_config(), 2, 7),
        ("oxidiff_built_small", small_config(), 3, 4),
    ] {
        let unet = config.init(&device).map(&mut Redraw(7));
        let mut draw = Redraw(11);
        let size = config.image_size;
        let io = Io {
            x: draw.tensor([batch, config.in_channels, size, size], 2.0, &device),
            timesteps: Tensor::from_data(
                TensorData::new(vec![3.0f32, 250.25, 998.0][..batch].to_vec(), [batch]),
                &device,
            ),
            context: draw.tensor(
                [batch, tokens, config.cross_attention_dim.unwrap()],
                1.7,
                &device,
            ),
            class_labels: config.num_classes.map(|n| {
                // n is the "no class" label: diffusers' last embedding row.
                let labels: Vec<i64> = (0..batch as i64).map(|i| i.min(n as i64)).collect();
                Tensor::from_data(TensorData::new(labels, [batch]), &device)
            }),
            out: Tensor::zeros([1, 1, 1, 1], &device),
        };
        let ours = run(&unet, &io);
        assert!(ours.clone().abs().max().into_scalar::<f32>() > 0.1);
        let out = export_dir(tmp.path(), name);
        save_diffusers_unet(&unet, &config, &out).unwrap();
        let (again, reloaded) = load_diffusers_unet(&out, &device).unwrap();
        assert_eq!(again, config, "{name}");
        let io = Io { out: ours, ..io };
        assert_eq!(
            max_abs_diff(run(&reloaded, &io), io.out.clone()),
            0.0,
            "{name}"
        );
        write_io(&out, &io);
    }
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
        let written = unet2d_condition_config_json(&config).unwrap();
        let theirs = read_json(&fixture(name).join("config.json"));
        assert!(
            same_json(&written, &theirs),
            "{name}:\n ours   {written}\n theirs {theirs}"
        );
    }
    let written = unet2d_condition_config_json(&small_config()).unwrap();
    for (key, value) in [
        (
            "down_block_types",
            json!(["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]),
        ),
        (
            "up_block_types",
            json!(["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
        ),
        ("attention_head_dim", json!(2)),
        ("cross_attention_dim", json!(6)),
        ("num_class_embeds", json!(4)),
        ("time_embedding_dim", json!(24)),
    ] {
        assert_eq!(written[key], value, "{key}");
    }
    // Each class's writer refuses the other's networks.
    let err = unet2d_config_json(&small_config()).unwrap_err().to_string();
    assert!(
        err.contains("cross_attention_dim") && err.contains("UNet2DConditionModel"),
        "{err}"
    );
    let plain = UNetConfig {
        cross_attention_dim: None,
        ..small_config()
    };
    let err = unet2d_condition_config_json(&plain)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross_attention_dim") && err.contains("UNet2DModel"),
        "{err}"
    );
}

/// Copies fixture `name` into `tmp`/`sub`, `edit` changing its config.json, with `weights` (or
/// the fixture's) as its weight file; the load's error text.
fn load_changed(
    tmp: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    weights: Option<&[u8]>,
) -> String {
    let dir = tmp.join(format!("{name}_changed"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = read_json(&fixture(name).join("config.json"));
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    match weights {
        Some(bytes) => std::fs::write(dir.join(WEIGHTS), bytes).unwrap(),
        None => {
            std::fs::copy(fixture(name).join(WEIGHTS), dir.join(WEIGHTS)).unwrap();
        }
    }
    load_diffusers_unet(&dir, &Device::flex())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn what_oxidiff_does_not_build_is_refused_naming_key_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let name = FIXTURES[0];
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "only_cross_attention",
            json!(true),
            "only_cross_attention = true",
        ),
        (
            "only_cross_attention",
            json!([false, true]),
            "only_cross_attention = [false,true]",
        ),
        (
            "dual_cross_attention",
            json!(true),
            "dual_cross_attention = true",
        ),
        (
            "class_embed_type",
            json!("timestep"),
            "class_embed_type = \"timestep\"",
        ),
        (
            "addition_embed_type",
            json!("text_time"),
            "addition_embed_type = \"text_time\"",
        ),
        ("encoder_hid_dim", json!(16), "encoder_hid_dim = 16"),
        (
            "encoder_hid_dim_type",
            json!("text_proj"),
            "encoder_hid_dim_type = \"text_proj\"",
        ),
        ("num_attention_heads", json!(4), "num_attention_heads = 4"),
        (
            "mid_block_type",
            json!("UNetMidBlock2DSimpleCrossAttn"),
            "mid_block_type = \"UNetMidBlock2DSimpleCrossAttn\"",
        ),
        ("mid_block_type", Value::Null, "mid_block_type = null"),
        (
            "mid_block_only_cross_attention",
            json!(true),
            "mid_block_only_cross_attention = true",
        ),
        (
            "attention_type",
            json!("gated"),
            "attention_type = \"gated\"",
        ),
        ("conv_in_kernel", json!(5), "conv_in_kernel = 5"),
        ("conv_out_kernel", json!(1), "conv_out_kernel = 1"),
        ("time_cond_proj_dim", json!(8), "time_cond_proj_dim = 8"),
        (
            "time_embedding_act_fn",
            json!("silu"),
            "time_embedding_act_fn = \"silu\"",
        ),
        (
            "timestep_post_act",
            json!("silu"),
            "timestep_post_act = \"silu\"",
        ),
        (
            "class_embeddings_concat",
            json!(true),
            "class_embeddings_concat = true",
        ),
        (
            "resnet_skip_time_act",
            json!(true),
            "resnet_skip_time_act = true",
        ),
        (
            "resnet_out_scale_factor",
            json!(2.0),
            "resnet_out_scale_factor = 2.0",
        ),
        (
            "cross_attention_norm",
            json!("group_norm"),
            "cross_attention_norm = \"group_norm\"",
        ),
        (
            "reverse_transformer_layers_per_block",
            json!([[1, 1, 1], [1, 1, 1]]),
            "reverse_transformer_layers_per_block = [[1,1,1],[1,1,1]]",
        ),
        (
            "cross_attention_dim",
            json!([32, 16]),
            "cross_attention_dim = [32,16] is not one",
        ),
        (
            "transformer_layers_per_block",
            json!([1, 2]),
            "transformer_layers_per_block = [1,2] is not one",
        ),
        (
            "layers_per_block",
            json!([2, 1]),
            "layers_per_block = [2,1] is not one",
        ),
        (
            "attention_head_dim",
            json!(3),
            "attention_head_dim = 3 gives 3 heads to the 16 channels of level 1",
        ),
        (
            "attention_head_dim",
            json!([8]),
            "attention_head_dim = [8] is not a positive number",
        ),
        ("attention_head_dim", json!(0), "attention_head_dim = 0"),
        (
            "upcast_attention",
            json!("yes"),
            "upcast_attention = \"yes\"",
        ),
        (
            "use_linear_projection",
            json!(1),
            "use_linear_projection = 1",
        ),
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
        ("norm_eps", json!(1e-6), "norm_eps = 1e-6"),
        ("norm_num_groups", Value::Null, "norm_num_groups = null"),
        ("flip_sin_to_cos", json!(false), "flip_sin_to_cos = false"),
        ("sample_size", Value::Null, "sample_size = null"),
        (
            "down_block_types",
            json!(["DownBlock2D", "AttnDownBlock2D"]),
            "entry 1 is neither \"DownBlock2D\" nor \"CrossAttnDownBlock2D\"",
        ),
        (
            "up_block_types",
            json!(["UpBlock2D", "UpBlock2D"]),
            "entry 0 (UpBlock2D) does not mirror",
        ),
        // A UNet2DModel key.
        (
            "add_attention",
            json!(true),
            "add_attention = true is not a key of diffusers 0.42.1's UNet2DConditionModel",
        ),
    ];
    for (key, value, expected) in refused {
        let err = load_changed(
            tmp.path(),
            name,
            |c| {
                c.insert(key.to_string(), value.clone());
            },
            None,
        );
        assert!(
            err.contains("config.json") && err.contains(expected),
            "{key} = {value}: {err}"
        );
    }
    // The same config named a UNet2DModel is read as one, and its keys refused as not its own.
    let err = load_changed(
        tmp.path(),
        name,
        |c| {
            c.insert("_class_name".into(), json!("UNet2DModel"));
        },
        None,
    );
    assert!(
        err.contains("is not a key of diffusers 0.42.1's UNet2DModel"),
        "{err}"
    );

    // What changes nothing in f32, or restates diffusers' default, loads.
    for (key, value) in [
        ("upcast_attention", json!(true)),
        ("mid_block_only_cross_attention", json!(false)),
        ("only_cross_attention", json!([false, false])),
        ("cross_attention_dim", json!([32, 32])),
        ("attention_head_dim", json!([8, 8])),
        ("act_fn", json!("swish")),
    ] {
        let err = load_changed(
            tmp.path(),
            name,
            |c| {
                c.insert(key.to_string(), value.clone());
            },
            None,
        );
        assert!(err.is_empty(), "{key} = {value}: {err}");
    }
}

#[test]
fn weights_that_do_not_fit_the_config_are_refused_with_diffusers_names() {
    let tmp = tempfile::tempdir().unwrap();
    let name = FIXTURES[0];
    let weights = std::fs::read(fixture(name).join(WEIGHTS)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let dropped = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    let kept: HashMap<String, safetensors::tensor::TensorView<'_>> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != dropped)
        .collect();
    let fewer = safetensors::serialize(kept, None).unwrap();
    let err = load_changed(tmp.path(), name, |_| {}, Some(&fewer));
    assert!(
        err.contains(WEIGHTS) && err.contains(&format!("missing `{dropped}`")),
        "{err}"
    );
    // Another text width than the weights'.
    let err = load_changed(
        tmp.path(),
        name,
        |c| {
            c.insert("cross_attention_dim".into(), json!(24));
        },
        None,
    );
    assert!(
        err.contains(WEIGHTS)
            && err.contains("`down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight`"),
        "{err}"
    );
    // Two transformer blocks where the weights have one.
    let err = load_changed(
        tmp.path(),
        name,
        |c| {
            c.insert("transformer_layers_per_block".into(), json!(2));
        },
        None,
    );
    assert!(
        err.contains("missing `down_blocks.1.attentions.0.transformer_blocks.1."),
        "{err}"
    );
    // Linear projections where the weights have 1×1 convolutions.
    let err = load_changed(
        tmp.path(),
        name,
        |c| {
            c.insert("use_linear_projection".into(), json!(true));
        },
        None,
    );
    assert!(
        err.contains(WEIGHTS) && err.contains("proj_in.weight"),
        "{err}"
    );
}
