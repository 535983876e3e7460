//! The `[latent]` section: the autoencoder a diffusion run trains in the latent space of
//! (latent diffusion, Rombach et al. 2022), how its latents are scaled and where they are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::autoencoder_config::TaskKind;
use crate::config::RunConfig;

oxidiff_diffusion::named_enum! {
    /// Where a latent run keeps its encoded images.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum LatentCache {
        /// In memory, and in the run's `latents.safetensors`, which a resumed run reads back
        /// instead of encoding again when the autoencoder and the images are still the same.
        #[default]
        Disk = "disk",
        /// In memory only: every start encodes the images again.
        Memory = "memory",
    }
}

/// `[latent]`: unset `autoencoder` trains in pixel space.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatentSection {
    /// An oxidiff autoencoder run (`task = "autoencoder"`, finished; or one of its
    /// checkpoints), or a diffusers `AutoencoderKL` directory (`config.json` +
    /// `diffusion_pytorch_model.safetensors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoencoder: Option<PathBuf>,
    /// The diffusion model sees `scaling_factor · z`. Unset: the diffusers directory's
    /// `scaling_factor` (SD: 0.18215), or for an oxidiff run 1/σ of the training latents
    /// (latent-diffusion's `scale_by_std`), measured once and saved in the run's `latent.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_factor: Option<f64>,
    pub cache: LatentCache,
}

impl LatentSection {
    /// Checks what can be checked without reading the autoencoder; messages start with the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.scaling_factor
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!(
                "latent.scaling_factor: must be a positive number, got {s}"
            ));
        }
        if self
            .autoencoder
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("latent.autoencoder: the path is empty".into());
        }
        Ok(())
    }
}

impl RunConfig {
    /// What a latent run cannot combine with, each named (checked without reading the
    /// autoencoder).
    pub(crate) fn validate_latent(&self) -> Result<(), String> {
        if self.task == TaskKind::Autoencoder {
            return Err(
                "latent.autoencoder: names the first stage of a diffusion run; an autoencoder \
                 run (task = \"autoencoder\") trains on images"
                    .into(),
            );
        }
        if self.data.standardize != oxidiff_data::Standardize::MinusOneOne {
            return Err(
                "data.standardize: a latent run hands the autoencoder images in [-1, 1]; use \
                 \"minus-one-one\""
                    .into(),
            );
        }
        if self.diffusion.clip_sample {
            return Err(
                "diffusion.clip_sample: latents are not confined to [-1, 1], so x̂₀ must not be \
                 clipped there; set diffusion.clip_sample = false in a latent run"
                    .into(),
            );
        }
        if self.data.flip || self.data.crop != oxidiff_data::CropMode::Center {
            return Err(
                "data.flip / data.crop: a latent run encodes each image once, so batch-time \
                 augmentation of the pixels cannot apply; set data.flip = false and data.crop \
                 = \"center\""
                    .into(),
            );
        }
        Ok(())
    }
}
