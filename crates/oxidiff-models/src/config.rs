//! Buildable descriptions of the networks: [`UNetConfig`] (every architectural choice, resolved)
//! and [`ModelConfig`] (the `[model]` section of a run: a preset plus optional overrides).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::presets::Preset;

oxidiff_diffusion::named_enum! {
    /// How the timestep embedding enters a residual block.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum TimeInjection {
        /// DDPM: `h = h + Linear(SiLU(emb))` after the first convolution.
        Add = "add",
        /// ADM ("use_scale_shift_norm"): `h = GN(h)·(1 + scale) + shift` before the second
        /// convolution.
        ScaleShift = "scale-shift",
    }
}

/// Everything needed to build a [`crate::UNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Height and width of the (square) images.
    pub image_size: usize,
    /// Channels of the input images.
    pub in_channels: usize,
    /// Channels of the network output (the prediction target).
    pub out_channels: usize,
    /// Base channel count; level `i` has `model_channels * channel_mult[i]`.
    pub model_channels: usize,
    /// Channel multiplier per resolution level; each level but the last halves the resolution.
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level on the way down (the way up has one more).
    pub num_res_blocks: usize,
    /// Resolutions (in pixels, e.g. 16) at which self-attention follows each residual block.
    pub attention_resolutions: Vec<usize>,
    /// Attention heads; channels must divide evenly among them.
    pub num_heads: usize,
    /// Dropout probability inside the residual blocks.
    pub dropout: f64,
    /// Groups of every GroupNorm.
    pub norm_groups: usize,
    /// Width of the timestep embedding MLP (ADM uses 4 × model_channels).
    pub time_embed_dim: usize,
    /// How the timestep embedding enters the residual blocks.
    pub time_injection: TimeInjection,
    /// Number of classes for a class-conditional model (`None`: unconditional).
    pub num_classes: Option<usize>,
    /// Width of the states (a text encoder's) that cross-attention attends to. Set, every
    /// attention block (at `attention_resolutions` and in the middle) is a
    /// [`crate::SpatialTransformer`] (Rombach et al. 2022; diffusers' `Transformer2DModel`)
    /// instead of an [`crate::AttentionBlock`]; `None`: the ADM UNet, no cross-attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_attention_dim: Option<usize>,
    /// Transformer blocks in each [`crate::SpatialTransformer`] (with `cross_attention_dim`).
    #[serde(
        default = "one_transformer_layer",
        skip_serializing_if = "is_one_transformer_layer"
    )]
    pub transformer_layers_per_block: usize,
    /// The [`crate::SpatialTransformer`]s project in and out with linear layers instead of 1×1
    /// convolutions (diffusers' `use_linear_projection`; with `cross_attention_dim`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_linear_projection: bool,
    /// Attention heads at each level (the middle block takes the last level's), where they
    /// differ; `None`: `num_heads` everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads_per_level: Option<Vec<usize>>,
}

fn one_transformer_layer() -> usize {
    1
}

fn is_one_transformer_layer(layers: &usize) -> bool {
    *layers == 1
}

impl UNetConfig {
    /// Number of resolution levels.
    pub fn num_levels(&self) -> usize {
        self.channel_mult.len()
    }

    /// Attention heads of the attention blocks at `level` (the middle block: the last level).
    pub fn heads_at(&self, level: usize) -> usize {
        self.heads_per_level
            .as_ref()
            .and_then(|heads| heads.get(level).copied())
            .unwrap_or(self.num_heads)
    }

    /// Whether the attention blocks of the level at `resolution` (pixels) exist.
    pub(crate) fn attends_at(&self, resolution: usize) -> bool {
        self.attention_resolutions.contains(&resolution)
    }

