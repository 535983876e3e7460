//! The state the loop updates and a checkpoint saves: the weights, their EMA, the optimiser,
//! the generator, the step, and what the task keeps of its own.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use oxidiff_data::derive_seed;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::task::TrainTask;
use crate::checkpoint::{self, CheckpointParts, Divergence, SavedState};
use crate::config::RunConfig;
use crate::ema::Ema;
use crate::error::TrainError;
use crate::optim::build_optimizer;
use crate::run_dir::{EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, RunDir};

/// Everything that changes from one step to the next.
pub struct TrainState<T: TrainTask> {
    /// The online weights, on the autodiff device.
    pub model: T::Model,
    /// Their exponential moving average (without autodiff).
    pub ema: Ema<T::Model>,
    pub optimizer: ModuleOptimizer,
    /// Draws the timesteps and noise of every step, mid-stream.
    pub rng: ChaCha8Rng,
    /// Optimiser steps completed.
    pub step: u64,
    /// What the task carries across steps (the diffusion task: its loss history).
    pub task: T::State,
    /// The learning-rate scale and rollbacks left by divergences.
    pub divergence: Divergence,
}

// By hand: a derive would ask `T: Clone` of the task, which the state does not hold.
impl<T: TrainTask> Clone for TrainState<T> {
    fn clone(&self) -> Self {
        Self {
            model: self.model.clone(),
            ema: self.ema.clone(),
            optimizer: self.optimizer.clone(),
            rng: self.rng.clone(),
            step: self.step,
            task: self.task.clone(),
            divergence: self.divergence.clone(),
        }
    }
}

impl<T: TrainTask> TrainState<T> {
    /// The state of a fresh run: weights initialised from the run seed on `device` (autodiff),
    /// or the ones the task's config names ([`TrainTask::initial_model`]).
    pub fn init(task: &T, config: &RunConfig, device: &Device) -> Result<Self, TrainError> {
        device.seed(config.seed);
        let model = task.initial_model(device)?;
        let ema = Ema::new(&model, config.train.ema_decay, config.train.ema_warmup);
        Ok(Self {
            model,
            ema,
            optimizer: build_optimizer(&config.train),
            rng: ChaCha8Rng::seed_from_u64(derive_seed(config.seed, u64::MAX)),
            step: 0,
            task: task.state(None),
            divergence: Divergence::default(),
        })
    }

    /// The state saved in checkpoint directory `dir`, the online weights on `device`
    /// (autodiff), the EMA weights without.
    pub fn load(
        task: &T,
        config: &RunConfig,
        dir: &Path,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let saved: SavedState<T::State> = checkpoint::load_state(dir)?;
        let model = checkpoint::load_weights(task.init_model(device), &dir.join(MODEL_FILE))?;
        let ema = Ema {
            model: checkpoint::load_weights(
                task.init_model(&device.clone().without_autodiff()),
                &dir.join(EMA_FILE),
            )?,
            updates: saved.ema_updates,
            max_decay: config.train.ema_decay,
            warmup: config.train.ema_warmup,
        };
        let optimizer =
            checkpoint::load_optimizer(build_optimizer(&config.train), &dir.join(OPTIMIZER_FILE))?;
        Ok(Self {
            model,
            ema,
            optimizer,
            rng: saved.rng,
            step: saved.step,
            task: task.state(Some(saved.task)),
            divergence: saved.divergence,
        })
    }

    /// Writes a checkpoint of this state into `run_dir`, keeping the newest
    /// `train.keep_checkpoints`.
    pub fn save(&self, config: &RunConfig, run_dir: &RunDir) -> Result<PathBuf, TrainError> {
        let saved = SavedState {
            step: self.step,
            ema_updates: self.ema.updates,
            rng: self.rng.clone(),
            divergence: self.divergence.clone(),
            task: self.task.clone(),
        };
        checkpoint::save_checkpoint(
            run_dir,
            CheckpointParts {
                config,
                model: &self.model,
                ema: &self.ema.model,
                optimizer: &self.optimizer,
                state: &saved,
            },
            config.train.keep_checkpoints,
        )
    }

    /// The weights samples and evaluations use: the EMA copy (`use_ema`) or the online weights
    /// without autodiff.
    pub fn sampling_model(&self, use_ema: bool) -> std::borrow::Cow<'_, T::Model> {
        if use_ema {
            std::borrow::Cow::Borrowed(&self.ema.model)
        } else {
            std::borrow::Cow::Owned(self.model.valid())
        }
    }
}
