//! `AutoencoderKLConfig`: the architecture of a KL autoencoder, with the keys and meaning of
//! diffusers' `AutoencoderKL` `config.json` (a directory diffusers wrote is read by these names).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::model::AutoencoderKL;
use crate::ModelError;

/// diffusers' block types: the only ones an `AutoencoderKL` uses.
const DOWN_BLOCK: &str = "DownEncoderBlock2D";
const UP_BLOCK: &str = "UpDecoderBlock2D";

/// A KL autoencoder (Rombach et al. 2022, §3; diffusers' `AutoencoderKL`). Downsampling factor
/// f = 2^(levels − 1), latents `[latent_channels, S/f, S/f]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// One `"DownEncoderBlock2D"` per level.
    pub down_block_types: Vec<String>,
    /// One `"UpDecoderBlock2D"` per level.
    pub up_block_types: Vec<String>,
    /// Channels of each level, highest resolution first.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (the decoder has one more).
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// The image size it was built for (diffusers keeps it for tiling; any multiple of f works).
    pub sample_size: usize,
    /// Latents are multiplied by this before the diffusion model sees them (SD: 0.18215).
    pub scaling_factor: f64,
    /// Dropout in the resnets (not a diffusers key: diffusers' VAE has none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl AutoencoderKLConfig {
    /// An architecture with `block_out_channels` levels of diffusers' block types.
    pub fn new(
        block_out_channels: Vec<usize>,
        layers_per_block: usize,
        latent_channels: usize,
    ) -> Self {
        let levels = block_out_channels.len();
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec![DOWN_BLOCK.into(); levels],
            up_block_types: vec![UP_BLOCK.into(); levels],
            block_out_channels,
            layers_per_block,
            latent_channels,
            norm_num_groups: 32,
            sample_size: 256,
            scaling_factor: 0.18215,
            dropout: 0.0,
        }
    }

    /// Stable Diffusion 1.x / 2.x's autoencoder: 128/256/512/512 channels, two resnets per
    /// level, f = 8, 4 latent channels.
    pub fn stable_diffusion() -> Self {
        Self {
            sample_size: 512,
            ..Self::new(vec![128, 256, 512, 512], 2, 4)
        }
    }

    /// Small enough to train on two CPU cores in minutes: 32/64/64 channels, one resnet per
    /// level, f = 4, 4 latent channels, for 32×32 images.
    pub fn small(in_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels: in_channels,
            norm_num_groups: 16,
            sample_size: 32,
            ..Self::new(vec![32, 64, 64], 1, 4)
        }
    }

    pub fn num_levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Pixels per latent along each side.
    pub fn downsampling_factor(&self) -> usize {
        1 << self.num_levels().saturating_sub(1)
    }

    /// Checks what would not build or run; the message names the key.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |key: &str, message: String| Err(ModelError::autoencoder(key, message));
        if self.block_out_channels.is_empty() || self.block_out_channels.len() > 16 {
            return bad(
                "block_out_channels",
                format!("needs 1 to 16 levels, got {:?}", self.block_out_channels),
            );
        }
        for (key, types, expected) in [
            ("down_block_types", &self.down_block_types, DOWN_BLOCK),
            ("up_block_types", &self.up_block_types, UP_BLOCK),
        ] {
            if types.len() != self.num_levels() || types.iter().any(|t| t != expected) {
                return bad(
                    key,
                    format!(
                        "must be {} × \"{expected}\" (one per block_out_channels level), got {types:?}",
                        self.num_levels()
                    ),
                );
            }
        }
        for (key, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("latent_channels", self.latent_channels),
            ("norm_num_groups", self.norm_num_groups),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || !c.is_multiple_of(self.norm_num_groups))
        {
            return bad(
                "block_out_channels",
                format!(
                    "{c} is not a positive multiple of norm_num_groups = {}",
                    self.norm_num_groups
                ),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            );
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return bad(
                "scaling_factor",
                format!("must be positive, got {}", self.scaling_factor),
            );
        }
        Ok(())
    }

    /// Checks that `image_size` can be encoded: a multiple of the downsampling factor.
    pub fn check_image_size(&self, image_size: usize) -> Result<(), ModelError> {
        let f = self.downsampling_factor();
        if image_size == 0 || !image_size.is_multiple_of(f) {
            return Err(ModelError::invalid(
                "image_size",
                format!(
                    "{image_size} is not a multiple of the autoencoder's downsampling factor {f} \
                     ({} levels)",
                    self.num_levels()
                ),
            ));
        }
        Ok(())
    }

    /// The network with freshly initialised weights (burn's defaults, as diffusers' are
    /// PyTorch's).
    pub fn init(&self, device: &Device) -> AutoencoderKL {
        AutoencoderKL::new(self, device)
    }
}
