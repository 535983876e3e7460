//! diffusers' `UNet2DConditionModel` `config.json` for oxidiff's [`UNetConfig`] with
//! `cross_attention_dim`, both ways: every key diffusers 0.42.1 writes, and the [`UNetConfig`]
//! a config describes. What it shares with `UNet2DModel` (time embedding, residual blocks,
//! levels, class embedding) is read by [`super::diffusers_config`]'s readers.
//!
//! In this class `attention_head_dim` is, as diffusers reads it, the number of heads
//! (`num_attention_heads` defaults to it), one for every level or a list: oxidiff's
//! `num_heads`, or `heads_per_level` where they differ. The middle block takes the last
//! level's.
//!
//! Refused, naming the key: what oxidiff does not build (class or addition embeddings, an
//! encoder projection, dual or only-cross attention, GLIGEN, time-conditioning projections,
//! other kernels or scale factors, per-level widths of cross-attention or transformer
//! depth). `upcast_attention` is accepted either way: it changes the precision of half-precision
//! attention scores only, and oxidiff computes them in f32 (it writes `false`).

use std::path::Path;

use serde_json::{Value, json};

use super::diffusers_config::{ClassLayout, read_shared};
use crate::ModelError;
use crate::config::{TimeInjection, UNetConfig};
use crate::diffusers_io::{ConfigKeys, DIFFUSERS_VERSION};

/// The class name in `_class_name`.
pub const UNET2D_CONDITION: &str = "UNet2DConditionModel";

