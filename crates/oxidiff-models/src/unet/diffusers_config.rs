//! diffusers' `UNet2DModel` `config.json` for oxidiff's [`UNetConfig`], both ways: every key
//! diffusers 0.42.1 writes, and the [`UNetConfig`] a config describes.
//!
//! Not every `UNet2DModel` is an oxidiff UNet; [`unet_config_from_unet2d_json`] refuses, naming
//! the key, what oxidiff cannot compute (Fourier or learned time embeddings, centred inputs,
//! `timestep`/`identity` class embeddings, spatial time injection, attention on one way of a
//! level only, attention blocks with different head counts, a mid block without attention or
//! without its GroupNorm, resnet down/upsamplers, other norm epsilons, activations or scale
//! factors).

use std::path::Path;

use serde_json::{Value, json};

use crate::ModelError;
use crate::config::{TimeInjection, UNetConfig};
use crate::diffusers_io::{ConfigKeys, DIFFUSERS_VERSION};

/// burn's GroupNorm epsilon, the one every norm of oxidiff's UNet uses.
const NORM_EPS: f64 = 1e-5;

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
    if config.cross_attention_dim.is_some() {
        return Err(ModelError::invalid(
            "cross_attention_dim",
            "is set, and diffusers' UNet2DModel has no cross-attention: this UNet is a \
             UNet2DConditionModel (unet2d_condition_config_json)",
        ));
    }
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
    // (channels, heads) of every attention block, the mid block's (the last level) included.
    let mut attention_blocks: Vec<(usize, usize)> = (0..levels)
        .filter(|&l| attention_at[l])
        .chain([levels - 1])
        .map(|l| (block_out_channels[l], config.heads_at(l)))
        .collect();
    attention_blocks.sort_unstable();
    attention_blocks.dedup();
    let (first_channels, first_heads) = attention_blocks[0];
    let attention_head_dim = if attention_blocks
        .iter()
        .all(|&(c, h)| c / h == first_channels / first_heads)
    {
        Value::from(first_channels / first_heads)
    } else if attention_blocks.iter().all(|&(_, h)| h == 1) {
        // diffusers' null: one head of all channels in every block.
        Value::Null
    } else {
        let many: Vec<usize> = attention_blocks.iter().map(|&(c, _)| c).collect();
        return Err(ModelError::invalid(
            "num_heads",
            format!(
                "{} heads split the attention blocks' {many:?} channels into heads of \
                 different widths, and diffusers' UNet2DModel has one attention_head_dim \
                 for all of them: use num_heads = 1, or attention at levels of one width",
                config.num_heads
            ),
        ));
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
    let keys = ConfigKeys::new(json, source, |path, message| {
        ModelError::file(path, message)
    })?;
    for key in keys.object().keys() {
        if !UNET2D_KEYS.contains(&key.as_str()) {
            return Err(keys.refuse(key, "is not a key of diffusers 0.42.1's UNet2DModel"));
        }
    }
    if let Some(class) = keys.object().get("_class_name")
        && class != "UNet2DModel"
    {
        return Err(keys.refuse(
            "_class_name",
            "is not \"UNet2DModel\" (the only diffusers class oxidiff's UNet mirrors)",
        ));
    }
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
    let shared = read_shared(&keys, &UNET2D_LAYOUT)?;
    let SharedKeys {
        ref block_out_channels,
        ref attention_at,
        time_injection,
        ..
    } = shared;
    let levels = block_out_channels.len();
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

    match keys.usize("attn_norm_num_groups", None)? {
        Some(groups) if groups != shared.norm_groups => {
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

    let num_res_blocks = keys.usize("layers_per_block", Some(2))?.unwrap_or(0);
    shared.into_config(source, num_res_blocks, num_heads, |_| {})
}

/// What differs between the UNet classes where [`read_shared`] reads: their block names
/// (without attention, with attention) and diffusers' defaults.
pub(super) struct ClassLayout {
    pub down: (&'static str, &'static str),
    pub up: (&'static str, &'static str),
    pub down_default: [&'static str; 4],
    pub up_default: [&'static str; 4],
    pub block_out_channels_default: [usize; 4],
    /// `in_channels` and `out_channels` where absent.
    pub channels_default: usize,
}

const UNET2D_LAYOUT: ClassLayout = ClassLayout {
    down: ("DownBlock2D", "AttnDownBlock2D"),
    up: ("UpBlock2D", "AttnUpBlock2D"),
    down_default: [
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    ],
    up_default: [
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
    ],
    block_out_channels_default: [224, 448, 672, 896],
    channels_default: 3,
};

/// What `UNet2DModel` and `UNet2DConditionModel` configs say alike: the time embedding, the
/// residual blocks, the levels and where attention is, the class embedding.
pub(super) struct SharedKeys {
    pub image_size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub model_channels: usize,
    /// Whether each level has attention (on both ways).
    pub attention_at: Vec<bool>,
    pub dropout: f64,
    pub norm_groups: usize,
    pub time_embed_dim: usize,
    pub time_injection: TimeInjection,
    pub num_classes: Option<usize>,
}

/// Reads the [`SharedKeys`], refusing, key and value named, what oxidiff's UNet computes
/// another way.
pub(super) fn read_shared(
    keys: &ConfigKeys<'_, ModelError>,
    layout: &ClassLayout,
) -> Result<SharedKeys, ModelError> {
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

    let block_out_channels =
        keys.usizes("block_out_channels", &layout.block_out_channels_default)?;
    let levels = block_out_channels.len();
    let model_channels = block_out_channels.first().copied().unwrap_or(0);
    if model_channels == 0 || block_out_channels.iter().any(|c| c % model_channels != 0) {
        return Err(keys.refuse(
            "block_out_channels",
            "must be positive multiples of the first (oxidiff's model_channels x channel_mult)",
        ));
    }
    let attention_at = attention_levels(keys, layout, levels)?;

    let norm_groups = keys.usize("norm_num_groups", Some(32))?.ok_or_else(|| {
        keys.refuse(
            "norm_num_groups",
            "leaves the residual blocks' GroupNorm groups to diffusers' per-block fallback; \
             oxidiff's UNet has one group count (set it)",
        )
    })?;
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
    Ok(SharedKeys {
        image_size,
        in_channels: keys
            .usize("in_channels", Some(layout.channels_default))?
            .unwrap_or(0),
        out_channels: keys
            .usize("out_channels", Some(layout.channels_default))?
            .unwrap_or(0),
        block_out_channels,
        model_channels,
        attention_at,
        dropout: keys.number("dropout", 0.0)?,
        norm_groups,
        time_embed_dim: keys
            .usize("time_embedding_dim", None)?
            .unwrap_or(4 * model_channels),
        time_injection,
        num_classes,
    })
}

/// Which levels have attention, from `down_block_types` and `up_block_types`: refused where a
/// type is not one of `layout`'s or the two ways differ at a level.
fn attention_levels(
    keys: &ConfigKeys<'_, ModelError>,
    layout: &ClassLayout,
    levels: usize,
) -> Result<Vec<bool>, ModelError> {
    let down = keys.strings("down_block_types", &layout.down_default)?;
    let up = keys.strings("up_block_types", &layout.up_default)?;
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
        let (plain, attn) = layout.down;
        let down_attn = match down_type.as_str() {
            t if t == plain => false,
            t if t == attn => true,
            _ => {
                return Err(keys.refuse(
                    "down_block_types",
                    format!(
                        "entry {level} is neither \"{plain}\" nor \"{attn}\", the down blocks \
                         oxidiff's UNet has"
                    ),
                ));
            }
        };
        let (plain, attn) = layout.up;
        let up_attn = match up[mirror].as_str() {
            t if t == plain => false,
            t if t == attn => true,
            _ => {
                return Err(keys.refuse(
                    "up_block_types",
                    format!(
                        "entry {mirror} is neither \"{plain}\" nor \"{attn}\", the up blocks \
                         oxidiff's UNet has"
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
    Ok(attention_at)
}

impl SharedKeys {
    /// The validated [`UNetConfig`], `finish` setting what else the class says (its
    /// cross-attention) before validation.
    pub(super) fn into_config(
        self,
        source: &Path,
        num_res_blocks: usize,
        num_heads: usize,
        finish: impl FnOnce(&mut UNetConfig),
    ) -> Result<UNetConfig, ModelError> {
        let levels = self.block_out_channels.len();
        let mut config = UNetConfig {
            image_size: self.image_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            model_channels: self.model_channels,
            channel_mult: self
                .block_out_channels
                .iter()
                .map(|c| c / self.model_channels)
                .collect(),
            num_res_blocks,
            attention_resolutions: (0..levels)
                .filter(|&l| self.attention_at[l])
                .map(|l| self.image_size >> l)
                .collect(),
            num_heads,
            dropout: self.dropout,
            norm_groups: self.norm_groups,
            time_embed_dim: self.time_embed_dim,
            time_injection: self.time_injection,
            num_classes: self.num_classes,
            cross_attention_dim: None,
            transformer_layers_per_block: 1,
            use_linear_projection: false,
            heads_per_level: None,
        };
        finish(&mut config);
        config.validate().map_err(|e| {
            ModelError::file(
                source,
                format!("cannot be built as oxidiff's UNet ({e}, in oxidiff's names)"),
            )
        })?;
        Ok(config)
    }
}
