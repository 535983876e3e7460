//! The run directory: every file and folder name of a run, in one place, and the atomic writers
//! everything in it is written with.
//!
//! ```text
//! <run>/
//!   config.toml            the run config (RunConfig::to_toml)
//!   split.json             the held-out images, by key
//!   data_report.json       counts per class and split, every skipped input with its reason
//!   standardization.json   per-channel statistics (data.standardize = "per-channel")
//!   metrics.jsonl          one line per optimiser step
//!   eval.jsonl             held-out evaluations during training
//!   samples/step-NNNNNNN.png (and step-NNNNNNN.txt: a text-to-image grid's prompts)
//!   plots/*.png
//!   report.html
//!   tensorboard/           event files
//!   fd_oxidiff/            the cached feature network of FD-oxidiff
//!   checkpoints/step-NNNNNNN/   model.bpk, ema.bpk, optimizer.bpk, state.json, config.toml
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::TrainError;

/// The run config, at the top of a run and inside every checkpoint.
pub const CONFIG_FILE: &str = "config.toml";
/// The online weights of a checkpoint.
pub const MODEL_FILE: &str = "model.bpk";
/// The EMA weights of a checkpoint.
pub const EMA_FILE: &str = "ema.bpk";
/// The optimiser state of a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Step, EMA updates and generator state of a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// The SHA-256 of every other file of a checkpoint (`sha256sum -c` reads it).
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

const SPLIT_FILE: &str = "split.json";
const DATA_REPORT_FILE: &str = "data_report.json";
const STANDARDIZATION_FILE: &str = "standardization.json";
const METRICS_FILE: &str = "metrics.jsonl";
const EVAL_LOG_FILE: &str = "eval.jsonl";
const SAMPLES_DIR: &str = "samples";
const PLOTS_DIR: &str = "plots";
const REPORT_FILE: &str = "report.html";
const TENSORBOARD_DIR: &str = "tensorboard";
const FD_CACHE_DIR: &str = "fd_oxidiff";
const CHECKPOINTS_DIR: &str = "checkpoints";
const CHECKPOINT_TMP_SUFFIX: &str = ".tmp";
const DELETING_SUFFIX: &str = ".deleting";

/// A run directory (it need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run a checkpoint directory belongs to: `<run>/checkpoints/step-N` → `<run>`; a
    /// checkpoint directory anywhere else is its own run directory (it holds `config.toml`).
    pub fn of_checkpoint(checkpoint: &Path) -> Self {
        let parent = checkpoint.parent();
        match parent.and_then(|p| p.parent()) {
            Some(run)
                if parent
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == CHECKPOINTS_DIR) =>
            {
                Self::new(run)
            }
            _ => Self::new(checkpoint),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn split(&self) -> PathBuf {
        self.root.join(SPLIT_FILE)
    }

    pub fn data_report(&self) -> PathBuf {
        self.root.join(DATA_REPORT_FILE)
    }

    pub fn standardization(&self) -> PathBuf {
        self.root.join(STANDARDIZATION_FILE)
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    /// A latent run's `latent.json`: its autoencoder and scaling factor.
    pub fn latent_record(&self) -> PathBuf {
        self.root.join("latent.json")
    }

    /// A latent run's encoded images (`latent.cache = "disk"`).
    pub fn latent_cache(&self) -> PathBuf {
        self.root.join("latents.safetensors")
    }

    pub fn eval_log(&self) -> PathBuf {
        self.root.join(EVAL_LOG_FILE)
    }

    pub fn samples_dir(&self) -> PathBuf {
        self.root.join(SAMPLES_DIR)
    }

    /// The sample grid written at `step`.
    pub fn sample_grid(&self, step: u64) -> PathBuf {
        self.samples_dir().join(format!("step-{step:07}.png"))
    }

    pub fn plots_dir(&self) -> PathBuf {
        self.root.join(PLOTS_DIR)
    }

    pub fn report_page(&self) -> PathBuf {
        self.root.join(REPORT_FILE)
    }

    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join(TENSORBOARD_DIR)
    }

    /// Where FD-oxidiff's feature network of this run is cached.
    pub fn fd_cache_dir(&self) -> PathBuf {
        self.root.join(FD_CACHE_DIR)
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }

    /// The checkpoint directory of `step`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("step-{step:07}"))
    }

    /// The hidden directory a checkpoint is assembled in before its rename.
    pub(crate) fn checkpoint_tmp(&self, step: u64) -> PathBuf {
        self.checkpoints_dir()
            .join(format!(".step-{step:07}{CHECKPOINT_TMP_SUFFIX}"))
    }

    /// Where an old checkpoint is renamed before it is deleted, so a deletion cut short never
    /// leaves a partial checkpoint under a checkpoint's name.
    pub(crate) fn checkpoint_deleting(&self, step: u64) -> PathBuf {
        self.checkpoints_dir()
            .join(format!(".step-{step:07}{DELETING_SUFFIX}"))
    }

    /// Removes what a killed or failed earlier process of this run left: half-built or
    /// half-deleted checkpoints (`checkpoints/.step-N.tmp`, `….deleting`) and the temporary
    /// files of atomic writes whose writer is gone (in the run directory, `samples/`,
    /// `plots/`). Called by the trainer, the run's one writer, before it writes anything.
    /// Returns what it removed.
    pub fn remove_leftovers(&self) -> Result<Vec<PathBuf>, TrainError> {
        let mut removed = Vec::new();
        for dir in [self.root.clone(), self.samples_dir(), self.plots_dir()] {
            removed.extend(
                oxidiff_data::remove_stale_temporaries(&dir)
                    .map_err(|e| TrainError::io(&dir, e))?,
            );
        }
        let root = self.checkpoints_dir();
        let entries = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(TrainError::io(&root, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| TrainError::io(&root, e))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let partial = name.starts_with(".step-")
                && (name.ends_with(CHECKPOINT_TMP_SUFFIX) || name.ends_with(DELETING_SUFFIX));
            if partial && path.is_dir() {
                fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Completed checkpoints, oldest first.
    pub fn list_checkpoints(&self) -> Result<Vec<(u64, PathBuf)>, TrainError> {
        let root = self.checkpoints_dir();
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
    let newest = RunDir::new(path).list_checkpoints()?.pop();
    if newest.is_none() && crate::diffusers::is_diffusers_dir(path) {
        return Err(crate::diffusers::not_a_checkpoint(path));
    }
    newest
        .map(|(_, dir)| dir)
        .ok_or_else(|| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message:
                "neither a checkpoint (no state.json) nor a run directory with checkpoints/step-*"
                    .into(),
        })
}

/// Reads a JSON file of the run (split, standardisation, data report).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::RunFile {
        path: path.to_path_buf(),
        message: format!("unreadable: {e}"),
    })
}

