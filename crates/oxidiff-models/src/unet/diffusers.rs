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
//! Not every `UNet2DModel` is an oxidiff UNet; [`unet_config_from_unet2d_json`] refuses, naming
//! the key, what oxidiff cannot compute (Fourier or learned time embeddings, centred inputs,
//! `timestep`/`identity` class embeddings, spatial time injection, attention on one way of a
//! level only, attention blocks with different head counts, a mid block without attention or
//! without its GroupNorm, resnet down/upsamplers, other norm epsilons, activations or scale
//! factors).

use std::path::Path;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot};
use burn::tensor::Device;
use serde_json::{Map, Value, json};

use super::model::UNet;
use crate::ModelError;
use crate::config::{TimeInjection, UNetConfig};
use crate::diffusers_io::{
    DIFFUSERS_VERSION, exact, load_weights, pytorch_leaf, read_config, save_model,
};

/// burn's GroupNorm epsilon, the one every norm of oxidiff's UNet uses.
const NORM_EPS: f64 = 1e-5;

/// Loads a `UNet2DModel` directory onto `device`.
///
/// # Errors
/// A missing or unreadable file, a config oxidiff's UNet cannot represent (see
/// [`unet_config_from_unet2d_json`]), weights with missing, extra or mis-shaped tensors (the
/// first few named with diffusers' names).
pub fn load_diffusers_unet(dir: &Path, device: &Device) -> Result<(UNetConfig, UNet), ModelError> {
    let (config_path, text) = read_config(dir)?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&config_path, format!("not JSON: {e}")))?;
    let config = unet_config_from_unet2d_json(&json, &config_path)?;
    let mut unet = config.init(device);
    let remapper = remapper(&unet, |burn, diffusers| (diffusers, burn));
    load_weights(&mut unet, dir, remapper, |path| {
        diffusers_name(&pytorch_leaf(path))
    })?;
    Ok((config, unet))
}

