//! `oxidiff eval` on an autoencoder run (`task = "autoencoder"`): reconstruction PSNR and
//! SSIM, KL per latent element and latent channel statistics of the evaluated images, and with
//! `--fd` FD-oxidiff of the reconstructions against the originals.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_data::Standardize;
use serde::{Deserialize, Serialize};

use super::{Context, EvalOptions, EvalPhase, EvalSplit, RunData, feature_network, select_images};
use crate::TrainError;
use crate::autoencoder_config::TaskKind;
use crate::checkpoint::{load_config, load_state, load_weights};
use crate::eval::{
    ReconstructionScores, SampleDistance, features_of, reconstruction_scores, sample_distance,
};
use crate::run_dir::{EMA_FILE, MODEL_FILE, RunDir, read_json, resolve_checkpoint};
use crate::trainer::{AutoencoderState, AutoencoderTask, TrainTask};

/// The numbers of one autoencoder evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderEvalResult {
    pub checkpoint: PathBuf,
    pub step: u64,
    pub split: EvalSplit,
    /// The evaluated source, in words.
    pub source: String,
    pub scores: ReconstructionScores,
    /// FD-oxidiff (with precision and recall) of the reconstructions against the originals,
    /// in the feature space of the run's own network (`--fd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<SampleDistance>,
}

/// Whether the checkpoint (or run directory) at `path` is an autoencoder's.
pub fn is_autoencoder(path: &Path) -> Result<bool, TrainError> {
    let checkpoint = resolve_checkpoint(path)?;
    Ok(load_config(&checkpoint, &[])?.task == TaskKind::Autoencoder)
}

/// Evaluates the autoencoder checkpoint at `path` (or a run directory's newest) on the images
/// `options.images` selects, `options.batch_size` at a time; FD-oxidiff of the reconstructions
/// when `options.distance.samples` is set (its count is not used: every evaluated image is
/// reconstructed once).
///
/// # Errors
/// Not an autoencoder run; unreadable checkpoint or run files; no images to evaluate.
pub fn evaluate_autoencoder(
    path: &Path,
    options: &EvalOptions,
    device: &Device,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<AutoencoderEvalResult, TrainError> {
    let checkpoint = resolve_checkpoint(path)?;
    let config = load_config(&checkpoint, &[])?;
    if config.task != TaskKind::Autoencoder {
        return Err(TrainError::Checkpoint {
            path: checkpoint,
            message: "is a diffusion model, not an autoencoder".into(),
        });
    }
    let task = AutoencoderTask::new(&config)?;
    let weights = if options.use_ema {
        EMA_FILE
    } else {
        MODEL_FILE
    };
    let vae = load_weights(task.init_model(device), &checkpoint.join(weights))?.vae;
    let step = load_state::<AutoencoderState>(&checkpoint)?.step;
    let run_dir = RunDir::of_checkpoint(&checkpoint);
    let standardization = match config.data.standardize {
        Standardize::MinusOneOne => None,
        Standardize::PerChannel => Some(read_json(&run_dir.standardization())?),
    };
    let (size, channels) = AutoencoderTask::image_shape(&config)?;
    let c = Context {
        config: &config,
        standardization: standardization.as_ref(),
        channels,
        size,
        batch: options.batch_size.max(1),
        seed: options.seed,
        device,
    };
    let run = RunData::load(&c, run_dir)?;
    let evaluated = select_images(&c, &run, &options.images)?;
    let fd = options.distance.samples.is_some();
    let (scores, reconstructions) = reconstruction_scores(
        &vae,
        &evaluated.data,
        &evaluated.indices,
        c.batch,
        fd,
        device,
    )?;
    let distance = if fd {
        let (real, labels) = evaluated.assemble(device)?;
        let features = feature_network(&c, run, &real, &labels, progress)?;
        let rebuilt = features_of(&features.net, Tensor::cat(reconstructions, 0), c.batch);
        Some(SampleDistance {
            feature_accuracy: features.accuracy,
            ..sample_distance(&features.real, &rebuilt)?
        })
    } else {
        None
    };
    Ok(AutoencoderEvalResult {
        checkpoint,
        step,
        split: options.images.split,
        source: evaluated.source,
        scores,
        distance,
    })
}
