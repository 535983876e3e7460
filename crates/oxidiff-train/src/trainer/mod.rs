//! The training loop, generic over what it trains ([`TrainTask`]). It reads top-down like
//! improved-diffusion's `TrainLoop`: [`Trainer::run`] → [`Trainer::train_step`] →
//! `forward_backward` → `optimize` → `log`, with held-out evaluations, sample grids and
//! checkpoints at their intervals.

mod autoencoder;
mod diffusion;
mod feed;
mod joint_text;
mod outputs;
mod rollback;
mod setup;
mod state;
mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use oxidiff_data::{Batch, Dataset, LateSkip, derive_seed};
use oxidiff_models::cpu::on_pool;

pub use autoencoder::{AutoencoderState, AutoencoderTask, AutoencoderTraining};
pub use diffusion::{DiffusionState, DiffusionTask};
pub use feed::{Conditioning, DataFeed, LabelDropout};
pub use joint_text::JointTextTask;
pub(crate) use setup::saved_split;
pub use setup::{RunData, RunSetup};
pub use state::TrainState;
pub use task::{EvalDue, MicroBatch, TrainTask};

use crate::config::RunConfig;
use crate::error::TrainError;
use crate::eval::EvalRecord;
use crate::memory::machine_memory;
use crate::metrics::{MetricsLog, RollbackRecord, StepStats};
use crate::monitor::Monitor;
use crate::optim::{ScaleGrads, learning_rate};
use crate::run_dir::RunDir;

