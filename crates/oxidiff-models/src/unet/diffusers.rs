//! diffusers' `UNet2DModel` directory for oxidiff's [`UNet`]: `config.json` with diffusers'
//! keys and `diffusion_pytorch_model.safetensors` with diffusers' tensor names, through
//! burn-store's PyTorch adapters (the shared `diffusers_io` module).
//!
//! The two networks compute the same function (checked against diffusers 0.42.1 by
//! `tests/unet2d.rs`): oxidiff's timestep features are `[cos, sin]` with frequencies
//! `10000^(-i/half)` (diffusers' `flip_sin_to_cos = true`, `freq_shift = 0`); its up levels and
//! skips run in diffusers' order; its attention splits channels into heads the same way and
//! scales by `1/√head_dim`; `TimeInjection::ScaleShift` is `resnet_time_scale_shift =
//! "scale_shift"` (scale first, then shift, `GN(h)·(1 + scale) + shift`). Only the module paths
//! differ, and a class-conditional oxidiff UNet keeps one more embedding row than it has
//! classes (the "no class" label of classifier-free guidance): `num_class_embeds =
//! num_classes + 1`, and diffusers' label `num_classes` is oxidiff's "no class".
//!
//! A UNet with `cross_attention_dim` is diffusers' `UNet2DConditionModel` the same way: its
//! residual blocks, resamplers and embeddings are named as above, each spatial transformer is
//! that block's `attentions.{j}` (`Transformer2DModel`, its layers named as diffusers names
//! them), and `tests/unet2d_condition.rs` checks it against diffusers 0.42.1. One pair of
//! functions reads and writes both classes: [`load_diffusers_unet`] goes by the config's
//! `_class_name`, [`save_diffusers_unet`] by `cross_attention_dim`.
//!
//! The config's keys map in [`super::diffusers_config`] and
//! [`super::diffusers_condition_config`]; here the directory is read and written, and each
//! tensor gets diffusers' name.

use std::path::Path;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot};
use burn::tensor::Device;
use serde_json::Value;

use super::diffusers_condition_config::{
    UNET2D_CONDITION, unet_config_from_unet2d_condition_json, unet2d_condition_config_json,
};
use super::diffusers_config::{unet_config_from_unet2d_json, unet2d_config_json};
use super::model::UNet;
use crate::ModelError;
use crate::config::UNetConfig;
use crate::diffusers_io::{exact, load_weights, pytorch_leaf, read_config, save_model};

/// Loads a `UNet2DModel` or `UNet2DConditionModel` directory (by its config's `_class_name`;
/// absent, a `UNet2DModel`) onto `device`. The second has `cross_attention_dim` set.
///
/// # Errors
/// A missing or unreadable file, a config oxidiff's UNet cannot represent (see
/// [`unet_config_from_unet2d_json`] and [`unet_config_from_unet2d_condition_json`]), weights
/// with missing, extra or mis-shaped tensors (the first few named with diffusers' names).
pub fn load_diffusers_unet(dir: &Path, device: &Device) -> Result<(UNetConfig, UNet), ModelError> {
    let (config_path, text) = read_config(dir)?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&config_path, format!("not JSON: {e}")))?;
    let config = match json.get("_class_name").and_then(Value::as_str) {
        Some(UNET2D_CONDITION) => unet_config_from_unet2d_condition_json(&json, &config_path)?,
        _ => unet_config_from_unet2d_json(&json, &config_path)?,
    };
    let mut unet = config.init(device);
    let remapper = remapper(&unet, |burn, diffusers| (diffusers, burn));
    load_weights(&mut unet, dir, remapper, |path| {
        diffusers_name(&pytorch_leaf(path))
    })?;
    Ok((config, unet))
}

/// Writes `unet` (built from `config`) as a `UNet2DModel` directory, or a
/// `UNet2DConditionModel` one when `config` has `cross_attention_dim` (created if needed), each
/// file atomically; that class's `from_pretrained` loads it.
///
/// # Errors
/// A config diffusers cannot express (see [`unet2d_config_json`] and
/// [`unet2d_condition_config_json`]), a network that was not built from `config`, or a file
/// that cannot be written.
pub fn save_diffusers_unet(unet: &UNet, config: &UNetConfig, dir: &Path) -> Result<(), ModelError> {
    let json = match config.cross_attention_dim {
        Some(_) => unet2d_condition_config_json(config)?,
        None => unet2d_config_json(config)?,
    };
    // The footprint walk counts the parameters `config.init` creates: a network built from
    // another config shows by its count (in all but contrived cases) before a config.json that
    // does not describe it is written.
    let expected = config.footprint().parameters as usize;
    if unet.num_params() != expected {
        return Err(ModelError::file(
            dir,
            format!(
                "the network has {} parameters but its config describes {expected}: \
                 it was not built from this config",
                unet.num_params()
            ),
        ));
    }
    let remapper = remapper(unet, |burn, diffusers| (burn, diffusers));
    save_model(dir, &json, unet, remapper)
}

