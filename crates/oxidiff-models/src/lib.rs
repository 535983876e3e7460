//! Networks for oxidiff: the ADM-style UNet and its presets.

pub mod config;
pub mod cpu;
mod error;
pub mod flops;
pub mod presets;
pub mod unet;

pub use config::{ModelConfig, TimeInjection, UNetConfig};
pub use error::ModelError;
pub use flops::FlopCount;
pub use presets::Preset;
pub use unet::UNet;
