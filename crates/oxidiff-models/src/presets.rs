//! Named architectures sized to the compute at hand.

use crate::config::{TimeInjection, UNetConfig};

oxidiff_diffusion::named_enum! {
    /// A named starting architecture.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Preset {
        /// 1×8×8 (the embedded digits); trains on two CPU cores in minutes.
        Tiny = "tiny",
        /// 3×32×32, the benchmark model "bench-small" of DESIGN.md: 6,472,195 parameters.
        Small = "small",
        /// 3×32×32, the DDPM paper's CIFAR-10 network (Ho et al. 2020, appendix B): 35.7M
        /// parameters.
        DdpmCifar10 = "ddpm-cifar10",
        /// 4×16×16 latents (64×64 images through the `small` autoencoder) attending to
        /// 384-wide text states (all-MiniLM-L6-v2's): Stable Diffusion 1.x's UNet layout —
        /// spatial transformers with self- and cross-attention at every level but the lowest
        /// and in the middle, two ResBlocks per level — at a CPU's size.
        LatentText = "latent-text",
    }
}

impl Preset {
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
                cross_attention_dim: None,
                transformer_layers_per_block: 1,
                use_linear_projection: false,
                heads_per_level: None,
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
                cross_attention_dim: None,
                transformer_layers_per_block: 1,
                use_linear_projection: false,
                heads_per_level: None,
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
                cross_attention_dim: None,
                transformer_layers_per_block: 1,
                use_linear_projection: false,
                heads_per_level: None,
            },
            Preset::LatentText => UNetConfig {
                image_size: 16,
                in_channels: 4,
                out_channels: 4,
                model_channels: 64,
                channel_mult: vec![1, 2, 2],
                num_res_blocks: 2,
                attention_resolutions: vec![16, 8],
                num_heads: 4,
                dropout: 0.0,
                norm_groups: 32,
                time_embed_dim: 256,
                time_injection: TimeInjection::Add,
                num_classes: None,
                cross_attention_dim: Some(384),
                transformer_layers_per_block: 1,
                use_linear_projection: false,
                heads_per_level: None,
            },
        }
    }
}