/// Something the loop reports to whoever drives it (the CLI's progress bar, a test).
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// Data loaded, model built: what is about to be trained.
    Started {
        dataset: &'a Dataset,
        /// Held-out images.
        validation: usize,
        /// `data_report.json` of this run.
        report: PathBuf,
        parameters: usize,
        start_step: u64,
        total_steps: u64,
    },
    Step(&'a StepStats),
    /// A streamed file failed during training and was left out (`data.on_error = "skip"`);
    /// it is also added to `data_report.json`.
    Skipped(&'a LateSkip),
    /// Held-out numbers (`train.eval_every`, `train.bpd_every`), also in `eval.jsonl`.
    Evaluated(&'a EvalRecord),
    SampleGrid(&'a Path),
    Checkpoint(&'a Path),
    /// A step's loss or gradient norm was NaN or infinite: the run went back to its last
    /// checkpoint with half the learning rate (also in `metrics.jsonl`).
    RolledBack(&'a RollbackRecord),
    /// A sample grid, plot or report page could not be written; training goes on (the
    /// checkpoint of the step, when due, is already on disk).
    OutputFailed {
        step: u64,
        /// What was not written, in words ("the sample grid", "the plots and report").
        what: &'static str,
        error: &'a TrainError,
    },
}

/// Why [`Trainer::run`] returned; each case has written a checkpoint of its last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// `train.steps` are done.
    Finished,
    /// `stop_after` steps were taken; the run can be resumed.
    Paused,
    /// The flag given to [`Trainer::stop_when`] was raised (Ctrl-C, SIGTERM): the step under
    /// way was finished and checkpointed; the run can be resumed.
    Interrupted,
}

/// One training run of a [`TrainTask`], fresh or resumed.
pub struct Trainer<T: TrainTask = DiffusionTask> {
    pub config: RunConfig,
    pub run_dir: RunDir,
    /// What is trained (the diffusion task: the UNet's config and the process).
    pub task: T,
    /// Weights, EMA, optimiser, generator, step.
    pub state: TrainState<T>,
    /// The training and held-out images and the batches of every step.
    pub data: DataFeed,
    /// The autodiff device the online model lives on.
    device: Device,
    metrics: MetricsLog,
    monitor: Monitor,
    /// Raised from outside (a signal handler) to stop after the current step.
    stop: Option<Arc<AtomicBool>>,
    /// The state of the last checkpoint (or of the start), which a divergence rolls back to;
    /// `None` when `train.max_rollbacks` is 0.
    last_good: Option<TrainState<T>>,
}

impl Trainer<DiffusionTask> {
    /// Starts a fresh diffusion run in `run_dir` (created; it must not already hold
    /// checkpoints).
    pub fn new(config: RunConfig, run_dir: &Path, device: &Device) -> Result<Self, TrainError> {
        Self::fresh(config, run_dir, device)
    }

    /// Resumes the diffusion run in `run_dir` from its newest checkpoint. `overrides`
    /// (`section.key=value`) apply on top of the saved config, e.g. `train.steps=20000` to
    /// train longer.
    pub fn resume(
        run_dir: &Path,
        overrides: &[String],
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::resumed(run_dir, overrides, device)
    }
}

impl<T: TrainTask> Trainer<T> {
    /// Starts a fresh run of `config` in `run_dir`.
    pub fn fresh(config: RunConfig, run_dir: &Path, device: &Device) -> Result<Self, TrainError> {
        let (size, channels) = T::image_shape(&config)?;
        Self::start(RunSetup::fresh(config, run_dir, size, channels)?, device)
    }

    /// Resumes the run in `run_dir` from its newest checkpoint, with `overrides` on top of the
    /// saved config.
    pub fn resumed(
        run_dir: &Path,
        overrides: &[String],
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::start(
            RunSetup::resume(run_dir, overrides, T::image_shape)?,
            device,
        )
    }

    /// The one path of fresh and resumed runs: the task, its state (initialised or loaded),
    /// the run's files, the logs and the data feed.
    pub fn start(mut setup: RunSetup, device: &Device) -> Result<Self, TrainError> {
        let config = setup.config.clone();
        if let Some(available) = machine_memory() {
            T::memory_estimate(&config)?.check(available)?;
        }
        let mut task = T::new(&config)?;
        let plain = device.clone();
        let device = device.clone().autodiff();
        let state = match &setup.checkpoint {
            None => TrainState::init(&task, &config, &device)?,
            Some(dir) => TrainState::load(&task, &config, dir, &device)?,
        };
        setup.commit()?;
        let run_dir = setup.run_dir;
        let data = task.prepare_data(setup.data, &run_dir, &plain)?;
        let metrics = MetricsLog::open(&run_dir.metrics(), state.step)?;
        let monitor = Monitor::open(&run_dir, state.step)?;
        let per_step = config.train.batch_size * config.train.grad_accum_steps;
        let data = DataFeed::new(
            data,
            &run_dir,
            config.data.augment(),
            per_step,
            config.seed,
            task.conditioning(),
            state.step,
        );
        let last_good = (config.train.max_rollbacks > 0).then(|| state.clone());
        Ok(Self {
            config,
            run_dir,
            task,
            state,
            data,
            device,
            metrics,
            monitor,
            stop: None,
            last_good,
        })
    }

    /// Stops [`run`](Self::run) after the step under way once `flag` is raised: that step is
    /// finished and checkpointed, and `run` returns [`RunEnd::Interrupted`].
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Trains until `train.steps` (or `stop_after` more steps, or until the [`stop_when`]
    /// flag is raised, whichever comes first), with held-out evaluations, sample grids and
    /// checkpoints at their intervals and a final checkpoint (and, at `train.steps`, a final
    /// evaluation and grid).
    ///
    /// [`stop_when`]: Self::stop_when
    pub fn run(
        &mut self,
        stop_after: Option<u64>,
        observer: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<RunEnd, TrainError> {
        let total = self.config.train.steps;
        let end = match stop_after {
            Some(n) => self.state.step.saturating_add(n).min(total),
            None => total,
        };
        observer(TrainEvent::Started {
            dataset: &self.data.dataset,
            validation: self.data.validation.len(),
            report: self.run_dir.data_report(),
            parameters: self.state.model.num_params(),
            start_step: self.state.step,
            total_steps: total,
        });
        while self.state.step < end {
            let stats = match self.train_step() {
                Ok(stats) => stats,
                Err(TrainError::Diverged {
                    step,
                    quantity,
                    value,
                    ..
                }) if self.rollbacks_left() => {
                    let record = self.roll_back(step, quantity, value)?;
                    observer(TrainEvent::RolledBack(&record));
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.monitor.on_step(&stats)?;
            for skip in self.data.take_skips() {
                observer(TrainEvent::Skipped(&skip));
            }
            observer(TrainEvent::Step(&stats));
            let interrupted = self.stop_requested() && self.state.step < end;
            self.after_step(self.state.step == end || interrupted, observer)?;
            if interrupted {
                self.metrics.flush()?;
                return Ok(RunEnd::Interrupted);
            }
        }
        self.metrics.flush()?;
        Ok(if self.state.step >= total {
            RunEnd::Finished
        } else {
            RunEnd::Paused
        })
    }

    /// One optimiser step (over `grad_accum_steps` micro-batches), logged to `metrics.jsonl`.
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
        let started = Instant::now();
        // Dropout draws from the backend generator: reseed it per step so a resumed run repeats
        // exactly what an uninterrupted one would have drawn.
        self.device
            .seed(derive_seed(self.config.seed, self.state.step));
        let batch = self.data.step_batch(self.state.step)?;
        // The model's work runs on the kernels' thread pool (see `on_pool`); loading the batch
        // stays off it, so a loader waiting on pool work cannot hold a worker.
        let (loss, grads) = on_pool(|| self.forward_backward(&batch))?;
        self.check_finite("loss", loss)?;
        let (lr, grad_norm) = on_pool(|| self.optimize(grads))?;
        let divergence = &mut self.state.divergence;
        if divergence.diverged_at.is_some_and(|d| self.state.step >= d) {
            // Past the step that diverged: the next divergence starts a new count.
            divergence.in_a_row = 0;
            divergence.diverged_at = None;
        }
        self.log(loss, lr, grad_norm, batch.labels.len(), started)
    }

    /// The mean loss over the step's micro-batches and its gradients (summed by the
    /// accumulator, then scaled to the mean, so the scale is that of one batch).
    fn forward_backward(&mut self, batch: &Batch) -> Result<(f64, GradientsParams), TrainError> {
        let micro = self.config.train.batch_size;
        let accum = self.config.train.grad_accum_steps;
        let mut loss_sum = 0.0;
        let mut micro_step = |k: usize, state: &mut TrainState<T>| {
            let range = k * micro..(k + 1) * micro;
            let captions = batch.captions.get(range.clone()).unwrap_or_default();
            let micro_batch = MicroBatch {
                images: batch.slice_tensor(range.clone(), &self.device),
                labels: &batch.labels[range],
                captions,
            };
            let loss = self.task.loss(
                &state.model,
                micro_batch,
                state.step,
                &mut state.task,
                &mut state.rng,
            )?;
            loss_sum += loss.clone().into_scalar::<f64>();
            Ok::<_, TrainError>(GradientsParams::from_grads(loss.backward(), &state.model))
        };
        let grads = if accum == 1 {
            micro_step(0, &mut self.state)?
        } else {
            let mut accumulator = GradientsAccumulator::new();
            for k in 0..accum {
                let grads = micro_step(k, &mut self.state)?;
                accumulator.accumulate(&self.state.model, grads);
            }
            let mut grads = accumulator.grads();
            let mut scale = ScaleGrads::new(&mut grads, 1.0 / accum as f64);
            let _ = self.state.model.clone().map(&mut scale);
            grads
        };
        Ok((loss_sum / accum as f64, grads))
    }

    /// Clips the gradients, steps the optimiser at this step's learning rate (scaled down by
    /// earlier rollbacks), folds the new weights into the EMA. Returns the learning rate and
    /// the gradient norm before clipping; a non-finite norm is a divergence.
    fn optimize(&mut self, mut grads: GradientsParams) -> Result<(f64, f64), TrainError> {
        let train = &self.config.train;
        let grad_norm =
            self.task
                .clip_gradients(&self.state.model, &mut grads, train.grad_clip_norm);
        self.check_finite("gradient norm", grad_norm)?;
        let state = &mut self.state;
        let lr = learning_rate(train, state.step) * state.divergence.lr_scale;
        state.model = self
            .task
            .step(&mut state.optimizer, lr, state.model.clone(), grads);
        state.ema.update(&state.model);
        state.step += 1;
        Ok((lr, grad_norm))
    }

    fn log(
        &mut self,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        images: usize,
        started: Instant,
    ) -> Result<StepStats, TrainError> {
        let stats = StepStats {
            step: self.state.step,
            loss,
            lr,
            grad_norm,
            images_per_sec: images as f64 / started.elapsed().as_secs_f64(),
        };
        self.metrics.append(&stats)?;
        Ok(stats)
    }
}
