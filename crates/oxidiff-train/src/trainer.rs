//! The training loop: draws t and ε, asks the diffusion process for x_t and the loss, updates
//! the weights, and writes metrics, sample grids and checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxidiff_data::{
    Batch, ChannelStats, DataReport, Dataset, EpochSampler, LateSkip, Prefetcher, Split,
    SplitRecord, Standardize, load_dataset_for_run, split_for, split_from_list,
};
use oxidiff_diffusion::GaussianDiffusion;
use oxidiff_diffusion::noise::training_noise;
use oxidiff_diffusion::timesteps::{LossHistory, TimestepSampling, draw_timesteps};
use oxidiff_models::{UNet, UNetConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{
    self, CONFIG_FILE, CheckpointParts, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE,
    TrainState,
};
use crate::config::RunConfig;
use crate::ema::Ema;
use crate::error::TrainError;
use crate::eval::{
    self,
    log::{EVAL_LOG_FILE, EvalRecord, append_eval},
};
use crate::generate::{generate, save_image_grid};
use crate::metrics::{MetricsLog, StepStats};
use crate::monitor::Monitor;
use crate::optim::{build_optimizer, clip_grad_norm, learning_rate};

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
}

/// One training run, fresh or resumed.
pub struct Trainer {
    pub config: RunConfig,
    pub unet: UNetConfig,
    pub run_dir: PathBuf,
    /// The autodiff device the online model lives on.
    device: Device,
    pub model: UNet,
    pub ema: Ema,
    optimizer: ModuleOptimizer,
    pub diffusion: GaussianDiffusion,
    /// The images trained on: the whole source minus the validation split (shared with the
    /// prefetch thread when streamed).
    pub dataset: Arc<Dataset>,
    /// The held-out images (`data.validation_fraction` or `data.validation_list`; empty by
    /// default), never seen by the optimiser.
    pub validation: Dataset,
    /// The per-channel statistics both datasets were standardised with
    /// (`data.standardize = "per-channel"`); `None` for the default [-1, 1] scaling.
    pub standardization: Option<ChannelStats>,
    sampler: EpochSampler,
    feed: Feed,
    /// `data_report.json`, kept to add the files that fail during training.
    data_report: DataReport,
    /// Files that failed since the driver last looked (see [`TrainEvent::Skipped`]).
    new_skips: Vec<LateSkip>,
    rng: ChaCha8Rng,
    /// Recent losses per t, for `train.timestep_sampler = "loss-second-moment"`.
    loss_history: Option<LossHistory>,
    /// Optimiser steps completed.
    pub step: u64,
    metrics: MetricsLog,
    monitor: Monitor,
}

/// How a step's images reach it.
enum Feed {
    /// Cached images: assembled when the step needs them (microseconds per batch).
    Inline,
    /// Streamed files: decoded ahead of time on a background thread, `next` being the first
    /// step not yet requested.
    Prefetch { loader: Prefetcher, next: u64 },
}

/// Steps whose batches a streamed dataset prepares ahead: enough to hide a slow file behind
/// the steps before it, few enough to hold only a few batches.
const PREFETCH_STEPS: u64 = 3;

/// The validation split of a run, by the keys of its held-out images.
pub const SPLIT_FILE: &str = "split.json";
/// What the data turned out to be: counts per class and every skipped input with its reason.
pub const DATA_REPORT_FILE: &str = "data_report.json";

/// The per-channel statistics of a `data.standardize = "per-channel"` run.
pub const STANDARDIZATION_FILE: &str = "standardization.json";

/// Both datasets standardised with `stats` (unchanged without).
fn standardized(
    (mut train, mut validation): (Dataset, Dataset),
    stats: Option<&ChannelStats>,
) -> (Dataset, Dataset) {
    if let Some(stats) = stats {
        train.standardize(stats);
        validation.standardize(stats);
    }
    (train, validation)
}

/// Reads a JSON file a run wrote (split, standardisation).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("unreadable: {e}"),
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    checkpoint::write_atomic(path, text.as_bytes())
}