const CONDITION_LAYOUT: ClassLayout = ClassLayout {
    down: ("DownBlock2D", "CrossAttnDownBlock2D"),
    up: ("UpBlock2D", "CrossAttnUpBlock2D"),
    down_default: [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    up_default: [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    block_out_channels_default: [320, 640, 1280, 1280],
    channels_default: 4,
};

/// diffusers' `UNet2DConditionModel` config for `config`: every key of
/// `UNet2DConditionModel.__init__` in diffusers 0.42.1, each as `save_pretrained` writes it
/// for the same network.
///
/// # Errors
/// An invalid config, or one without `cross_attention_dim` (a `UNet2DModel`).
pub fn unet2d_condition_config_json(config: &UNetConfig) -> Result<Value, ModelError> {
    config.validate()?;
    let Some(cross_attention_dim) = config.cross_attention_dim else {
        return Err(ModelError::invalid(
            "cross_attention_dim",
            "is not set: a UNet without cross-attention is diffusers' UNet2DModel \
             (unet2d_config_json)",
        ));
    };
    let levels = config.num_levels();
    let block_out_channels: Vec<usize> = config
        .channel_mult
        .iter()
        .map(|m| config.model_channels * m)
        .collect();
    let attention_at: Vec<bool> = (0..levels)
        .map(|l| config.attends_at(config.image_size >> l))
        .collect();
    let (plain, attn) = CONDITION_LAYOUT.down;
    let down_block_types: Vec<&str> = attention_at
        .iter()
        .map(|&a| if a { attn } else { plain })
        .collect();
    let (plain, attn) = CONDITION_LAYOUT.up;
    let up_block_types: Vec<&str> = attention_at
        .iter()
        .rev()
        .map(|&a| if a { attn } else { plain })
        .collect();
    let heads: Vec<usize> = (0..levels).map(|l| config.heads_at(l)).collect();
    let attention_head_dim = if heads.iter().all(|&h| h == heads[0]) {
        Value::from(heads[0])
    } else {
        Value::from(heads)
    };
    let resnet_time_scale_shift = match config.time_injection {
        TimeInjection::Add => "default",
        TimeInjection::ScaleShift => "scale_shift",
    };
    // In parts: one json! of every key exceeds the macro's recursion limit.
    let mut object = json!({
        "_class_name": UNET2D_CONDITION,
        "_diffusers_version": DIFFUSERS_VERSION,
        "sample_size": config.image_size,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "center_input_sample": false,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "down_block_types": down_block_types,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": up_block_types,
        "only_cross_attention": false,
        "block_out_channels": block_out_channels,
        "layers_per_block": config.num_res_blocks,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "dropout": config.dropout,
        "act_fn": "silu",
        "norm_num_groups": config.norm_groups,
        "norm_eps": 1e-5,
    });
    let rest = json!({
        "cross_attention_dim": cross_attention_dim,
        "transformer_layers_per_block": config.transformer_layers_per_block,
        "reverse_transformer_layers_per_block": null,
        "encoder_hid_dim": null,
        "encoder_hid_dim_type": null,
        "attention_head_dim": attention_head_dim,
        "num_attention_heads": null,
        "dual_cross_attention": false,
        "use_linear_projection": config.use_linear_projection,
        "class_embed_type": null,
        "addition_embed_type": null,
        "addition_time_embed_dim": null,
        "num_class_embeds": config.num_classes.map(|n| n + 1),
        "upcast_attention": false,
        "resnet_time_scale_shift": resnet_time_scale_shift,
        "resnet_skip_time_act": false,
        "resnet_out_scale_factor": 1.0,
    });
    let time = json!({
        "time_embedding_type": "positional",
        "time_embedding_dim": (config.time_embed_dim != 4 * config.model_channels)
            .then_some(config.time_embed_dim),
        "time_embedding_act_fn": null,
        "timestep_post_act": null,
        "time_cond_proj_dim": null,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "projection_class_embeddings_input_dim": null,
        "attention_type": "default",
        "class_embeddings_concat": false,
        "mid_block_only_cross_attention": null,
        "cross_attention_norm": null,
        "addition_embed_type_num_heads": 64,
    });
    let map = object.as_object_mut().expect("an object");
    for part in [rest, time] {
        if let Value::Object(part) = part {
            map.extend(part);
        }
    }
    Ok(object)
}

/// Every key of diffusers 0.42.1's `UNet2DConditionModel.__init__`, and what
/// `save_pretrained` adds.
const UNET2D_CONDITION_KEYS: [&str; 51] = [
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "flip_sin_to_cos",
    "freq_shift",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "only_cross_attention",
    "block_out_channels",
    "layers_per_block",
    "downsample_padding",
    "mid_block_scale_factor",
    "dropout",
    "act_fn",
    "norm_num_groups",
    "norm_eps",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "reverse_transformer_layers_per_block",
    "encoder_hid_dim",
    "encoder_hid_dim_type",
    "attention_head_dim",
    "num_attention_heads",
    "dual_cross_attention",
    "use_linear_projection",
    "class_embed_type",
    "addition_embed_type",
    "addition_time_embed_dim",
    "num_class_embeds",
    "upcast_attention",
    "resnet_time_scale_shift",
    "resnet_skip_time_act",
    "resnet_out_scale_factor",
    "time_embedding_type",
    "time_embedding_dim",
    "time_embedding_act_fn",
    "timestep_post_act",
    "time_cond_proj_dim",
    "conv_in_kernel",
    "conv_out_kernel",
    "projection_class_embeddings_input_dim",
    "attention_type",
    "class_embeddings_concat",
    "mid_block_only_cross_attention",
    "cross_attention_norm",
    "addition_embed_type_num_heads",
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
];

/// The [`UNetConfig`] of a `UNet2DConditionModel` config (`source`: its file, named in
/// errors). A key left out has diffusers' default, as `from_pretrained` gives it.
///
/// # Errors
/// A key oxidiff's UNet cannot represent, named with its value; a key diffusers 0.42.1 does not
/// have; a config that cannot be built.
pub fn unet_config_from_unet2d_condition_json(
    json: &Value,
    source: &Path,
) -> Result<UNetConfig, ModelError> {
    let keys = ConfigKeys::new(json, source, |path, message| {
        ModelError::file(path, message)
    })?;
    for key in keys.object().keys() {
        if !UNET2D_CONDITION_KEYS.contains(&key.as_str()) {
            return Err(keys.refuse(
                key,
                format!(
                    "is not a key of diffusers 0.42.1's {UNET2D_CONDITION} (the class \
                     _class_name = \"{UNET2D_CONDITION}\" names)"
                ),
            ));
        }
    }
    if keys.get("_class_name", json!(UNET2D_CONDITION)) != UNET2D_CONDITION {
        return Err(keys.refuse("_class_name", format!("is not \"{UNET2D_CONDITION}\"")));
    }
    refuse_what_is_not_built(&keys)?;
    let shared = read_shared(&keys, &CONDITION_LAYOUT)?;
    let levels = shared.block_out_channels.len();
    let num_res_blocks = one_per_level(&keys, "layers_per_block", 2, levels, "residual blocks")?;
    let cross_attention_dim = one_per_level(
        &keys,
        "cross_attention_dim",
        1280,
        levels,
        "cross-attention width",
    )?;
    let layers = one_per_level(
        &keys,
        "transformer_layers_per_block",
        1,
        levels,
        "transformer depth",
    )?;
    let use_linear_projection = match keys.get("use_linear_projection", json!(false)) {
        Value::Bool(b) => b,
        _ => return Err(keys.refuse("use_linear_projection", "is not true or false")),
    };

    // diffusers: num_attention_heads = attention_head_dim, per level or one for all.
    let heads = match keys.get("attention_head_dim", json!(8)) {
        Value::Number(n) => n.as_u64().map(|h| vec![h as usize; levels]),
        Value::Array(items) if items.len() == levels => items
            .iter()
            .map(|v| v.as_u64().map(|h| h as usize))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
    .filter(|heads| heads.iter().all(|&h| h > 0))
    .ok_or_else(|| {
        keys.refuse(
            "attention_head_dim",
            format!(
                "is not a positive number of heads, or a list of one per level ({levels}): in \
                 {UNET2D_CONDITION} it is the number of heads"
            ),
        )
    })?;
    // Where heads split channels: the attention levels, and the last for the middle block.
    for (level, (&h, &channels)) in heads.iter().zip(&shared.block_out_channels).enumerate() {
        let used = shared.attention_at[level] || level + 1 == levels;
        if used && !channels.is_multiple_of(h) {
            return Err(keys.refuse(
                "attention_head_dim",
                format!(
                    "gives {h} heads to the {channels} channels of level {level}, which they do \
                     not divide (in {UNET2D_CONDITION} attention_head_dim is the number of heads)"
                ),
            ));
        }
    }
    let uniform = heads.iter().all(|&h| h == heads[0])
        && shared
            .block_out_channels
            .iter()
            .all(|c| c.is_multiple_of(heads[0]));
    let (num_heads, heads_per_level) = if uniform {
        (heads[0], None)
    } else {
        (1, Some(heads))
    };

    shared.into_config(source, num_res_blocks, num_heads, |config| {
        config.cross_attention_dim = Some(cross_attention_dim);
        config.transformer_layers_per_block = layers;
        config.use_linear_projection = use_linear_projection;
        config.heads_per_level = heads_per_level;
    })
}

/// Refuses the keys of the parts oxidiff's UNet does not have.
fn refuse_what_is_not_built(keys: &ConfigKeys<'_, ModelError>) -> Result<(), ModelError> {
    keys.require(
        "mid_block_type",
        json!("UNetMidBlock2DCrossAttn"),
        "oxidiff's UNet has a resnet/transformer/resnet mid block",
    )?;
    let only_cross = keys.get("only_cross_attention", json!(false));
    let never = match &only_cross {
        Value::Bool(b) => !b,
        Value::Array(items) => items.iter().all(|v| v == &json!(false)),
        _ => false,
    };
    if !never {
        return Err(keys.refuse(
            "only_cross_attention",
            "is not supported: oxidiff's transformer blocks attend to the image first, then to \
             the text (only only_cross_attention = false is)",
        ));
    }
    let nothing = "oxidiff's UNet has no such part";
    for key in [
        "mid_block_only_cross_attention",
        "reverse_transformer_layers_per_block",
        "encoder_hid_dim",
        "encoder_hid_dim_type",
        "addition_embed_type",
        "time_embedding_act_fn",
        "timestep_post_act",
        "time_cond_proj_dim",
        "cross_attention_norm",
    ] {
        // mid_block_only_cross_attention = false is null's meaning here.
        if key == "mid_block_only_cross_attention" && keys.get(key, Value::Null) == json!(false) {
            continue;
        }
        keys.require(key, Value::Null, nothing)?;
    }
    keys.require(
        "num_attention_heads",
        Value::Null,
        "diffusers 0.42.1 itself refuses it (attention_head_dim is the number of heads)",
    )?;
    keys.require(
        "dual_cross_attention",
        json!(false),
        "oxidiff's UNet has one transformer per attention block",
    )?;
    keys.require(
        "class_embeddings_concat",
        json!(false),
        "oxidiff adds the class embedding to the time embedding",
    )?;
    keys.require(
        "resnet_skip_time_act",
        json!(false),
        "oxidiff's residual blocks take SiLU(emb)",
    )?;
    keys.require_number(
        "resnet_out_scale_factor",
        1.0,
        "oxidiff's residual blocks do not rescale their output",
    )?;
    keys.require_number("conv_in_kernel", 3.0, "oxidiff's input convolution is 3x3")?;
    keys.require_number(
        "conv_out_kernel",
        3.0,
        "oxidiff's output convolution is 3x3",
    )?;
    keys.require(
        "attention_type",
        json!("default"),
        "oxidiff's transformer blocks have no gated (GLIGEN) attention",
    )?;
    if !keys.get("upcast_attention", json!(false)).is_boolean() {
        return Err(keys.refuse("upcast_attention", "is not true or false"));
    }
    Ok(())
}

/// `key`'s one value for every level: a number, or a list of `levels` equal numbers.
fn one_per_level(
    keys: &ConfigKeys<'_, ModelError>,
    key: &str,
    default: usize,
    levels: usize,
    what: &str,
) -> Result<usize, ModelError> {
    let value = match keys.get(key, json!(default)) {
        Value::Number(n) => n.as_u64(),
        Value::Array(items) if items.len() == levels => {
            let first = items.first().and_then(Value::as_u64);
            items
                .iter()
                .all(|v| v.as_u64() == first)
                .then_some(first)
                .flatten()
        }
        _ => None,
    };
    value.map(|v| v as usize).ok_or_else(|| {
        keys.refuse(
            key,
            format!(
                "is not one non-negative integer for all {levels} levels: oxidiff's UNet has \
                 one {what} for every level"
            ),
        )
    })
}
