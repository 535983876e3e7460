//! Named architectures sized to the compute at hand.

use serde::{Deserialize, Serialize};

use crate::config::{TimeInjection, UNetConfig};

/// A named starting architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// 1×8×8 (the embedded digits); trains on two CPU cores in minutes.
    Tiny,
    /// 3×32×32, the benchmark model "bench-small" of DESIGN.md: 6,472,195 parameters.
    Small,
    /// 3×32×32, the DDPM paper's CIFAR-10 network (Ho et al. 2020, appendix B): 35.7M parameters.
    #[serde(rename = "ddpm-cifar10")]
    DdpmCifar10,
}

impl Preset {
    /// Every preset, for help texts and listings.
    pub const ALL: [Preset; 3] = [Preset::Tiny, Preset::Small, Preset::DdpmCifar10];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::DdpmCifar10 => "ddpm-cifar10",
        }
    }

    /// Parses a preset name as written in configs.
    pub fn from_name(name: &str) -> Option<Preset> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The architecture of this preset.
    pub fn config(self) -> UNetConfig {
        match self {
            Preset::Tiny => UNetConfig {
                image_size: 8,
                in_channels: 1,
                out_channels: 1,
                model_channels: 32,
                channel_mult: vec![1, 2],
                num_res_blocks: 1,
                attention_resolutions: vec![4],
                num_heads: 1,
                dropout: 0.0,
                norm_groups: 8,
                time_embed_dim: 128,
                time_injection: TimeInjection::Add,
                num_classes: None,
            },
            Preset::Small => UNetConfig {
                image_size: 32,
                in_channels: 3,
                out_channels: 3,
                model_channels: 64,
                channel_mult: vec![1, 2, 2],
                num_res_blocks: 2,
                attention_resolutions: vec![16],
                num_heads: 1,
                dropout: 0.0,
                norm_groups: 32,
                time_embed_dim: 256,
                time_injection: TimeInjection::Add,
                num_classes: None,
            },
            Preset::DdpmCifar10 => UNetConfig {
                image_size: 32,
                in_channels: 3,
                out_channels: 3,
                model_channels: 128,
                channel_mult: vec![1, 2, 2, 2],
                num_res_blocks: 2,
                attention_resolutions: vec![16],
                num_heads: 1,
                dropout: 0.1,
                norm_groups: 32,
                time_embed_dim: 512,
                time_injection: TimeInjection::Add,
                num_classes: None,
            },
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
