//! The autoencoder a latent run names (`latent.autoencoder`): an oxidiff autoencoder run or a
//! diffusers `AutoencoderKL` directory, resolved from its config files alone (so that a bad
//! combination is refused before any work) and loaded when the run needs it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxidiff_models::vae::{
    AutoencoderKL, AutoencoderKLConfig, CONFIG_JSON, WEIGHTS_FILE, load_diffusers_autoencoder,
};
use sha2::{Digest, Sha256};

use crate::autoencoder_config::TaskKind;
use crate::checkpoint::{load_config, load_state, load_weights};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::run_dir::{EMA_FILE, resolve_checkpoint};
use crate::trainer::{AutoencoderState, AutoencoderTask, TrainTask};

/// Where an autoencoder's weights come from.
#[derive(Clone, Debug, PartialEq)]
pub enum FirstStageKind {
    /// A checkpoint of an oxidiff autoencoder run (its EMA weights).
    Run {
        checkpoint: PathBuf,
        config: Box<RunConfig>,
    },
    /// A diffusers `AutoencoderKL` directory.
    Diffusers { dir: PathBuf },
}

/// An autoencoder named by `latent.autoencoder`, read from its config files.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstStage {
    /// As the config names it.
    pub path: PathBuf,
    pub kind: FirstStageKind,
    pub config: AutoencoderKLConfig,
    /// The side of the images it was trained on (diffusers: `sample_size`).
    pub image_size: usize,
    /// The file its weights are in.
    pub weights: PathBuf,
    /// The scaling factor its directory gives (diffusers' `scaling_factor`); `None` for an
    /// oxidiff run, whose latents are scaled by their measured σ.
    pub given_scaling: Option<f64>,
}

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        origin: "latent.autoencoder".into(),
        message: format!("{}: {}", path.display(), message.into()),
    }
}

impl FirstStage {
    /// Reads the autoencoder at `path`: a diffusers directory (it has `config.json`), an
    /// oxidiff run directory (which must have finished: the model trained on its latents
    /// would otherwise depend on when it was started), or one checkpoint of such a run.
    ///
    /// # Errors
    /// A missing path, a diffusion run, an unfinished run, unreadable config files.
    pub fn resolve(path: &Path) -> Result<Self, TrainError> {
        if !path.exists() {
            return Err(bad(
                path,
                "no such directory; train one with `oxidiff train --set task=autoencoder`, or \
                 name a diffusers AutoencoderKL directory",
            ));
        }
        if path.join(CONFIG_JSON).is_file() {
            return Self::diffusers(path);
        }
        let checkpoint = resolve_checkpoint(path).map_err(|e| bad(path, e.to_string()))?;
        let config = load_config(&checkpoint, &[])?;
        if config.task != TaskKind::Autoencoder {
            return Err(bad(
                path,
                "is a diffusion run (task = \"diffusion\"), not an autoencoder",
            ));
        }
        if config.data.standardize != oxidiff_data::Standardize::MinusOneOne {
            return Err(bad(
                path,
                "was trained on per-channel standardised images; a latent run needs an \
                 autoencoder of images in [-1, 1]",
            ));
        }
        let explicit = checkpoint.as_path() == path;
        let step = load_state::<AutoencoderState>(&checkpoint)?.step;
        if !explicit && step < config.train.steps {
            return Err(bad(
                path,
                format!(
                    "is unfinished (step {step} of {}): finish it with `oxidiff train --resume \
                     {}`, or name one of its checkpoints to use that one",
                    config.train.steps,
                    path.display()
                ),
            ));
        }
        let vae = config
            .autoencoder
            .resolve()
            .map_err(|message| bad(path, message))?;
        Ok(Self {
            path: path.to_path_buf(),
            image_size: config.autoencoder.image_size,
            weights: checkpoint.join(EMA_FILE),
            kind: FirstStageKind::Run {
                checkpoint,
                config: Box::new(config),
            },
            config: vae,
            given_scaling: None,
        })
    }

