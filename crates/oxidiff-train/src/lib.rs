//! The trainer: optimiser and learning-rate schedule, EMA, checkpoints with exact resume,
//! metrics, sample grids; and loading a trained model to sample from.
//!
//! Modules are private: every item has one path, here at the root, except evaluation, whose
//! many result types live under [`eval`].

// A public type reachable only through a private module could not be named by users.
#![warn(unnameable_types)]

mod autoencoder_bench;
mod autoencoder_config;
mod bench;
mod checkpoint;
mod checksums;
mod config;
mod diffusers;
mod edit;
mod ema;
mod error;
pub mod eval;
mod generate;
mod latent;
mod memory;
mod metrics;
mod monitor;
mod optim;
mod plots;
mod report_html;
mod run_dir;
mod tensorboard;
mod text;
mod trainer;

pub use autoencoder_bench::{
    AutoencoderBenchConfig, AutoencoderBenchReport, run_autoencoder_bench,
};
pub use autoencoder_config::{AutoencoderPreset, AutoencoderSection, ReconstructionLoss, TaskKind};
pub use bench::{
    BenchConfig, BenchReport, cpu_peak_gflops, cpu_threads, median, peak_rss_bytes, run_bench, zoo,
};
pub use checkpoint::{Divergence, load_weights};
pub use config::{
    DEFAULT_CONFIG_TOML, EvalIntervals, LrSchedule, OptimizerKind, RunConfig, SampleConfig,
    SamplerKind, TrainConfig,
};
pub use diffusers::{
    EXPORT_RECORD, ExportKind, Exported, SCHEDULER_CONFIG, diffusion_config_from_scheduler_json,
    export_run, scheduler_config_json, scheduler_sampler,
};
pub use edit::{DenoiseMethod, InpaintMethod, denoise, inpaint, psnr, read_mask, read_model_image};
pub use ema::Ema;
pub use error::TrainError;
pub use generate::{LoadedModel, Prompt, generate, load_for_sampling, save_image, save_image_grid};
pub use latent::{
    FirstStage, FirstStageKind, LatentCache, LatentRecord, LatentSection, LatentSizes, LatentSpace,
    LatentsMade, encode_run_data,
};
pub use memory::{
    MemoryEstimate, MemoryPart, human_bytes, machine_memory, sampling_bytes_per_image,
};
pub use metrics::{Rollback, RollbackRecord, StepStats, read_metrics, read_rollbacks};
pub use run_dir::{
    CHECKSUMS_FILE, CONFIG_FILE, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, RunDir, STATE_FILE,
    resolve_checkpoint, write_atomic,
};
pub use tensorboard::TensorBoardWriter;
pub use text::{
    DEFAULT_MAX_LENGTH, JointModel, MINILM, PretrainedText, SCRATCH, SCRATCH_DEFAULTS,
    TextConditioner, TextSection, TextSource, load_joint, scale_update, token_lengths,
};
pub use trainer::{
    AutoencoderState, AutoencoderTask, AutoencoderTraining, Conditioning, DataFeed, DiffusionState,
    DiffusionTask, EvalDue, JointTextTask, LabelDropout, MicroBatch, RunData, RunEnd, RunSetup,
    TrainEvent, TrainState, TrainTask, Trainer,
};