    /// Checks that a network can be built from this configuration.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("image_size", self.image_size),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("model_channels", self.model_channels),
            ("num_res_blocks", self.num_res_blocks),
            ("num_heads", self.num_heads),
            ("norm_groups", self.norm_groups),
            ("time_embed_dim", self.time_embed_dim),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ModelError::invalid(key, "must be at least 1, got 0"));
            }
        }
        if self.channel_mult.is_empty() || self.channel_mult.contains(&0) {
            return Err(ModelError::invalid(
                "channel_mult",
                format!(
                    "must be a non-empty list of positive multipliers, got {:?}",
                    self.channel_mult
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::invalid(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        let downsamples = self.num_levels() - 1;
        if downsamples >= usize::BITS as usize || !self.image_size.is_multiple_of(1 << downsamples)
        {
            return Err(ModelError::invalid(
                "image_size",
                format!(
                    "{} cannot be halved {} times (one per level after the first of channel_mult {:?})",
                    self.image_size, downsamples, self.channel_mult
                ),
            ));
        }
        for &mult in &self.channel_mult {
            let channels = self.model_channels * mult;
            if !channels.is_multiple_of(self.norm_groups) {
                return Err(ModelError::invalid(
                    "norm_groups",
                    format!(
                        "{} does not divide the {channels} channels of a level",
                        self.norm_groups
                    ),
                ));
            }
            if !channels.is_multiple_of(self.num_heads) {
                return Err(ModelError::invalid(
                    "num_heads",
                    format!(
                        "{} does not divide the {channels} channels of a level",
                        self.num_heads
                    ),
                ));
            }
        }
        let level_resolutions: Vec<usize> = (0..self.num_levels())
            .map(|level| self.image_size >> level)
            .collect();
        for resolution in &self.attention_resolutions {
            if !level_resolutions.contains(resolution) {
                return Err(ModelError::invalid(
                    "attention_resolutions",
                    format!(
                        "{resolution} is not one of the network's resolutions \
                         {level_resolutions:?}: set model.attention_resolutions to some of them \
                         (or [] for none)"
                    ),
                ));
            }
        }
        if self.num_classes == Some(0) {
            return Err(ModelError::invalid(
                "num_classes",
                "must be at least 1 when set (leave it out for an unconditional model)",
            ));
        }
        self.validate_heads_per_level()?;
        self.validate_cross_attention()
    }

    fn validate_heads_per_level(&self) -> Result<(), ModelError> {
        let Some(heads) = &self.heads_per_level else {
            return Ok(());
        };
        let levels = self.num_levels();
        if heads.len() != levels {
            return Err(ModelError::invalid(
                "heads_per_level",
                format!(
                    "{heads:?} does not have one entry per level of channel_mult {:?}",
                    self.channel_mult
                ),
            ));
        }
        // Only where attention is: the attention levels, and the last for the middle block.
        for (level, (&h, &mult)) in heads.iter().zip(&self.channel_mult).enumerate() {
            if !(level + 1 == levels || self.attends_at(self.image_size >> level)) {
                continue;
            }
            let channels = self.model_channels * mult;
            if h == 0 || !channels.is_multiple_of(h) {
                return Err(ModelError::invalid(
                    "heads_per_level",
                    format!(
                        "{h} heads (entry {level}) do not divide the {channels} channels of \
                         that level"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_cross_attention(&self) -> Result<(), ModelError> {
        match self.cross_attention_dim {
            Some(0) => Err(ModelError::invalid(
                "cross_attention_dim",
                "must be at least 1 when set (leave it out for a UNet without cross-attention)",
            )),
            Some(_) if self.transformer_layers_per_block == 0 => Err(ModelError::invalid(
                "transformer_layers_per_block",
                "must be at least 1, got 0",
            )),
            None if self.transformer_layers_per_block != 1 => Err(ModelError::invalid(
                "transformer_layers_per_block",
                "applies to the transformer blocks of cross-attention only: set \
                 cross_attention_dim too, or leave it out",
            )),
            None if self.use_linear_projection => Err(ModelError::invalid(
                "use_linear_projection",
                "applies to the transformer blocks of cross-attention only: set \
                 cross_attention_dim too, or leave it out",
            )),
            _ => Ok(()),
        }
    }
}

/// The `[model]` section of a run configuration: a preset, and any field of [`UNetConfig`]
/// overridden on top of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Starting architecture: `tiny`, `small`, `ddpm-cifar10` or `latent-text`.
    pub preset: Preset,
    pub image_size: Option<usize>,
    pub in_channels: Option<usize>,
    pub model_channels: Option<usize>,
    pub channel_mult: Option<Vec<usize>>,
    pub num_res_blocks: Option<usize>,
    pub attention_resolutions: Option<Vec<usize>>,
    pub num_heads: Option<usize>,
    pub dropout: Option<f64>,
    pub norm_groups: Option<usize>,
    pub time_injection: Option<TimeInjection>,
    pub num_classes: Option<usize>,
    /// Width of the timestep embedding MLP; unset: 4 × model_channels (ADM's, and what
    /// diffusers' `time_embedding_dim = null` means).
    pub time_embed_dim: Option<usize>,
    /// Width of the text states cross-attention attends to (unset: no cross-attention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_attention_dim: Option<usize>,
    /// Transformer blocks per cross-attention block (unset: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformer_layers_per_block: Option<usize>,
    /// Linear projections in and out of the cross-attention blocks (unset: 1×1 convolutions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_linear_projection: Option<bool>,
    /// Attention heads per level (unset: num_heads everywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads_per_level: Option<Vec<usize>>,
    /// The weights a fresh run starts from instead of random ones: a diffusers `UNet2DModel`
    /// directory (or a pipeline directory with `unet/`), or an oxidiff diffusion run or
    /// checkpoint (its EMA weights). The architecture above must be the one they were saved
    /// with; the trainer refuses a mismatch, naming the first key, before any work. Not a
    /// part of the network: [`ModelConfig::resolve`] ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            preset: Preset::Tiny,
            image_size: None,
            in_channels: None,
            model_channels: None,
            channel_mult: None,
            num_res_blocks: None,
            attention_resolutions: None,
            num_heads: None,
            dropout: None,
            norm_groups: None,
            time_injection: None,
            num_classes: None,
            time_embed_dim: None,
            cross_attention_dim: None,
            transformer_layers_per_block: None,
            use_linear_projection: None,
            heads_per_level: None,
            init_from: None,
        }
    }
}

impl ModelConfig {
    /// The preset with the overrides applied, validated.
    pub fn resolve(&self) -> Result<UNetConfig, ModelError> {
        let mut config = self.preset.config();
        if let Some(v) = self.image_size {
            // The preset's attention stays at the same levels of the network (tiny's at 4×4 of
            // 8×8 moves to 14×14 of 28×28), unless attention_resolutions is given too.
            let levels: Vec<usize> = config
                .attention_resolutions
                .iter()
                .filter_map(|&r| (0..config.num_levels()).find(|&l| config.image_size >> l == r))
                .collect();
            config.attention_resolutions = levels.into_iter().map(|l| v >> l).collect();
            config.image_size = v;
        }
        if let Some(v) = self.in_channels {
            config.in_channels = v;
            config.out_channels = v;
        }
        if let Some(v) = self.model_channels {
            config.model_channels = v;
            config.time_embed_dim = 4 * v;
        }
        if let Some(v) = self.time_embed_dim {
            config.time_embed_dim = v;
        }
        if let Some(v) = &self.channel_mult {
            config.channel_mult = v.clone();
        }
        if let Some(v) = self.num_res_blocks {
            config.num_res_blocks = v;
        }
        if let Some(v) = &self.attention_resolutions {
            config.attention_resolutions = v.clone();
        }
        if let Some(v) = self.num_heads {
            config.num_heads = v;
        }
        if let Some(v) = self.dropout {
            config.dropout = v;
        }
        if let Some(v) = self.norm_groups {
            config.norm_groups = v;
        }
        if let Some(v) = self.time_injection {
            config.time_injection = v;
        }
        if self.num_classes.is_some() {
            config.num_classes = self.num_classes;
        }
        if self.cross_attention_dim.is_some() {
            config.cross_attention_dim = self.cross_attention_dim;
        }
        if let Some(v) = self.transformer_layers_per_block {
            config.transformer_layers_per_block = v;
        }
        if let Some(v) = self.use_linear_projection {
            config.use_linear_projection = v;
        }
        if self.heads_per_level.is_some() {
            config.heads_per_level = self.heads_per_level.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// The section that resolves to exactly `config`: every architectural key set (on the
    /// `tiny` preset, which they all override), `out_channels` excepted — a run's UNet
    /// outputs its input channels, doubled by a learned variance, which is not a `[model]`
    /// key.
    pub fn exactly(config: &UNetConfig) -> Self {
        Self {
            preset: Preset::Tiny,
            image_size: Some(config.image_size),
            in_channels: Some(config.in_channels),
            model_channels: Some(config.model_channels),
            channel_mult: Some(config.channel_mult.clone()),
            num_res_blocks: Some(config.num_res_blocks),
            attention_resolutions: Some(config.attention_resolutions.clone()),
            num_heads: Some(config.num_heads),
            dropout: Some(config.dropout),
            norm_groups: Some(config.norm_groups),
            time_injection: Some(config.time_injection),
            num_classes: config.num_classes,
            time_embed_dim: Some(config.time_embed_dim),
            cross_attention_dim: config.cross_attention_dim,
            transformer_layers_per_block: config
                .cross_attention_dim
                .map(|_| config.transformer_layers_per_block),
            use_linear_projection: config
                .cross_attention_dim
                .map(|_| config.use_linear_projection),
            heads_per_level: config.heads_per_level.clone(),
            init_from: None,
        }
    }
}
