//! Checkpoints: `checkpoints/step-NNNNNNN/` holding the model, EMA and optimiser records
//! (burnpack), `state.json` (step, RNG state) and the run's `config.toml`.
//!
//! A checkpoint directory is built under a hidden temporary name, every file fsynced, and then
//! renamed into place, so a crash leaves either the whole checkpoint or none of it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::TrainError;
use crate::run_dir::{
    CONFIG_FILE, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, RunDir, STATE_FILE, sync_dir,
    write_file_synced,
};

/// `state.json`: everything besides the weights that a resumed run needs to continue exactly.
/// `S` is what the trained task keeps of its own (the diffusion task: the loss history of
/// importance-sampled timesteps), stored beside the loop's fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedState<S> {
    /// Optimiser steps completed.
    pub step: u64,
    /// Updates folded into the EMA weights.
    pub ema_updates: u64,
    /// The trainer's generator (timesteps and noise), mid-stream.
    pub rng: ChaCha8Rng,
    #[serde(flatten)]
    pub task: S,
}

fn record_bytes<M: Module>(module: M, path: &Path) -> Result<Vec<u8>, TrainError> {
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot serialise the weights: {e}"),
        })?;
    Ok(bytes.to_vec())
}

/// What a checkpoint holds.
pub struct CheckpointParts<'a, M, S> {
    pub config: &'a RunConfig,
    /// The online weights (with or without autodiff).
    pub model: &'a M,
    pub ema: &'a M,
    pub optimizer: &'a ModuleOptimizer,
    pub state: &'a SavedState<S>,
}

/// Writes a checkpoint atomically and deletes all but the newest `keep`.
pub fn save_checkpoint<M: Module, S: Serialize>(
    run_dir: &RunDir,
    parts: CheckpointParts<'_, M, S>,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    let root = run_dir.checkpoints_dir();
    fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let final_dir = run_dir.checkpoint(parts.state.step);
    let tmp_dir = run_dir.checkpoint_tmp(parts.state.step);
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
    let state = serde_json::to_vec_pretty(parts.state).map_err(|e| TrainError::Checkpoint {
        path: final_dir.clone(),
        message: format!("cannot serialise the training state: {e}"),
    })?;
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

    let all = run_dir.list_checkpoints()?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(final_dir)
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Loads weights saved by [`save_checkpoint`] into `module` (built from the same config).
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M, TrainError> {
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
pub fn load_state<S: DeserializeOwned>(path: &Path) -> Result<SavedState<S>, TrainError> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("invalid state file: {e}"),
    })
}