/// The split saved with a run: the held-out keys in `split.json`, so that a resumed run never
/// trains on an image the first part held out, and evaluation uses exactly those images. Runs saved before splits existed have no
/// file and no validation images.
pub(crate) fn saved_split(run_dir: &Path, all: &Dataset) -> Result<Split, TrainError> {
    let path = run_dir.join(SPLIT_FILE);
    if path.is_file() {
        let record: SplitRecord = read_json(&path)?;
        Ok(split_from_list(
            &all.keys,
            &record.validation,
            &path.display().to_string(),
        )?)
    } else {
        Ok(Split {
            train: (0..all.len()).collect(),
            validation: Vec::new(),
        })
    }
}

/// The training and validation datasets of `split`. Without held-out images the whole dataset
/// moves over uncopied (a large dataset is not held twice).
fn divide(all: Dataset, split: &Split) -> (Dataset, Dataset) {
    let validation = all.subset(&split.validation);
    if split.validation.is_empty() {
        (all, validation)
    } else {
        (all.subset(&split.train), validation)
    }
}

/// Refuses in-training evaluation without held-out images to evaluate on, before any work.
fn check_evaluation_images(config: &RunConfig, split: &Split) -> Result<(), TrainError> {
    let t = &config.train;
    if (t.eval_every > 0 || t.bpd_every > 0) && split.validation.is_empty() {
        return Err(TrainError::Config {
            origin: "train.eval_every / train.bpd_every".into(),
            message: "evaluation during training needs held-out images: set \
                      data.validation_fraction (e.g. 0.05) or data.validation_list"
                .into(),
        });
    }
    Ok(())
}

/// Keeps the label-dropout draws apart from the other streams derived from the run seed.
const LABEL_STREAM: u64 = 0x1ABE_1D80_0000_0002;

/// Keeps the augmentation draws apart from the other streams derived from the run seed.
const AUGMENT_STREAM: u64 = 0xA5A5_0000_0000_0001;

/// The augmentation seed of every image of step `step` (`per_step` images): a function of the
/// run seed and the image's position in the whole run, so a resumed or prefetched run crops
/// and flips exactly as an uninterrupted one.
fn augment_seeds(seed: u64, step: u64, per_step: usize) -> Vec<Option<u64>> {
    (0..per_step as u64)
        .map(|pos| {
            Some(derive_seed(
                seed ^ AUGMENT_STREAM,
                step * per_step as u64 + pos,
            ))
        })
        .collect()
}

