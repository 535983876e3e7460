//! Checkpoints: `checkpoints/step-NNNNNNN/` holding the model, EMA and optimiser records
//! (burnpack), `state.json` (step, RNG state), the run's `config.toml` and `SHA256SUMS` of
//! them all, checked whenever one is read.
//!
//! A checkpoint directory is built under a hidden temporary name, every file fsynced, and then
//! renamed into place, so a crash leaves either the whole checkpoint or none of it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checksums::{Checksums, read_verified};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::run_dir::{
    CHECKSUMS_FILE, CONFIG_FILE, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, RunDir, STATE_FILE,
    sync_dir, write_file_synced,
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
    /// The learning-rate scale and rollbacks left by divergences (absent: none happened).
    #[serde(default, skip_serializing_if = "Divergence::is_none")]
    pub divergence: Divergence,
    #[serde(flatten)]
    pub task: S,
}

/// What divergences (a NaN or infinite loss) did to a run: each rollback to the last
/// checkpoint halves `lr_scale`, which stays for the rest of the run; `in_a_row` counts the
/// rollbacks since training last got past the step that diverged (`diverged_at`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    pub lr_scale: f64,
    pub in_a_row: u32,
    pub diverged_at: Option<u64>,
}

impl Default for Divergence {
    fn default() -> Self {
        Self {
            lr_scale: 1.0,
            in_a_row: 0,
            diverged_at: None,
        }
    }
}

impl Divergence {
    /// No divergence happened (what `state.json` leaves out).
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
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
    if let Err(e) = write_parts(&tmp_dir, &final_dir, &parts) {
        // A full disk must not stay full of a checkpoint that will never be used.
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    if final_dir.exists() {
        remove_checkpoint(run_dir, parts.state.step, &final_dir)?;
    }
    fs::rename(&tmp_dir, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_dir(&root).map_err(|e| TrainError::io(&root, e))?;

    let all = run_dir.list_checkpoints()?;
    for (step, old) in all.iter().take(all.len().saturating_sub(keep)) {
        remove_checkpoint(run_dir, *step, old)?;
    }
    Ok(final_dir)
}

/// Writes and fsyncs every file of a checkpoint into `tmp_dir`, with `SHA256SUMS` last.
fn write_parts<M: Module, S: Serialize>(
    tmp_dir: &Path,
    final_dir: &Path,
    parts: &CheckpointParts<'_, M, S>,
) -> Result<(), TrainError> {
    let bad = |message: String| TrainError::Checkpoint {
        path: final_dir.to_path_buf(),
        message,
    };
    let optimizer = parts
        .optimizer
        .into_bytes()
        .map_err(|e| bad(format!("cannot serialise the optimiser state: {e}")))?;
    let state = serde_json::to_vec_pretty(parts.state)
        .map_err(|e| bad(format!("cannot serialise the training state: {e}")))?;
    let files: [(&str, Vec<u8>); 5] = [
        (MODEL_FILE, record_bytes(parts.model.valid(), final_dir)?),
        (EMA_FILE, record_bytes(parts.ema.clone(), final_dir)?),
        (OPTIMIZER_FILE, optimizer.to_vec()),
        (STATE_FILE, state),
        (CONFIG_FILE, parts.config.to_toml().into_bytes()),
    ];
    let mut sums = Checksums::default();
    for (name, bytes) in &files {
        write_file_synced(&tmp_dir.join(name), bytes)?;
        sums.add(name, bytes);
    }
    write_file_synced(&tmp_dir.join(CHECKSUMS_FILE), sums.to_text().as_bytes())?;
    sync_dir(tmp_dir).map_err(|e| TrainError::io(tmp_dir, e))
}

/// Deletes a checkpoint: renamed away first, so a deletion cut short leaves a hidden leftover
/// (removed at the next start), never a partial checkpoint under its name.
fn remove_checkpoint(run_dir: &RunDir, step: u64, dir: &Path) -> Result<(), TrainError> {
    let away = run_dir.checkpoint_deleting(step);
    if away.exists() {
        fs::remove_dir_all(&away).map_err(|e| TrainError::io(&away, e))?;
    }
    fs::rename(dir, &away).map_err(|e| TrainError::io(dir, e))?;
    fs::remove_dir_all(&away).map_err(|e| TrainError::io(&away, e))
}

/// The `config.toml` of checkpoint `dir` (checked against its `SHA256SUMS`), with `overrides`.
pub(crate) fn load_config(dir: &Path, overrides: &[String]) -> Result<RunConfig, TrainError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = read_verified(&path)?;
    let text = String::from_utf8(bytes).map_err(|_| TrainError::Checkpoint {
        path: path.clone(),
        message: "not UTF-8 text".into(),
    })?;
    RunConfig::from_toml_str(&text, &path.display().to_string(), overrides)
}

/// Loads weights saved by [`save_checkpoint`] into `module` (built from the same config).
/// Refused: a file whose bytes differ from its `SHA256SUMS` entry, one burn cannot read or
/// apply, and weights that are NaN or infinite (naming the tensor).
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M, TrainError> {
    let bytes = read_verified(path)?;
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
    .and_then(|module| match first_non_finite(&module) {
        Some(tensor) => Err(bad(format!(
            "tensor `{tensor}` holds NaN or infinite values"
        ))),
        None => Ok(module),
    })
}

/// The name (`down_blocks.0.conv1.weight`, as burn's records spell it) of the first float
/// parameter with a value that is not finite.
fn first_non_finite<M: Module>(module: &M) -> Option<String> {
    struct Finder {
        path: Vec<String>,
        found: Option<String>,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.found.is_some() {
                return;
            }
            let data = param.val().into_data();
            let finite = match data.as_slice::<f32>() {
                Ok(values) => values.iter().all(|v| v.is_finite()),
                Err(_) => data.iter::<f64>().all(f64::is_finite),
            };
            if !finite {
                self.found = Some(self.path.join("."));
            }
        }
    }
    let mut finder = Finder {
        path: Vec::new(),
        found: None,
    };
    module.visit(&mut finder);
    finder.found
}

