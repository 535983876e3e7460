//! Where a run starts from, fresh or resumed, by one path: its config, its run directory, its
//! data divided into the training and held-out images, and the checkpoint it continues from.
//! Everything is read and checked before anything is written, so bad data or a bad override
//! never leaves a half-made run.

use std::path::{Path, PathBuf};

use oxidiff_data::{
    ChannelStats, DataReport, Dataset, Split, SplitRecord, Standardize, load_dataset_for_run,
    split_for, split_from_list,
};

use crate::checkpoint::load_config;
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::run_dir::{RunDir, read_json, resolve_checkpoint, to_json, write_atomic};

/// The images of a run, divided and standardised.
pub struct RunData {
    pub train: Dataset,
    pub validation: Dataset,
    pub standardization: Option<ChannelStats>,
    pub report: DataReport,
}

/// A run about to start: [`RunSetup::fresh`] or [`RunSetup::resume`], then
/// [`RunSetup::commit`] once the model is ready.
pub struct RunSetup {
    pub config: RunConfig,
    pub run_dir: RunDir,
    pub data: RunData,
    /// The checkpoint a resumed run continues from.
    pub checkpoint: Option<PathBuf>,
    /// Run files to write on commit (a fresh run's split, data report, standardisation).
    new_files: Vec<(PathBuf, String)>,
}

impl RunSetup {
    /// A fresh run of `config` into `run_dir` (which must not hold checkpoints yet), its images
    /// shaped `channels × size × size`.
    pub fn fresh(
        config: RunConfig,
        run_dir: &Path,
        size: usize,
        channels: usize,
    ) -> Result<Self, TrainError> {
        let run_dir = RunDir::new(run_dir);
        if !run_dir.list_checkpoints()?.is_empty() {
            return Err(TrainError::RunDir {
                path: run_dir.path().to_path_buf(),
                message:
                    "already holds checkpoints: resume it with --resume, or choose another --out"
                        .into(),
            });
        }
        // The initial weights' architecture is read from their config files, before the data.
        config.initial_weights()?;
        let all = load_dataset_for_run(&config.data, size, channels, config.seed)?;
        let split = split_for(&config.data, &all, config.seed)?;
        check_evaluation_images(&config, &split)?;
        // The fraction asked for, 0 when a list chose the images.
        let fraction = match config.data.validation_list {
            Some(_) => 0.0,
            None => config.data.validation_fraction,
        };
        let record = split.record(&all.keys, fraction, config.seed);
        let mut report = DataReport::new(&config.data, &all, &split);
        if let Some(captions) = &mut report.captions {
            captions.tokens = crate::text::token_lengths(&config, &all)?;
        }
        let mut new_files = vec![
            (run_dir.split(), to_json(&run_dir.split(), &record)?),
            (
                run_dir.data_report(),
                to_json(&run_dir.data_report(), &report)?,
            ),
        ];
        let standardization = match config.data.standardize {
            Standardize::MinusOneOne => None,
            Standardize::PerChannel => {
                let stats = ChannelStats::of(&all, &split.train);
                let path = run_dir.standardization();
                new_files.push((path.clone(), to_json(&path, &stats)?));
                Some(stats)
            }
        };
        let data = divide(all, &split, standardization, report);
        Ok(Self {
            config,
            run_dir,
            data,
            checkpoint: None,
            new_files,
        })
    }