/// A remapper renaming each of `unet`'s tensors: `pair(burn, diffusers)` gives `(from, to)`,
/// burn's side with PyTorch's leaf names (what the adapters match against).
fn remapper(unet: &UNet, pair: impl Fn(String, String) -> (String, String)) -> KeyRemapper {
    let patterns = unet
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| {
            let burn = pytorch_leaf(&tensor.name);
            let diffusers = diffusers_name(&burn);
            (burn, diffusers)
        })
        // conv_in is named alike in both: renaming it to itself is no rename.
        .filter(|(burn, diffusers)| burn != diffusers)
        .map(|(burn, diffusers)| {
            let (from, to) = pair(burn, diffusers);
            (exact(&from), to)
        });
    KeyRemapper::from_pattern_iter(patterns).expect("escaped names are valid patterns")
}

/// diffusers' name of the tensor at `path` in [`UNet`] (PyTorch's leaf names). A path this
/// does not know comes back unchanged, so it would show as missing when diffusers' files load:
/// `tests/unet2d.rs` loads models with every optional part (class embedding, 1×1 skips,
/// attention down, up and in the middle, both resamplers), `tests/unet2d_condition.rs` models
/// with transformers of both projections, down, up and in the middle.
fn diffusers_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.split_last() {
        Some((leaf, module)) => match diffusers_module(module) {
            Some(module) => format!("{module}.{leaf}"),
            None => path.to_string(),
        },
        None => path.to_string(),
    }
}

/// diffusers' name of the module at `module` (the path of [`diffusers_name`] without its leaf).
fn diffusers_module(module: &[&str]) -> Option<String> {
    Some(match module {
        ["time_embed", linear] => format!("time_embedding.{linear}"),
        ["class_embed"] => "class_embedding".to_string(),
        ["conv_in"] => "conv_in".to_string(),
        ["out_norm"] => "conv_norm_out".to_string(),
        ["out_conv"] => "conv_out".to_string(),
        ["mid_res_1", layer] => format!("mid_block.resnets.0.{}", resnet_layer(layer)),
        ["mid_attn", layer] => format!("mid_block.attentions.0.{}", attention_layer(layer)),
        ["mid_transformer", layer @ ..] => {
            format!("mid_block.attentions.0.{}", transformer_layer(layer)?)
        }
        ["mid_res_2", layer] => format!("mid_block.resnets.1.{}", resnet_layer(layer)),
        [way @ ("down" | "up"), level, "blocks", block, "res", layer] => {
            format!(
                "{way}_blocks.{level}.resnets.{block}.{}",
                resnet_layer(layer)
            )
        }
        [way @ ("down" | "up"), level, "blocks", block, "attn", layer] => {
            format!(
                "{way}_blocks.{level}.attentions.{block}.{}",
                attention_layer(layer)
            )
        }
        [
            way @ ("down" | "up"),
            level,
            "blocks",
            block,
            "transformer",
            layer @ ..,
        ] => {
            format!(
                "{way}_blocks.{level}.attentions.{block}.{}",
                transformer_layer(layer)?
            )
        }
        ["down", level, "downsample", "conv"] => format!("down_blocks.{level}.downsamplers.0.conv"),
        ["up", level, "upsample", "conv"] => format!("up_blocks.{level}.upsamplers.0.conv"),
        _ => return None,
    })
}

/// diffusers' `ResnetBlock2D` name of a [`super::ResBlock`] layer.
fn resnet_layer(layer: &str) -> &str {
    match layer {
        "norm_1" => "norm1",
        "conv_1" => "conv1",
        "emb_proj" => "time_emb_proj",
        "norm_2" => "norm2",
        "conv_2" => "conv2",
        "skip" => "conv_shortcut",
        other => other,
    }
}

/// diffusers' `Transformer2DModel` name of a [`super::SpatialTransformer`] layer (its path
/// inside the transformer); `None` for one this does not know.
fn transformer_layer(path: &[&str]) -> Option<String> {
    Some(match path {
        ["norm"] => "norm".to_string(),
        // The projection's variant (burn's enum) is no module of diffusers'.
        [projection @ ("proj_in" | "proj_out"), "Conv" | "Linear"] => projection.to_string(),
        [
            "transformer_blocks",
            i,
            layer @ ("norm1" | "norm2" | "norm3"),
        ] => {
            format!("transformer_blocks.{i}.{layer}")
        }
        [
            "transformer_blocks",
            i,
            attn @ ("attn1" | "attn2"),
            "to_out",
        ] => {
            format!("transformer_blocks.{i}.{attn}.to_out.0")
        }
        [
            "transformer_blocks",
            i,
            attn @ ("attn1" | "attn2"),
            qkv @ ("to_q" | "to_k" | "to_v"),
        ] => {
            format!("transformer_blocks.{i}.{attn}.{qkv}")
        }
        ["transformer_blocks", i, "ff", "proj"] => format!("transformer_blocks.{i}.ff.net.0.proj"),
        ["transformer_blocks", i, "ff", "out"] => format!("transformer_blocks.{i}.ff.net.2"),
        _ => return None,
    })
}

/// diffusers' `Attention` name of an [`super::AttentionBlock`] layer.
fn attention_layer(layer: &str) -> &str {
    match layer {
        "norm" => "group_norm",
        "query" => "to_q",
        "key" => "to_k",
        "value" => "to_v",
        "proj_out" => "to_out.0",
        other => other,
    }
}