    fn diffusers(dir: &Path) -> Result<Self, TrainError> {
        let config_path = dir.join(CONFIG_JSON);
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
        let config: AutoencoderKLConfig = serde_json::from_str(&text)
            .map_err(|e| bad(&config_path, format!("not an AutoencoderKL config: {e}")))?;
        config
            .validate()
            .map_err(|e| bad(&config_path, e.to_string()))?;
        Ok(Self {
            path: dir.to_path_buf(),
            image_size: config.sample_size,
            weights: dir.join(WEIGHTS_FILE),
            given_scaling: Some(config.scaling_factor),
            kind: FirstStageKind::Diffusers {
                dir: dir.to_path_buf(),
            },
            config,
        })
    }

    /// The downsampling factor f.
    pub fn factor(&self) -> usize {
        self.config.downsampling_factor()
    }

    /// The autoencoder with its weights, on `device` (no autodiff: it is frozen).
    pub fn load(&self, device: &Device) -> Result<AutoencoderKL, TrainError> {
        match &self.kind {
            FirstStageKind::Run { config, .. } => {
                let task = AutoencoderTask::new(config)?;
                Ok(load_weights(task.init_model(device), &self.weights)?.vae)
            }
            FirstStageKind::Diffusers { dir } => Ok(load_diffusers_autoencoder(dir, device)?.1),
        }
    }

    /// SHA-256 of the weight file: what a latent run and its cached latents are keyed by.
    pub fn weights_sha256(&self) -> Result<String, TrainError> {
        let bytes = std::fs::read(&self.weights).map_err(|e| TrainError::io(&self.weights, e))?;
        Ok(hex(&Sha256::digest(&bytes)))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A latent run's sizes: the images it encodes and the UNet's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentSizes {
    /// Side and channels of the images (the autoencoder's input).
    pub image_size: usize,
    pub image_channels: usize,
    /// Side and channels of the latents (the UNet's input).
    pub latent_size: usize,
    pub latent_channels: usize,
}

impl FirstStage {
    /// The sizes of a latent run of `config` with this autoencoder: the image side is
    /// `data.image_size`, else `model.image_size`·f, else the autoencoder's own; the UNet's
    /// `image_size` and `in_channels` default to the latents' and must equal them when given.
    ///
    /// # Errors
    /// An image side the autoencoder cannot downsample, and sizes or channels that disagree,
    /// each naming its key.
    pub fn sizes(&self, config: &RunConfig) -> Result<LatentSizes, TrainError> {
        let f = self.factor();
        let latent_channels = self.config.latent_channels;
        let invalid = |message: String| TrainError::Config {
            origin: "[latent]".into(),
            message,
        };
        let image_size = config
            .data
            .image_size
            .or(config.model.image_size.map(|s| s * f))
            .unwrap_or(self.image_size);
        self.config.check_image_size(image_size).map_err(|e| {
            invalid(format!(
                "data.image_size: {image_size}: the autoencoder {} cannot downsample it ({e})",
                self.path.display()
            ))
        })?;
        let latent_size = image_size / f;
        if let Some(s) = config.model.image_size
            && s != latent_size
        {
            return Err(invalid(format!(
                "model.image_size: {s}, but the autoencoder {} (f = {f}) makes {latent_size}×\
                 {latent_size} latents of {image_size}×{image_size} images; leave it unset or \
                 set data.image_size = {}",
                self.path.display(),
                s * f
            )));
        }
        if let Some(c) = config.model.in_channels
            && c != latent_channels
        {
            return Err(invalid(format!(
                "model.in_channels: {c}, but the autoencoder {} has {latent_channels} latent \
                 channels, which the UNet takes in; leave it unset",
                self.path.display()
            )));
        }
        let image_channels = self.config.in_channels;
        if let Some(c) = config.data.channels
            && c != image_channels
        {
            return Err(invalid(format!(
                "data.channels: {c}, but the autoencoder {} encodes {image_channels}-channel \
                 images",
                self.path.display()
            )));
        }
        Ok(LatentSizes {
            image_size,
            image_channels,
            latent_size,
            latent_channels,
        })
    }
}