    /// The run in `path` (a run directory or one of its checkpoints), continued from its newest
    /// checkpoint. `overrides` (`section.key=value`) apply on top of the saved config, e.g.
    /// `train.steps=20000` to train longer; `model.*` and `diffusion.*` cannot change.
    /// `shape_of` gives the image size and channels of a config.
    pub fn resume(
        path: &Path,
        overrides: &[String],
        shape_of: impl Fn(&RunConfig) -> Result<(usize, usize), TrainError>,
    ) -> Result<Self, TrainError> {
        let checkpoint = resolve_checkpoint(path)?;
        let run_dir = RunDir::of_checkpoint(&checkpoint);
        let saved = load_config(&checkpoint, &[])?;
        let config = load_config(&checkpoint, overrides)?;
        if config.model != saved.model
            || config.diffusion != saved.diffusion
            || config.task != saved.task
            || config.autoencoder != saved.autoencoder
            || config.latent.autoencoder != saved.latent.autoencoder
            || config.latent.scaling_factor != saved.latent.scaling_factor
        {
            return Err(TrainError::Config {
                origin: "--set".into(),
                message: "task, model.*, diffusion.*, autoencoder.*, latent.autoencoder and \
                          latent.scaling_factor cannot change when resuming"
                    .into(),
            });
        }
        if config.data.validation_fraction != saved.data.validation_fraction
            || config.data.validation_list != saved.data.validation_list
        {
            return Err(TrainError::Config {
                origin: "--set".into(),
                message: format!(
                    "data.validation_fraction and data.validation_list cannot change when \
                     resuming: the run's held-out images are fixed in {}",
                    run_dir.split().display()
                ),
            });
        }
        let (size, channels) = shape_of(&config)?;
        let all = load_dataset_for_run(&config.data, size, channels, config.seed)?;
        let standardization = match config.data.standardize {
            Standardize::MinusOneOne => None,
            Standardize::PerChannel => Some(read_json(&run_dir.standardization())?),
        };
        let split = saved_split(&run_dir, &all)?;
        check_evaluation_images(&config, &split)?;
        // Runs saved before the report existed (or with it deleted) get a fresh one.
        let report = match read_json(&run_dir.data_report()) {
            Ok(report) => report,
            Err(_) => DataReport::new(&config.data, &all, &split),
        };
        let data = divide(all, &split, standardization, report);
        Ok(Self {
            config,
            run_dir,
            data,
            checkpoint: Some(checkpoint),
            new_files: Vec::new(),
        })
    }

    /// Removes what an interrupted earlier process left (see [`RunDir::remove_leftovers`]),
    /// then writes the run's files: `config.toml` (with a resumed run's overrides), and a
    /// fresh run's split, data report and standardisation.
    pub fn commit(&mut self) -> Result<(), TrainError> {
        let root = self.run_dir.path();
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        self.run_dir.remove_leftovers()?;
        write_atomic(&self.run_dir.config(), self.config.to_toml().as_bytes())?;
        for (path, text) in self.new_files.drain(..) {
            write_atomic(&path, text.as_bytes())?;
        }
        Ok(())
    }
}

/// The split saved with a run: the held-out keys in `split.json`, so that a resumed run never
/// trains on an image the first part held out, and evaluation uses exactly those images. Runs
/// saved before splits existed have no file and no validation images.
pub(crate) fn saved_split(run_dir: &RunDir, all: &Dataset) -> Result<Split, TrainError> {
    let path = run_dir.split();
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

/// The training and validation datasets of `split`, standardised with `stats`. Without held-out
/// images the whole dataset moves over uncopied (a large dataset is not held twice).
fn divide(
    all: Dataset,
    split: &Split,
    standardization: Option<ChannelStats>,
    report: DataReport,
) -> RunData {
    let mut validation = all.subset(&split.validation);
    let mut train = if split.validation.is_empty() {
        all
    } else {
        all.subset(&split.train)
    };
    if let Some(stats) = &standardization {
        train.standardize(stats);
        validation.standardize(stats);
    }
    RunData {
        train,
        validation,
        standardization,
        report,
    }
}

/// Refuses in-training evaluation without held-out images to evaluate on, before any work.
fn check_evaluation_images(config: &RunConfig, split: &Split) -> Result<(), TrainError> {
    let t = &config.train;
    let asked = |every: Option<u64>| every.is_some_and(|n| n > 0);
    if (asked(t.eval_every) || asked(t.bpd_every)) && split.validation.is_empty() {
        return Err(TrainError::Config {
            origin: "train.eval_every / train.bpd_every".into(),
            message: "evaluation during training needs held-out images: set \
                      data.validation_fraction (e.g. 0.05) or data.validation_list, or turn \
                      it off with train.eval_every=0 and train.bpd_every=0"
                .into(),
        });
    }
    Ok(())
}
