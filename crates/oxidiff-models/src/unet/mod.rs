//! The ADM-style UNet (Ho et al. 2020; Dhariwal & Nichol 2021), with latent diffusion's
//! cross-attention blocks (Rombach et al. 2022) when it is text-conditioned; one concern per
//! file.

mod attention;
mod diffusers;
mod diffusers_condition_config;
mod diffusers_config;
mod embeddings;
mod model;
mod resample;
mod resblock;
mod transformer;

pub use attention::AttentionBlock;
pub use diffusers::{load_diffusers_unet, save_diffusers_unet};
pub use diffusers_condition_config::{
    unet_config_from_unet2d_condition_json, unet2d_condition_config_json,
};
pub use diffusers_config::{unet_config_from_unet2d_json, unet2d_config_json};
pub use embeddings::{TimeEmbedding, timestep_embedding};
pub use model::{DownLevel, ResAttn, UNet, UpLevel};
pub use resample::{Downsample, Upsample, nearest_2x};
pub use resblock::ResBlock;
pub(crate) use resblock::conv3x3;
pub use transformer::{
    BasicTransformerBlock, CrossAttention, FeedForward, Projection, SpatialTransformer,
    SpatialTransformerSpec,
};
