//! Networks for oxidiff: the ADM-style UNet and its presets.
//!
//! Every item has one path: the CPU fast paths live in [`cpu`], all else at the crate root.

mod config;
pub mod cpu;
mod diffusers_io;
mod error;
mod flops;
mod footprint;
mod presets;
pub mod text;
mod unet;
pub mod vae;

pub use config::{ModelConfig, TimeInjection, UNetConfig};
pub use diffusers_io::{ConfigKeys, DIFFUSERS_VERSION};
pub use error::ModelError;
pub use flops::FlopCount;
pub use footprint::{CONTEXT_TOKENS, Footprint};
pub use presets::Preset;
pub use unet::{
    AttentionBlock, DownLevel, Downsample, ResAttn, ResBlock, TimeEmbedding, UNet, UpLevel,
    Upsample, load_diffusers_unet, save_diffusers_unet, timestep_embedding,
    unet_config_from_unet2d_json, unet2d_config_json,
};
pub use unet::{
    BasicTransformerBlock, CrossAttention, FeedForward, Projection, SpatialTransformer,
    SpatialTransformerSpec, unet_config_from_unet2d_condition_json, unet2d_condition_config_json,
};
