//! Latent diffusion's second stage (Rombach et al. 2022): a diffusion run that names an
//! autoencoder (`[latent] autoencoder = …`) trains its UNet on the autoencoder's scaled
//! latents, and every command that makes images decodes what the UNet makes.

mod config;
mod encode;
mod first_stage;
mod space;

pub use config::{LatentCache, LatentSection};
pub use encode::{LatentsMade, encode_run_data};
pub use first_stage::{FirstStage, FirstStageKind, LatentSizes};
pub use space::{LatentRecord, LatentSpace};

pub(crate) use encode::encode;