/// The pretty JSON text of a run file that will be written to `path`.
pub(crate) fn to_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<String, TrainError> {
    serde_json::to_string_pretty(value).map_err(|e| TrainError::RunFile {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })
}

/// Writes a JSON file of the run atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    write_atomic(path, to_json(path, value)?.as_bytes())
}

/// Drops the records of a JSON-lines log (`metrics.jsonl`, `eval.jsonl`) past `step` — written
/// by an interrupted run after its last checkpoint — and a torn last line, so the log reads like
/// one uninterrupted run. Kept lines stay byte for byte as they were, and a log with nothing to
/// drop is not rewritten.
pub(crate) fn truncate_log(path: &Path, step: u64) -> Result<(), TrainError> {
    let Some(text) = read_log(path)? else {
        return Ok(());
    };
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.ends_with('\n') && step_of(line).is_some_and(|s| s <= step) {
            kept.push_str(line);
        }
    }
    if kept != text {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The step of the last record of a JSON-lines log; `None` when it does not exist or holds no
/// record.
pub(crate) fn last_logged_step(path: &Path) -> Result<Option<u64>, TrainError> {
    Ok(read_log(path)?.and_then(|text| text.lines().filter_map(step_of).max()))
}

/// The text of a JSON-lines log; `None` when it does not exist.
pub(crate) fn read_log(path: &Path) -> Result<Option<String>, TrainError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(path, e)),
    }
}

/// The `step` of one log record.
fn step_of(line: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Record {
        step: u64,
    }
    serde_json::from_str::<Record>(line).ok().map(|r| r.step)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory ([`oxidiff_data::replace_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    oxidiff_data::replace_file(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// Writes a new file and fsyncs it (inside a directory that is renamed into place afterwards).
pub(crate) fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut file = File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    file.sync_all().map_err(|e| TrainError::io(path, e))
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_of_a_checkpoint() {
        let run = RunDir::new("runs/a");
        assert_eq!(RunDir::of_checkpoint(&run.checkpoint(10)), run);
        // A checkpoint copied elsewhere is its own run directory.
        assert_eq!(
            RunDir::of_checkpoint(Path::new("best/step-0000010")),
            RunDir::new("best/step-0000010")
        );
        assert_eq!(
            run.sample_grid(500),
            Path::new("runs/a/samples/step-0000500.png")
        );
    }
}
