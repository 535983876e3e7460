//! The latent space of a trained latent run: the frozen autoencoder and the scaling factor
//! the run measured or was given (recorded in its `latent.json`), mapping images to the
//! diffusion model's inputs and back.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_models::vae::AutoencoderKL;
use serde::{Deserialize, Serialize};

use super::first_stage::FirstStage;
use crate::error::TrainError;
use crate::run_dir::read_json;

/// `latent.json` of a latent run: what its UNet's inputs are, so that sampling decodes with
/// the same autoencoder and factor the training encoded with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentRecord {
    /// The autoencoder as `latent.autoencoder` named it when the run started.
    pub autoencoder: PathBuf,
    /// SHA-256 of its weight file: a run refuses an autoencoder that has changed since.
    pub autoencoder_sha256: String,
    /// The diffusion model sees `scaling_factor · z`.
    pub scaling_factor: f64,
    /// Where the factor came from: "latent.scaling_factor", "the autoencoder's config.json"
    /// or "1/σ of N training latents".
    pub scaling_from: String,
    /// `[channels, side, side]` of one latent.
    pub latent_shape: [usize; 3],
}

/// A frozen autoencoder and the factor between its latents and the diffusion model's inputs.
#[derive(Debug)]
pub struct LatentSpace {
    pub vae: AutoencoderKL,
    pub scaling_factor: f64,
}

impl LatentSpace {
    /// The latent space recorded in a run's `latent.json`, with its autoencoder loaded on
    /// `device`; the autoencoder's weights must be those the run was trained with.
    pub fn of_run(
        first: &FirstStage,
        record_path: &Path,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let record: LatentRecord = read_json(record_path)?;
        check_same_weights(&first.weights_sha256()?, first, &record, record_path)?;
        Ok(Self {
            vae: first.load(device)?,
            scaling_factor: record.scaling_factor,
        })
    }

    /// The diffusion model's inputs for images: the posterior's mode, scaled.
    ///
    /// # Shapes
    /// - `images`: `[B, C, S, S]` in [-1, 1]; returns `[B, latent_channels, S/f, S/f]`
    pub fn encode(&self, images: Tensor<4>) -> Tensor<4> {
        self.vae.encode(images).mode() * self.scaling_factor
    }

    /// Images for the diffusion model's outputs.
    ///
    /// # Shapes
    /// - `latents`: `[B, latent_channels, s, s]`; returns `[B, C, s·f, s·f]`, clamped to [-1, 1]
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        self.vae
            .decode(latents / self.scaling_factor)
            .clamp(-1.0, 1.0)
    }
}

/// Refuses an autoencoder whose weights (SHA-256 `now`) are not the ones `record` was made
/// with.
pub(crate) fn check_same_weights(
    now: &str,
    first: &FirstStage,
    record: &LatentRecord,
    record_path: &Path,
) -> Result<(), TrainError> {
    if now != record.autoencoder_sha256 {
        return Err(TrainError::RunFile {
            path: record_path.to_path_buf(),
            message: format!(
                "the run was trained on the latents of an autoencoder with weights SHA-256 {}, \
                 but {} now has {now}: the UNet only works with the latents it was trained on",
                record.autoencoder_sha256,
                first.weights.display()
            ),
        });
    }
    Ok(())
}