/// Writes `unet` (built from `config`) as a `UNet2DModel` directory (created if needed), each
/// file atomically; `UNet2DModel.from_pretrained` loads it.
///
/// # Errors
/// A config diffusers cannot express (see [`unet2d_config_json`]), a network that was not built
/// from `config`, or a file that cannot be written.
pub fn save_diffusers_unet(unet: &UNet, config: &UNetConfig, dir: &Path) -> Result<(), ModelError> {
    let json = unet2d_config_json(config)?;
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

/// diffusers' `UNet2DModel` config for `config`: every key `UNet2DModel.__init__` takes in
/// diffusers 0.42.1 (so nothing is left to a default a later release might change), each as
/// `save_pretrained` writes it for the same network (null where diffusers' null means the
/// value oxidiff has: `time_embedding_dim` of 4 × model_channels, `attn_norm_num_groups` of
/// norm_num_groups under additive time injection).
///
/// # Errors
/// An invalid config, or attention heads diffusers cannot express: it has one
/// `attention_head_dim` for every attention block (the mid block's included), so `num_heads > 1`
/// needs one channel count across them.
pub fn unet2d_config_json(config: &UNetConfig) -> Result<Value, ModelError> {
    config.validate()?;
    let levels = config.num_levels();
    let block_out_channels: Vec<usize> = config
        .channel_mult
        .iter()
        .map(|m| config.model_channels * m)
        .collect();
    let attention_at: Vec<bool> = (0..levels)
        .map(|l| {
            config
                .attention_resolutions
                .contains(&(config.image_size >> l))
        })
        .collect();
    let mut attention_channels: Vec<usize> = (0..levels)
        .filter(|&l| attention_at[l])
        .map(|l| block_out_channels[l])
        .chain([block_out_channels[levels - 1]])
        .collect();
    attention_channels.sort_unstable();
    attention_channels.dedup();
    let attention_head_dim = match attention_channels.as_slice() {
        [channels] => Value::from(channels / config.num_heads),
        // diffusers' null: one head of all channels in every block.
        _ if config.num_heads == 1 => Value::Null,
        many => {
            return Err(ModelError::invalid(
                "num_heads",
                format!(
                    "{} heads split the attention blocks' {many:?} channels into heads of \
                     different widths, and diffusers' UNet2DModel has one attention_head_dim \
                     for all of them: use num_heads = 1, or attention at levels of one width",
                    config.num_heads
                ),
            ));
        }
    };
    let down_block_types: Vec<&str> = attention_at
        .iter()
        .map(|&a| if a { "AttnDownBlock2D" } else { "DownBlock2D" })
        .collect();
    let up_block_types: Vec<&str> = attention_at
        .iter()
        .rev()
        .map(|&a| if a { "AttnUpBlock2D" } else { "UpBlock2D" })
        .collect();
    let resnet_time_scale_shift = match config.time_injection {
        TimeInjection::Add => "default",
        TimeInjection::ScaleShift => "scale_shift",
    };
    Ok(json!({
        "_class_name": "UNet2DModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "sample_size": config.image_size,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "center_input_sample": false,
        "time_embedding_type": "positional",
        "time_embedding_dim": (config.time_embed_dim != 4 * config.model_channels)
            .then_some(config.time_embed_dim),
        "freq_shift": 0,
        "flip_sin_to_cos": true,
        "down_block_types": down_block_types,
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": up_block_types,
        "block_out_channels": block_out_channels,
        "layers_per_block": config.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": config.dropout,
        "act_fn": "silu",
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": config.norm_groups,
        // Set under scale_shift: left null there, diffusers drops the mid-block attention's
        // GroupNorm, which oxidiff's attention always has.
        "attn_norm_num_groups": (config.time_injection == TimeInjection::ScaleShift)
            .then_some(config.norm_groups),
        "norm_eps": NORM_EPS,
        "resnet_time_scale_shift": resnet_time_scale_shift,
        "add_attention": true,
        "class_embed_type": null,
        "num_class_embeds": config.num_classes.map(|n| n + 1),
        "num_train_timesteps": null,
    }))
}

/// Every key of diffusers 0.42.1's `UNet2DModel.__init__`.
const UNET2D_KEYS: [&str; 31] = [
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "num_train_timesteps",
    // Written by save_pretrained, read by nothing that changes the network.
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
];

/// The [`UNetConfig`] of a `UNet2DModel` config (`source`: its file, named in errors). A key
/// left out has diffusers' default, as `from_pretrained` gives it.
///
/// # Errors
/// A key oxidiff's UNet cannot represent, named with its value; a key diffusers 0.42.1 does not
/// have; a config that cannot be built.
pub fn unet_config_from_unet2d_json(json: &Value, source: &Path) -> Result<UNetConfig, ModelError> {
    let keys = Keys {
        object: json
            .as_object()
            .ok_or_else(|| ModelError::file(source, "not a JSON object"))?,
        source,
    };
    for key in keys.object.keys() {
        if !UNET2D_KEYS.contains(&key.as_str()) {
            return Err(keys.refuse(key, "is not a key of diffusers 0.42.1's UNet2DModel"));
        }
    }
    if let Some(class) = keys.object.get("_class_name")
        && class != "UNet2DModel"
    {
        return Err(keys.refuse(
            "_class_name",
            "is not \"UNet2DModel\" (the only diffusers class oxidiff's UNet mirrors)",
        ));
    }

    // What oxidiff's UNet computes only one way.
    keys.require(
        "center_input_sample",
        json!(false),
        "oxidiff's UNet takes its input as it is",
    )?;
    keys.require(
        "time_embedding_type",
        json!("positional"),
        "oxidiff's UNet has the sinusoidal (positional) time embedding only",
    )?;
    keys.require(
        "flip_sin_to_cos",
        json!(true),
        "oxidiff's timestep features are [cos, sin]",
    )?;
    keys.require_number(
        "freq_shift",
        0.0,
        "oxidiff's frequencies are 10000^(-i/half)",
    )?;
    keys.require_number(
        "mid_block_scale_factor",
        1.0,
        "oxidiff's residual blocks do not rescale their output",
    )?;
    keys.require_number(
        "downsample_padding",
        1.0,
        "oxidiff downsamples with a stride-2 3x3 convolution padded by 1",
    )?;
    keys.require(
        "mid_block_type",
        json!("UNetMidBlock2D"),
        "oxidiff's UNet has a resnet/attention/resnet mid block",
    )?;
    keys.require(
        "add_attention",
        json!(true),
        "oxidiff's mid block always has attention",
    )?;
    keys.require(
        "class_embed_type",
        Value::Null,
        "oxidiff's class conditioning is an embedding table (num_class_embeds)",
    )?;
    let act_fn = keys.get("act_fn", json!("silu"));
    if act_fn != "silu" && act_fn != "swish" {
        return Err(keys.refuse("act_fn", "is not \"silu\", oxidiff's only activation"));
    }
    let norm_eps = keys.number("norm_eps", NORM_EPS)?;
    if (norm_eps - NORM_EPS).abs() > 1e-12 {
        return Err(keys.refuse(
            "norm_eps",
            format!("is not {NORM_EPS:e}, the epsilon of every GroupNorm in oxidiff's UNet"),
        ));
    }
    let time_injection = match keys
        .get("resnet_time_scale_shift", json!("default"))
        .as_str()
    {
        Some("default") => TimeInjection::Add,
        Some("scale_shift") => TimeInjection::ScaleShift,
        _ => {
            return Err(keys.refuse(
                "resnet_time_scale_shift",
                "is neither \"default\" (added) nor \"scale_shift\", the two ways oxidiff's \
                 residual blocks take the time embedding",
            ));
        }
    };

    let block_out_channels = keys.usizes("block_out_channels", &[224, 448, 672, 896])?;
    let levels = block_out_channels.len();
    let model_channels = block_out_channels.first().copied().unwrap_or(0);
    if model_channels == 0 || block_out_channels.iter().any(|c| c % model_channels != 0) {
        return Err(keys.refuse(
            "block_out_channels",
            "must be positive multiples of the first (oxidiff's model_channels x channel_mult)",
        ));
    }
    let down_default = [
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    ];
    let up_default = [
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
    ];
    let down = keys.strings("down_block_types", &down_default)?;
    let up = keys.strings("up_block_types", &up_default)?;
    for (key, types) in [("down_block_types", &down), ("up_block_types", &up)] {
        if types.len() != levels {
            return Err(keys.refuse(
                key,
                format!("does not have one entry per block_out_channels ({levels})"),
            ));
        }
    }
    let mut attention_at = Vec::with_capacity(levels);
    for (level, down_type) in down.iter().enumerate() {
        let mirror = levels - 1 - level;
        let down_attn = match down_type.as_str() {
            "DownBlock2D" => false,
            "AttnDownBlock2D" => true,
            _ => {
                return Err(keys.refuse(
                    "down_block_types",
                    format!(
                        "entry {level} is neither \"DownBlock2D\" nor \"AttnDownBlock2D\", the \
                         down blocks oxidiff's UNet has"
                    ),
                ));
            }
        };
        let up_attn = match up[mirror].as_str() {
            "UpBlock2D" => false,
            "AttnUpBlock2D" => true,
            _ => {
                return Err(keys.refuse(
                    "up_block_types",
                    format!(
                        "entry {mirror} is neither \"UpBlock2D\" nor \"AttnUpBlock2D\", the up \
                         blocks oxidiff's UNet has"
                    ),
                ));
            }
        };
        if down_attn != up_attn {
            return Err(keys.refuse(
                "up_block_types",
                format!(
                    "entry {mirror} ({}) does not mirror down_block_types entry {level} ({}): \
                     oxidiff's UNet has attention at a resolution on both ways or on neither",
                    up[mirror], down_type
                ),
            ));
        }
        attention_at.push(down_attn);
    }
    // The types only matter where an attention block has a resampler: DownBlock2D and
    // UpBlock2D always convolve, and the lowest (highest) level has no down (up) sampler.
    for (key, resampled) in [
        ("downsample_type", &attention_at[..levels - 1]),
        ("upsample_type", &attention_at[1..]),
    ] {
        if resampled.contains(&true) && keys.get(key, json!("conv")) != "conv" {
            return Err(keys.refuse(
                key,
                "is not \"conv\": oxidiff resamples with a convolution, not a resnet",
            ));
        }
    }

    // diffusers: heads = channels // attention_head_dim per block (null: one head).
    let num_heads = match keys.get("attention_head_dim", json!(8)) {
        Value::Null => 1,
        value => {
            let head_dim = value
                .as_u64()
                .filter(|&d| d > 0)
                .ok_or_else(|| keys.refuse("attention_head_dim", "is not a positive integer"))?
                as usize;
            let mut heads: Vec<(usize, usize)> = (0..levels)
                .filter(|&l| attention_at[l])
                .map(|l| block_out_channels[l])
                .chain([block_out_channels[levels - 1]])
                .map(|c| (c, c / head_dim))
                .collect();
            heads.sort_unstable();
            heads.dedup();
            if let Some((channels, _)) = heads.iter().find(|(c, _)| c % head_dim != 0) {
                return Err(keys.refuse(
                    "attention_head_dim",
                    format!("does not divide the {channels} channels of an attention block"),
                ));
            }
            if heads.iter().any(|&(_, h)| h != heads[0].1) {
                return Err(keys.refuse(
                    "attention_head_dim",
                    format!(
                        "gives the attention blocks different head counts ({}), and oxidiff's \
                         UNet has one num_heads for all of them",
                        heads
                            .iter()
                            .map(|(c, h)| format!("{h} at {c} channels"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            heads[0].1
        }
    };

    let norm_groups = keys.usize("norm_num_groups", Some(32))?.ok_or_else(|| {
        keys.refuse(
            "norm_num_groups",
            "leaves the residual blocks' GroupNorm groups to diffusers' per-block fallback; \
             oxidiff's UNet has one group count (set it)",
        )
    })?;
    match keys.usize("attn_norm_num_groups", None)? {
        Some(groups) if groups != norm_groups => {
            return Err(keys.refuse(
                "attn_norm_num_groups",
                "differs from norm_num_groups, and oxidiff's attention normalises with the \
                 same groups as its residual blocks",
            ));
        }
        None if time_injection == TimeInjection::ScaleShift => {
            return Err(keys.refuse(
                "attn_norm_num_groups",
                "leaves the mid-block attention without a GroupNorm under \
                 resnet_time_scale_shift \"scale_shift\" (diffusers' rule for null), and \
                 oxidiff's attention always has one (set it to norm_num_groups)",
            ));
        }
        _ => {}
    }

    let image_size = match keys.get("sample_size", Value::Null) {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::Array(hw) if hw.len() == 2 && hw[0] == hw[1] => hw[0].as_u64().map(|n| n as usize),
        _ => None,
    }
    .ok_or_else(|| {
        keys.refuse(
            "sample_size",
            "is not one image size (oxidiff's UNet takes square images of a known size)",
        )
    })?;
    let num_classes = match keys.usize("num_class_embeds", None)? {
        None => None,
        Some(rows) if rows >= 2 => Some(rows - 1),
        Some(_) => {
            return Err(keys.refuse(
                "num_class_embeds",
                "leaves no class once oxidiff's \"no class\" row (the last) is set aside",
            ));
        }
    };
    let dropout = keys.number("dropout", 0.0)?;

    let config = UNetConfig {
        image_size,
        in_channels: keys.usize("in_channels", Some(3))?.unwrap_or(0),
        out_channels: keys.usize("out_channels", Some(3))?.unwrap_or(0),
        model_channels,
        channel_mult: block_out_channels
            .iter()
            .map(|c| c / model_channels)
            .collect(),
        num_res_blocks: keys.usize("layers_per_block", Some(2))?.unwrap_or(0),
        attention_resolutions: (0..levels)
            .filter(|&l| attention_at[l])
            .map(|l| image_size >> l)
            .collect(),
        num_heads,
        dropout,
        norm_groups,
        time_embed_dim: keys
            .usize("time_embedding_dim", None)?
            .unwrap_or(4 * model_channels),
        time_injection,
        num_classes,
    };
    config.validate().map_err(|e| {
        ModelError::file(
            source,
            format!("cannot be built as oxidiff's UNet ({e}, in oxidiff's names)"),
        )
    })?;
    Ok(config)
}

/// Reads a `UNet2DModel` config's keys, with diffusers' defaults for absent ones.
struct Keys<'a> {
    object: &'a Map<String, Value>,
    source: &'a Path,
}

impl Keys<'_> {
    fn get(&self, key: &str, default: Value) -> Value {
        self.object.get(key).cloned().unwrap_or(default)
    }

    /// An error naming `key` and its value.
    fn refuse(&self, key: &str, why: impl std::fmt::Display) -> ModelError {
        let value = self.object.get(key).map_or_else(
            || "absent (diffusers' default)".to_string(),
            Value::to_string,
        );
        ModelError::file(self.source, format!("{key} = {value} {why}"))
    }

    fn require(&self, key: &str, only: Value, why: &str) -> Result<(), ModelError> {
        if self.get(key, only.clone()) == only {
            Ok(())
        } else {
            Err(self.refuse(
                key,
                format!("is not supported: {why} (only {key} = {only} is)"),
            ))
        }
    }

    fn require_number(&self, key: &str, only: f64, why: &str) -> Result<(), ModelError> {
        if self.number(key, only)? == only {
            Ok(())
        } else {
            Err(self.refuse(
                key,
                format!("is not supported: {why} (only {key} = {only} is)"),
            ))
        }
    }

    fn number(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.object.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.refuse(key, "is not a number")),
        }
    }

    /// A non-negative integer; `None` for null (or absent with no default).
    fn usize(&self, key: &str, default: Option<usize>) -> Result<Option<usize>, ModelError> {
        match self.object.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.refuse(key, "is not a non-negative integer")),
        }
    }

    fn usizes(&self, key: &str, default: &[usize]) -> Result<Vec<usize>, ModelError> {
        match self.object.get(key) {
            None => Ok(default.to_vec()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.refuse(key, "is not a list of non-negative integers")),
            Some(_) => Err(self.refuse(key, "is not a list of non-negative integers")),
        }
    }

    fn strings(&self, key: &str, default: &[&str]) -> Result<Vec<String>, ModelError> {
        match self.object.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.refuse(key, "is not a list of block names")),
            Some(_) => Err(self.refuse(key, "is not a list of block names")),
        }
    }
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
/// attention down, up and in the middle, both resamplers).
fn diffusers_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((leaf, module)) = parts.split_last() else {
        return path.to_string();
    };
    let module = match module {
        ["time_embed", linear] => format!("time_embedding.{linear}"),
        ["class_embed"] => "class_embedding".to_string(),
        ["conv_in"] => "conv_in".to_string(),
        ["out_norm"] => "conv_norm_out".to_string(),
        ["out_conv"] => "conv_out".to_string(),
        ["mid_res_1", layer] => format!("mid_block.resnets.0.{}", resnet_layer(layer)),
        ["mid_attn", layer] => format!("mid_block.attentions.0.{}", attention_layer(layer)),
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
        ["down", level, "downsample", "conv"] => format!("down_blocks.{level}.downsamplers.0.conv"),
        ["up", level, "upsample", "conv"] => format!("up_blocks.{level}.upsamplers.0.conv"),
        _ => return path.to_string(),
    };
    format!("{module}.{leaf}")
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