/// Mixes the run seed with a counter so every step has its own reproducible stream.
fn derive_seed(seed: u64, counter: u64) -> u64 {
    // SplitMix64 finaliser: consecutive counters give unrelated seeds.
    let mut z = seed ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Trainer {
    /// Starts a fresh run in `run_dir` (created; it must not already hold checkpoints).
    pub fn new(config: RunConfig, run_dir: &Path, device: &Device) -> Result<Self, TrainError> {
        if !checkpoint::list_checkpoints(run_dir)?.is_empty() {
            return Err(TrainError::Checkpoint {
                path: run_dir.to_path_buf(),
                message:
                    "already holds checkpoints: resume it with --resume, or choose another --out"
                        .into(),
            });
        }
        let unet = config.unet()?;
        // Load the data before touching the run directory: bad data must not leave a half-made run.
        let all =
            load_dataset_for_run(&config.data, unet.image_size, unet.in_channels, config.seed)?;
        let split = split_for(&config.data, &all, config.seed)?;
        check_evaluation_images(&config, &split)?;
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        checkpoint::write_atomic(&run_dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
        let record = split.record(&all.keys, config.data.validation_fraction, config.seed);
        write_json(&run_dir.join(SPLIT_FILE), &record)?;
        let data_report = DataReport::new(&config.data, &all, &split);
        write_json(&run_dir.join(DATA_REPORT_FILE), &data_report)?;
        let standardization = match config.data.standardize {
            Standardize::MinusOneOne => None,
            Standardize::PerChannel => {
                let stats = ChannelStats::of(&all, &split.train);
                write_json(&run_dir.join(STANDARDIZATION_FILE), &stats)?;
                Some(stats)
            }
        };
        let dataset = standardized(divide(all, &split), standardization.as_ref());
        let ad_device = device.clone().autodiff();
        ad_device.seed(config.seed);
        let model = unet.init(&ad_device);
        let ema = Ema::new(&model, config.train.ema_decay, config.train.ema_warmup);
        let optimizer = build_optimizer(&config.train);
        let rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, u64::MAX));
        Self::assemble(
            config,
            unet,
            (dataset, data_report),
            standardization,
            run_dir,
            ad_device,
            model,
            ema,
            optimizer,
            (rng, None),
            0,
        )
    }

    /// Resumes the run in `run_dir` from its newest checkpoint. `overrides` (`section.key=value`)
    /// apply on top of the saved config, e.g. `train.steps=20000` to train longer.
    pub fn resume(
        run_dir: &Path,
        overrides: &[String],
        device: &Device,
    ) -> Result<Self, TrainError> {
        let dir = checkpoint::resolve_checkpoint(run_dir)?;
        let run_dir = if dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "checkpoints")
        {
            dir.parent()
                .and_then(Path::parent)
                .unwrap_or(run_dir)
                .to_path_buf()
        } else {
            run_dir.to_path_buf()
        };
        let config_path = dir.join(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
        let origin = config_path.display().to_string();
        let saved = RunConfig::from_toml_str(&text, &origin, &[])?;
        let config = RunConfig::from_toml_str(&text, &origin, overrides)?;
        if config.model != saved.model || config.diffusion != saved.diffusion {
            return Err(TrainError::Config {
                origin: "--set".into(),
                message: "model.* and diffusion.* cannot change when resuming".into(),
            });
        }
        let state = checkpoint::load_state(&dir.join(STATE_FILE))?;
        let ad_device = device.clone().autodiff();
        let unet = config.unet()?;
        let all =
            load_dataset_for_run(&config.data, unet.image_size, unet.in_channels, config.seed)?;
        let standardization = match config.data.standardize {
            Standardize::MinusOneOne => None,
            Standardize::PerChannel => Some(read_json(&run_dir.join(STANDARDIZATION_FILE))?),
        };
        let split = saved_split(&run_dir, &all)?;
        check_evaluation_images(&config, &split)?;
        // Runs saved before the report existed (or with it deleted) get a fresh one.
        let report_path = run_dir.join(DATA_REPORT_FILE);
        let data_report = match read_json(&report_path) {
            Ok(report) => report,
            Err(_) => DataReport::new(&config.data, &all, &split),
        };
        let dataset = standardized(divide(all, &split), standardization.as_ref());
        let model = checkpoint::load_weights(unet.init(&ad_device), &dir.join(MODEL_FILE))?;
        let ema = Ema {
            model: checkpoint::load_weights(unet.init(device), &dir.join(EMA_FILE))?,
            updates: state.ema_updates,
            max_decay: config.train.ema_decay,
            warmup: config.train.ema_warmup,
        };
        let optimizer =
            checkpoint::load_optimizer(build_optimizer(&config.train), &dir.join(OPTIMIZER_FILE))?;
        checkpoint::write_atomic(&run_dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
        Self::assemble(
            config,
            unet,
            (dataset, data_report),
            standardization,
            &run_dir,
            ad_device,
            model,
            ema,
            optimizer,
            (state.rng, state.loss_history),
            state.step,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: RunConfig,
        unet: UNetConfig,
        ((dataset, validation), data_report): ((Dataset, Dataset), DataReport),
        standardization: Option<ChannelStats>,
        run_dir: &Path,
        device: Device,
        model: UNet,
        ema: Ema,
        optimizer: ModuleOptimizer,
        (rng, loss_history): (ChaCha8Rng, Option<LossHistory>),
        step: u64,
    ) -> Result<Self, TrainError> {
        let sampler = EpochSampler::new(
            dataset.len(),
            config.train.batch_size * config.train.grad_accum_steps,
            config.seed,
        );
        let diffusion = GaussianDiffusion::new(config.diffusion.clone())?;
        let loss_history = match config.train.timestep_sampler {
            TimestepSampling::Uniform => None,
            TimestepSampling::LossSecondMoment => {
                Some(loss_history.unwrap_or_else(|| LossHistory::new(diffusion.num_timesteps())))
            }
        };
        let metrics = MetricsLog::open(&run_dir.join("metrics.jsonl"), step)?;
        let monitor = Monitor::open(run_dir, step)?;
        let dataset = Arc::new(dataset);
        let feed = if dataset.cached().is_some() {
            Feed::Inline
        } else {
            Feed::Prefetch {
                loader: Prefetcher::new(Arc::clone(&dataset), config.data.augment()),
                next: step,
            }
        };
        Ok(Self {
            config,
            unet,
            run_dir: run_dir.to_path_buf(),
            device,
            model,
            ema,
            optimizer,
            diffusion,
            dataset,
            validation,
            standardization,
            sampler,
            feed,
            data_report,
            new_skips: Vec::new(),
            rng,
            loss_history,
            step,
            metrics,
            monitor,
        })
    }

    /// The images of the current step (`batch_size × grad_accum_steps` of them), augmented.
    /// Files that failed are recorded in `data_report.json` and queued for the driver.
    fn step_batch(&mut self) -> Result<Batch, TrainError> {
        let per_step = self.config.train.batch_size * self.config.train.grad_accum_steps;
        let seed = self.config.seed;
        let batch = match &mut self.feed {
            Feed::Inline => {
                let seeds = augment_seeds(seed, self.step, per_step);
                self.dataset.assemble(
                    &self.sampler.batch_indices(self.step),
                    self.config.data.augment(),
                    |k| seeds[k],
                )?
            }
            Feed::Prefetch { loader, next } => {
                // The queue holds steps self.step..next in order; empty (at the start, or after a
                // batch was lost to an error) it starts again here.
                if loader.pending() == 0 {
                    *next = self.step;
                }
                while *next < self.step + PREFETCH_STEPS {
                    let s = *next;
                    loader.request(
                        s,
                        self.sampler.batch_indices(s),
                        augment_seeds(seed, s, per_step),
                    );
                    *next += 1;
                }
                loader.receive(self.step)?
            }
        };
        if !batch.failed.is_empty() {
            let added = self
                .data_report
                .add_late_skips(&batch.failed, self.step + 1);
            if !added.is_empty() {
                write_json(&self.run_dir.join(DATA_REPORT_FILE), &self.data_report)?;
                self.new_skips.extend(added);
            }
        }
        Ok(batch)
    }

    /// The loss of one micro-batch (images `range` of the step's batch) and its gradients.
    fn micro_step(
        &mut self,
        step_batch: &Batch,
        range: std::ops::Range<usize>,
    ) -> (f64, GradientsParams) {
        let batch = range.len();
        let x_start = step_batch.slice_tensor(range.clone(), &self.device);
        let [_, c, h, w] = x_start.dims();
        let draw = draw_timesteps(
            self.config.train.timestep_sampler,
            self.loss_history.as_ref(),
            &mut self.rng,
            batch,
            self.diffusion.num_timesteps(),
        );
        let t = draw.t;
        let noise = training_noise(
            &mut self.rng,
            [batch, c, h, w],
            self.config.diffusion.offset_noise,
            &self.device,
        );
        let x_t = self.diffusion.q_sample(x_start.clone(), &t, noise.clone());
        let t_float: Vec<f32> = t.iter().map(|&v| v as f32).collect();
        let timesteps = Tensor::<1>::from_data(TensorData::new(t_float, [batch]), &self.device);
        let (seed, step, per_step) = (self.config.seed, self.step, step_batch.labels.len());
        let dropout = self.config.train.label_dropout;
        let labels = self.unet.num_classes.map(|null| {
            // Classifier-free guidance (Ho & Salimans 2022, Algorithm 1): each label is dropped
            // to "no class" with probability p, drawn per image from its own seeded stream.
            let labels: Vec<i64> = step_batch.labels[range.clone()]
                .iter()
                .enumerate()
                .map(|(k, &l)| {
                    let u = derive_seed(
                        seed ^ LABEL_STREAM,
                        step * per_step as u64 + (range.start + k) as u64,
                    );
                    if ((u >> 11) as f64) / ((1u64 << 53) as f64) < dropout {
                        null as i64
                    } else {
                        l as i64
                    }
                })
                .collect();
            Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &self.device)
        });
        let output = self.model.forward(x_t, timesteps, labels);
        let importance = self.loss_history.is_some().then_some(&draw.weights[..]);
        let losses = self
            .diffusion
            .training_losses(output, x_start, noise, &t, importance);
        if let Some(history) = &mut self.loss_history {
            let per_sample: Vec<f64> = losses
                .per_sample
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .unwrap_or_default();
            history.update(&t, &per_sample);
        }
        let loss = losses.loss;
        let loss_value = loss.clone().into_scalar::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        (loss_value, grads)
    }

    /// One optimiser step (over `grad_accum_steps` micro-batches).
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
        let started = Instant::now();
        let train = self.config.train.clone();
        // Dropout draws from the backend generator: reseed it per step so a resumed run repeats
        // exactly what an uninterrupted one would have drawn.
        self.device.seed(derive_seed(self.config.seed, self.step));
        let batch = self.step_batch()?;
        let accum = train.grad_accum_steps;
        let mut loss_sum = 0.0;
        let mut grads = if accum == 1 {
            let (loss, grads) = self.micro_step(&batch, 0..train.batch_size);
            loss_sum += loss;
            grads
        } else {
            let mut accumulator = GradientsAccumulator::new();
            for k in 0..accum {
                let range = k * train.batch_size..(k + 1) * train.batch_size;
                let (loss, grads) = self.micro_step(&batch, range);
                loss_sum += loss;
                accumulator.accumulate(&self.model, grads);
            }
            let mut grads = accumulator.grads();
            // The accumulator sums; the mean over micro-batches keeps the scale of one batch.
            let mut scale = crate::optim::ScaleGrads::new(&mut grads, 1.0 / accum as f64);
            let _ = self.model.clone().map(&mut scale);
            grads
        };
        let loss = loss_sum / accum as f64;
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: self.step + 1,
                loss,
            });
        }
        let grad_norm = clip_grad_norm(&self.model, &mut grads, train.grad_clip_norm);
        let lr = learning_rate(&train, self.step);
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
        self.ema.update(&self.model);
        self.step += 1;
        let images = (train.batch_size * accum) as f64;
        let stats = StepStats {
            step: self.step,
            loss,
            lr,
            grad_norm,
            images_per_sec: images / started.elapsed().as_secs_f64(),
        };
        self.metrics.append(&stats)?;
        Ok(stats)
    }

    /// The weights samples and evaluations use: the EMA copy (`sample.use_ema`, the default)
    /// or the online weights without autodiff.
    fn sampling_model(&self) -> std::borrow::Cow<'_, UNet> {
        if self.config.sample.use_ema {
            std::borrow::Cow::Borrowed(&self.ema.model)
        } else {
            std::borrow::Cow::Owned(self.model.valid())
        }
    }

    /// Samples a grid from the EMA (or online) weights into `samples/step-NNNNNNN.png`.
    pub fn save_sample_grid(&self) -> Result<PathBuf, TrainError> {
        let dir = self.run_dir.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let path = dir.join(format!("step-{:07}.png", self.step));
        let model = self.sampling_model();
        let model = model.as_ref();
        let shape = [
            self.config.sample.num,
            self.unet.in_channels,
            self.unet.image_size,
            self.unet.image_size,
        ];
        let device = self.device.clone().without_autodiff();
        let images = generate(
            model,
            &self.diffusion,
            &self.config.sample,
            shape,
            self.config.seed,
            &device,
            &mut |_, _| {},
        )?;
        save_image_grid(&path, images, self.standardization.as_ref())?;
        Ok(path)
    }

    /// The held-out evaluations due at this step (`train.eval_every`, `train.bpd_every`, and
    /// both at the run's last step), on the first `train.eval_images` held-out images with the
    /// weights samples come from; appended to `eval.jsonl`.
    pub fn evaluate_if_due(&mut self) -> Result<Option<EvalRecord>, TrainError> {
        let t = &self.config.train;
        let due =
            |every: u64| every > 0 && (self.step.is_multiple_of(every) || self.step == t.steps);
        let (mse_due, bpd_due) = (due(t.eval_every), due(t.bpd_every));
        if !(mse_due || bpd_due) || self.validation.is_empty() {
            return Ok(None);
        }
        let device = self.device.clone().without_autodiff();
        let model = self.sampling_model();
        let model = model.as_ref();
        let indices: Vec<usize> = (0..t.eval_images.min(self.validation.len())).collect();
        let batch = t.batch_size;
        let band_mse = if mse_due {
            Some(eval::band_mse(
                model,
                &self.diffusion,
                &self.validation,
                &indices,
                batch,
                self.config.seed,
                &device,
            )?)
        } else {
            None
        };
        let nll = if bpd_due {
            Some(eval::nll(
                model,
                &self.diffusion,
                &self.validation,
                &indices,
                batch,
                t.bpd_stride,
                self.config.seed,
                &device,
                &mut |_, _| {},
            )?)
        } else {
            None
        };
        let record = EvalRecord {
            step: self.step,
            band_mse,
            nll,
            distance: None,
        };
        append_eval(&self.run_dir.join(EVAL_LOG_FILE), &record)?;
        self.monitor.on_eval(&record)?;
        Ok(Some(record))
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        self.metrics.flush()?;
        let state = TrainState {
            step: self.step,
            ema_updates: self.ema.updates,
            rng: self.rng.clone(),
            loss_history: self.loss_history.clone(),
        };
        checkpoint::save_checkpoint(
            &self.run_dir,
            CheckpointParts {
                config: &self.config,
                model: &self.model,
                ema: &self.ema.model,
                optimizer: &self.optimizer,
                state: &state,
            },
            self.config.train.keep_checkpoints,
        )
    }

    /// Trains until `train.steps` (or `stop_after` more steps, whichever comes first), with
    /// sample grids and checkpoints at their intervals and a final checkpoint and grid.
    pub fn run(
        &mut self,
        stop_after: Option<u64>,
        observer: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<(), TrainError> {
        let total = self.config.train.steps;
        let end = match stop_after {
            Some(n) => (self.step + n).min(total),
            None => total,
        };
        observer(TrainEvent::Started {
            dataset: &self.dataset,
            validation: self.validation.len(),
            report: self.run_dir.join(DATA_REPORT_FILE),
            parameters: self.model.num_params(),
            start_step: self.step,
            total_steps: total,
        });
        while self.step < end {
            let stats = self.train_step()?;
            self.monitor.on_step(&stats)?;
            for skip in std::mem::take(&mut self.new_skips) {
                observer(TrainEvent::Skipped(&skip));
            }
            observer(TrainEvent::Step(&stats));
            let last = self.step == end;
            let mut refresh = false;
            if let Some(record) = self.evaluate_if_due()? {
                observer(TrainEvent::Evaluated(&record));
                refresh = true;
            }
            if self.step.is_multiple_of(self.config.train.sample_every)
                || (last && self.step == total)
            {
                let path = self.save_sample_grid()?;
                self.monitor.on_grid(self.step, &path)?;
                observer(TrainEvent::SampleGrid(&path));
                refresh = true;
            }
            if self.step.is_multiple_of(self.config.train.checkpoint_every) || last {
                let path = self.save_checkpoint()?;
                observer(TrainEvent::Checkpoint(&path));
                refresh = true;
            }
            if refresh {
                self.metrics.flush()?;
                self.monitor.refresh(&self.config, self.step)?;
            }
        }
        self.metrics.flush()
    }
}
