//! Checkpoints: `checkpoints/step-NNNNNNN/` holding the model, EMA and optimiser records
//! (burnpack), `state.json` (step, RNG state) and the run's `config.toml`.
//!
//! A checkpoint directory is built under a hidden temporary name, every file fsynced, and then
//! renamed into place, so a crash leaves either the whole checkpoint or none of it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use oxidiff_diffusion::LossHistory;
use oxidiff_models::UNet;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::TrainError;

pub const MODEL_FILE: &str = "model.bpk";
pub const EMA_FILE: &str = "ema.bpk";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.toml";
const CHECKPOINTS_DIR: &str = "checkpoints";

/// Everything besides the weights that a resumed run needs to continue exactly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Updates folded into the EMA weights.
    pub ema_updates: u64,
    /// The trainer's generator (timesteps and noise), mid-stream.
    pub rng: ChaCha8Rng,
    /// Recent losses per timestep (`train.timestep_sampler = "loss-second-moment"`); absent in
    /// runs without it and in checkpoints from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_history: Option<LossHistory>,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    replace_file(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// [`write_atomic`] with the plain I/O error, for writers with error types of their own (plots,
/// the report page). Readers — a resumed run, a browser reloading the report — see the old file
/// or the new one, never part of one. The temporary name is unique per process and call, so
/// two writers of one path never share a temporary file.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn record_bytes(module: UNet, path: &Path) -> Result<Vec<u8>, TrainError> {
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot serialise the weights: {e}"),
        })?;
    Ok(bytes.to_vec())
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut file = File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    file.sync_all().map_err(|e| TrainError::io(path, e))
}

/// The directory of the checkpoint at `step` inside `run_dir`.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join(CHECKPOINTS_DIR)
        .join(format!("step-{step:07}"))
}

/// What a checkpoint holds.
pub struct CheckpointParts<'a> {
    pub config: &'a RunConfig,
    pub model: &'a UNet,
    pub ema: &'a UNet,
    pub optimizer: &'a ModuleOptimizer,
    pub state: &'a TrainState,
}

/// Writes a checkpoint atomically and deletes all but the newest `keep`.
pub fn save_checkpoint(
    run_dir: &Path,
    parts: CheckpointParts<'_>,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let final_dir = checkpoint_dir(run_dir, parts.state.step);
    let tmp_dir = root.join(format!(".step-{:07}.tmp", parts.state.step));
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(|e| TrainError::io(&tmp_dir, e))?;
    }
    fs::create_dir_all(&tmp_dir).map_err(|e| TrainError::io(&tmp_dir, e))?;

    write_file_synced(
        &tmp_dir.join(MODEL_FILE),
        &record_bytes(parts.model.valid(), &final_dir)?,
    )?;
    write_file_synced(
        &tmp_dir.join(EMA_FILE),
        &record_bytes(parts.ema.clone(), &final_dir)?,
    )?;
    let optim = parts
        .optimizer
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: final_dir.clone(),
            message: format!("cannot serialise the optimiser state: {e}"),
        })?;
    write_file_synced(&tmp_dir.join(OPTIMIZER_FILE), &optim)?;
    let state = serde_json::to_vec_pretty(parts.state).expect("TrainState serialises");
    write_file_synced(&tmp_dir.join(STATE_FILE), &state)?;
    write_file_synced(
        &tmp_dir.join(CONFIG_FILE),
        parts.config.to_toml().as_bytes(),
    )?;
    sync_dir(&tmp_dir).map_err(|e| TrainError::io(&tmp_dir, e))?;

    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    fs::rename(&tmp_dir, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_dir(&root).map_err(|e| TrainError::io(&root, e))?;

    let all = list_checkpoints(run_dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(final_dir)
}

/// Completed checkpoints of a run, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(&root).map_err(|e| TrainError::io(&root, e))? {
        let entry = entry.map_err(|e| TrainError::io(&root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Finds the checkpoint to load from a path that is a checkpoint directory or a run directory
/// (its newest checkpoint).
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, TrainError> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: "no such file or directory".into(),
        });
    }
    list_checkpoints(path)?
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message:
                "neither a checkpoint (no state.json) nor a run directory with checkpoints/step-*"
                    .into(),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Loads weights saved by [`save_checkpoint`] into `module` (built from the same config).
pub fn load_weights(module: UNet, path: &Path) -> Result<UNet, TrainError> {
    let bytes = read(path)?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| bad(format!("not a readable weight file: {e}")))?;
    // burn validates shapes and names; a mismatch (another architecture) is an Err, but guard
    // against a panic deeper in the loader too: a bad file must never crash the program.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        module.try_load_record(record)
    }))
    .map_err(|_| bad("the weights could not be applied (corrupt file)".into()))?
    .map_err(|e| bad(format!("does not match the model in config.toml: {e}")))
}

/// Loads an optimiser state saved by [`save_checkpoint`].
pub fn load_optimizer(
    optimizer: ModuleOptimizer,
    path: &Path,
) -> Result<ModuleOptimizer, TrainError> {
    let bytes = read(path)?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        optimizer.from_bytes(Bytes::from_bytes_vec(bytes))
    }))
    .map_err(|_| bad("the optimiser state could not be applied (corrupt file)".into()))?
    .map_err(|e| bad(format!("not a readable optimiser state: {e}")))
}

/// Reads `state.json`.
pub fn load_state(path: &Path) -> Result<TrainState, TrainError> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("invalid state file: {e}"),
    })
}
