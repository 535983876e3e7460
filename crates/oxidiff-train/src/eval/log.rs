//! `eval.jsonl`: one line per in-training evaluation (and per `oxidiff eval` with `--log`), so
//! the plots and the report can be redrawn from the run directory alone.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::features::SampleDistance;
use super::{BandMse, NllReport};
use crate::TrainError;

/// One evaluation at one step; absent parts were not measured at that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_mse: Option<BandMse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll: Option<NllReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<SampleDistance>,
    /// An autoencoder's held-out reconstructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconstruction: Option<ReconstructionScores>,
}

/// How well an autoencoder reconstructs held-out images from its posterior's mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconstructionScores {
    /// Peak signal-to-noise ratio in dB (pixels in [-1, 1]), mean over the images.
    pub psnr: f64,
    /// Structural similarity ([`super::ssim`]), mean over the images; absent (0) in logs
    /// from before it was measured.
    #[serde(default)]
    pub ssim: f64,
    /// KL(q(z|x) ‖ N(0, I)) per latent element, mean over the images.
    pub kl_per_element: f64,
    /// Mean and standard deviation of every latent channel's posterior means (the scale a
    /// latent diffusion model would see; `scale_by_std` is 1 / std).
    pub latent_mean: Vec<f64>,
    pub latent_std: Vec<f64>,
    pub images: usize,
}

/// Appends `record` as one line (flushed: a crash loses at most the line being written).
pub fn append_eval(path: &Path, record: &EvalRecord) -> Result<(), TrainError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    let line = serde_json::to_string(record).expect("EvalRecord serialises");
    writeln!(file, "{line}").map_err(|e| TrainError::io(path, e))?;
    file.flush().map_err(|e| TrainError::io(path, e))
}

/// Reads every complete line; a torn last line (a crash mid-write) is ignored, and records
/// past `up_to` (left by a run that crashed before its next checkpoint) are dropped.
pub fn read_eval(path: &Path, up_to: Option<u64>) -> Result<Vec<EvalRecord>, TrainError> {
    let Some(text) = crate::run_dir::read_log(path)? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<EvalRecord>(line).ok())
        .filter(|r| up_to.is_none_or(|s| r.step <= s))
        .collect())
}
