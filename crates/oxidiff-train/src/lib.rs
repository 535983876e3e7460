//! The trainer: optimiser and learning-rate schedule, EMA, checkpoints with exact resume,
//! metrics, sample grids; and loading a trained model to sample from.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod edit;
pub mod ema;
mod error;
pub mod eval;
pub mod generate;
pub mod metrics;
pub mod monitor;
pub mod optim;
pub mod plots;
pub mod report_html;
pub mod run_dir;
pub mod tensorboard;
pub mod trainer;

pub use bench::{BenchConfig, BenchReport, run_bench};
pub use config::{
    DEFAULT_CONFIG_TOML, LrSchedule, OptimizerKind, RunConfig, SampleConfig, SamplerKind,
    TrainConfig,
};
pub use error::TrainError;
pub use generate::{LoadedModel, generate, load_for_sampling, save_image_grid};
pub use metrics::{StepStats, read_metrics};
pub use trainer::{TrainEvent, Trainer};