/// Loads an optimiser state saved by [`save_checkpoint`].
pub fn load_optimizer(
    optimizer: ModuleOptimizer,
    path: &Path,
) -> Result<ModuleOptimizer, TrainError> {
    let bytes = read_verified(path)?;
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

/// Reads `state.json` of checkpoint directory `dir` and checks it against the checkpoint's
/// name and the run's `metrics.jsonl` (see [`check_state`]).
pub fn load_state<S: DeserializeOwned>(dir: &Path) -> Result<SavedState<S>, TrainError> {
    let path = dir.join(STATE_FILE);
    if !path.exists() && crate::diffusers::is_diffusers_dir(dir) {
        return Err(crate::diffusers::not_a_checkpoint(dir));
    }
    let bytes = read_verified(&path)?;
    let saved: SavedState<S> =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: format!("invalid state file: {e}"),
        })?;
    check_state(&saved, dir)?;
    Ok(saved)
}

/// A `state.json` that disagrees with where it lies would retrain on trained weights and
/// overwrite later checkpoints and log rows: its step must be the one in the directory's name
/// (`step-NNNNNNN`; a checkpoint copied under another name is not checked against it), the
/// last row of the run's `metrics.jsonl` when the run has one, and at least the EMA's count of
/// updates (one per step).
fn check_state<S>(saved: &SavedState<S>, dir: &Path) -> Result<(), TrainError> {
    let bad = |message: String| TrainError::Checkpoint {
        path: dir.join(STATE_FILE),
        message,
    };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(named) = name
        .as_deref()
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse::<u64>().ok())
        && named != saved.step
    {
        return Err(bad(format!(
            "\"step\" is {} but the checkpoint directory is step {named}",
            saved.step
        )));
    }
    if saved.ema_updates > saved.step {
        return Err(bad(format!(
            "\"ema_updates\" is {} but only {} steps were taken (one update per step)",
            saved.ema_updates, saved.step
        )));
    }
    // A checkpoint copied out of its run is its own run directory, without a log to check.
    let run = RunDir::of_checkpoint(dir);
    let metrics = run.metrics();
    if run.path() != dir
        && let Some(logged) = crate::run_dir::last_logged_step(&metrics)?
        && logged < saved.step
    {
        return Err(bad(format!(
            "\"step\" is {} but {} ends at step {logged}",
            saved.step,
            metrics.display()
        )));
    }
    Ok(())
}
