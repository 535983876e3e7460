use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop a run; each message names the file or key at fault.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("invalid config ({origin}): {message}")]
    Config { origin: String, message: String },
    #[error("invalid --set `{assignment}`: {message}")]
    Override { assignment: String, message: String },
    /// The cause is part of the message, not an error `source()`, so a printed chain
    /// (`{:#}`) says it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A checkpoint cannot be found, read, applied or written.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A run directory cannot be used as asked (e.g. a fresh run into one with checkpoints).
    #[error("run directory {}: {message}", path.display())]
    RunDir { path: PathBuf, message: String },
    /// A file of the run directory besides the checkpoints (split, standardisation, data
    /// report, metrics or evaluation log) is unreadable or cannot be written.
    #[error("{}: {message}", path.display())]
    RunFile { path: PathBuf, message: String },
    /// A diffusers directory cannot be written (`export_run`) or read as a model (a pipeline
    /// or `UNet2DModel` directory given to `load_for_sampling`): the message names the key and
    /// value diffusers or oxidiff cannot express, or the file that is missing.
    #[error("{}: {message}", path.display())]
    Diffusers { path: PathBuf, message: String },
    /// A sample grid, plot or the report page cannot be made.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error(transparent)]
    Data(#[from] oxidiff_data::DataError),
    #[error(transparent)]
    Model(#[from] oxidiff_models::ModelError),
    #[error(transparent)]
    Diffusion(#[from] oxidiff_diffusion::DiffusionError),
    /// The loss or the gradient norm of a step is NaN or infinite, and no rollback is left
    /// (`train.max_rollbacks`).
    #[error("training diverged at step {step}: the {quantity} is {value}{note}")]
    Diverged {
        step: u64,
        /// "loss" or "gradient norm".
        quantity: &'static str,
        value: f64,
        /// What was tried before giving up, in words (empty when nothing was).
        note: String,
    },
    /// The config needs more memory than the machine has (see `MemoryEstimate`).
    #[error("{message}")]
    Memory { message: String },
    /// An evaluation could not be computed (too few images, non-finite features).
    #[error("evaluation: {message}")]
    Eval { message: String },
}

impl TrainError {
    pub(crate) fn diffusers(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Diffusers {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}
