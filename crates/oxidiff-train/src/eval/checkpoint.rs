//! `oxidiff eval`: a checkpoint evaluated on the held-out images of its run (or the test set,
//! or any source of the same kind), as the library call behind the command.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_data::{DataSource, Dataset, Standardize, load_dataset_for_run};
use oxidiff_diffusion::TimestepSpacing;
use serde::{Deserialize, Serialize};

use super::features::{
    FeatureNetConfig, SampleDistance, classifier_accuracy, features_of, load_or_train,
    sample_distance,
};
use super::tasks::{DenoiseScore, InpaintScore, denoise_score, inpaint_score};
use super::{BandMse, NllReport, band_mse, nll};
use crate::TrainError;
use crate::config::{RunConfig, SampleConfig};
use crate::edit::InpaintMethod;
use crate::generate::{generate, load_for_sampling};
use crate::run_dir::RunDir;
use crate::trainer::{DiffusionState, saved_split};

/// Which images a checkpoint is evaluated on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalSplit {
    /// The run's held-out images (`split.json`).
    #[default]
    Val,
    /// A test set: Fashion-MNIST's test files for a Fashion-MNIST run, otherwise every image
    /// of the source given by the data overrides.
    Test,
    /// The run's training images (to compare against held-out numbers).
    Train,
}

/// What to measure and how, grouped by the measurement that reads it. The defaults are
/// `oxidiff eval`'s: the held-out images, ε-MSE and bits/dim (stride 20), batches of 100, seed
/// 0, EMA weights; no FD-oxidiff, inpainting or denoising.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Which images every measurement runs on.
    pub images: ImageSelection,
    pub batch_size: usize,
    /// Seeds the evaluation noise (timesteps, ε, generated samples).
    pub seed: u64,
    pub use_ema: bool,
    /// Timestep spacing of every sampler here; `None`: the run's `diffusion.timestep_spacing`.
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Bits/dim from the bound; `None` skips it.
    pub nll: Option<NllOptions>,
    /// FD-oxidiff against generated samples.
    pub distance: DistanceOptions,
    /// Inpainting and denoising of the evaluated images.
    pub editing: EditOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            images: ImageSelection::default(),
            batch_size: 100,
            seed: 0,
            use_ema: true,
            timestep_spacing: None,
            nll: Some(NllOptions::default()),
            distance: DistanceOptions::default(),
            editing: EditOptions::default(),
        }
    }
}

/// Which images are evaluated (see [`EvalSplit`]).
#[derive(Debug, Clone, Default)]
pub struct ImageSelection {
    pub split: EvalSplit,
    /// `data.key=value` assignments applied to the run's `[data]` section for the evaluated
    /// images (e.g. another folder for `--split test`).
    pub data_overrides: Vec<String>,
    /// Evaluate at most this many images (the first of the split).
    pub max_images: Option<usize>,
}

/// How bits/dim is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NllOptions {
    /// 1 = the exact bound; k = every k-th KL term counted k times (see [`NllReport::stride`]).
    pub stride: usize,
}

impl Default for NllOptions {
    fn default() -> Self {
        Self { stride: 20 }
    }
}

/// FD-oxidiff against generated samples, and how samples are drawn.
#[derive(Debug, Clone, Default)]
pub struct DistanceOptions {
    /// Generate this many samples and compute FD-oxidiff against the evaluated images
    /// (`None` skips it).
    pub samples: Option<usize>,
    /// How samples are drawn (and what [`EvalResult::sampler`] says); `None`: the run's
    /// `[sample]` section.
    pub sample: Option<SampleConfig>,
}

/// Inpainting and denoising of every evaluated image.
#[derive(Debug, Clone)]
pub struct EditOptions {
    /// Inpaint the centre square of every evaluated image with these methods and score them.
    pub inpaint: Vec<InpaintMethod>,
    /// Add Gaussian noise of these σ (8-bit levels) to every evaluated image, denoise, score.
    pub denoise_sigmas: Vec<f64>,
    /// Sampling steps of inpainting and denoising.
    pub steps: usize,
}

impl Default for EditOptions {
    fn default() -> Self {
        Self {
            inpaint: Vec::new(),
            denoise_sigmas: Vec::new(),
            steps: 50,
        }
    }
}

/// The numbers of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub checkpoint: PathBuf,
    pub step: u64,
    pub split: EvalSplit,
    /// The evaluated source, in words.
    pub source: String,
    pub images: usize,
    pub band_mse: BandMse,
    pub nll: Option<NllReport>,
    pub distance: Option<SampleDistance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inpaint: Vec<InpaintScore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denoise: Vec<DenoiseScore>,
    /// How the generated samples were drawn (`"ddim, 50 steps"`).
    pub sampler: String,
}

/// What [`evaluate_checkpoint`] is busy with, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPhase {
    Nll,
    FeatureNet,
    Sampling,
    Inpainting,
    Denoising,
}

/// Evaluates the checkpoint at `path` (or a run directory's newest): ε-MSE per band of t,
/// bits/dim and FD-oxidiff as `options` ask, on `device` (no autodiff).
///
/// # Errors
/// - the checkpoint or its run files cannot be read;
/// - the run standardised per channel and bits/dim is asked (the bound's decoder needs 8-bit
///   data in [-1, 1]);
/// - the split is empty (no held-out images, or `--split test` without a test source);
/// - a data or evaluation error.
pub fn evaluate_checkpoint(
    path: &Path,
    options: &EvalOptions,
    device: &Device,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<EvalResult, TrainError> {
    let mut loaded = load_for_sampling(path, options.use_ema, device)?;
    if let Some(spacing) = options.timestep_spacing {
        loaded.set_timestep_spacing(spacing);
    }
    let config = &loaded.config;
    let run_dir = RunDir::of_checkpoint(&loaded.checkpoint);
    let state =
        crate::checkpoint::load_state::<DiffusionState>(
            &loaded.checkpoint.join(crate::run_dir::STATE_FILE),
        )?;
    if options.nll.is_some() && config.data.standardize == Standardize::PerChannel {
        return Err(TrainError::Eval {
            message: "bits/dim needs 8-bit images in [-1, 1], and this run standardised per \
                      channel (data.standardize = \"per-channel\"); leave bits/dim out"
                .into(),
        });
    }
    let unet = config.unet()?;
    let (size, channels) = (unet.image_size, unet.in_channels);

    // The training data of the run (for the split, and to train the feature network on).
    let train_all = load_dataset_for_run(&config.data, size, channels, config.seed)?;
    let split = saved_split(&run_dir, &train_all)?;

    let mut eval_data_config = config.data.clone();
    let selection = &options.images;
    let evaluated: (Dataset, Vec<usize>, String) = match selection.split {
        EvalSplit::Val | EvalSplit::Train if !selection.data_overrides.is_empty() => {
            return Err(TrainError::Eval {
                message: "data overrides choose a test source; use them with --split test".into(),
            });
        }
        EvalSplit::Val => {
            if split.validation.is_empty() {
                return Err(TrainError::Eval {
                    message: format!(
                        "the run in {} held no images out (data.validation_fraction = 0); \
                         evaluate --split test, or train with a validation split",
                        run_dir.path().display()
                    ),
                });
            }
            let source = format!("{} (held-out split)", config.data.describe_source());
            (train_all.clone(), split.validation.clone(), source)
        }
        EvalSplit::Train => {
            let source = format!("{} (training split)", config.data.describe_source());
            (train_all.clone(), split.train.clone(), source)
        }
        EvalSplit::Test => {
            if selection.data_overrides.is_empty() {
                if config.data.source != DataSource::FashionMnist {
                    return Err(TrainError::Eval {
                        message: format!(
                            "--split test needs a test source for {} (e.g. --data PATH); \
                             Fashion-MNIST runs use its test files by themselves",
                            config.data.describe_source()
                        ),
                    });
                }
                eval_data_config.subset = Some(oxidiff_data::Subset::Test);
            } else {
                eval_data_config = RunConfig::data_with_overrides(
                    &eval_data_config,
                    "the run's [data] section",
                    &selection.data_overrides,
                )?;
            }
            // A test source is used whole: no split of it is held out.
            eval_data_config.validation_fraction = 0.0;
            eval_data_config.validation_list = None;
            let data = load_dataset_for_run(&eval_data_config, size, channels, config.seed)?;
            let all = (0..data.len()).collect();
            let source = eval_data_config.describe_source();
            (data, all, source)
        }
    };
    let (data, mut indices, source) = evaluated;
    if let Some(max) = selection.max_images {
        indices.truncate(max);
    }
    if indices.is_empty() {
        return Err(TrainError::Eval {
            message: format!("no images to evaluate in {source}"),
        });
    }
    let mut data = data;
    if let Some(stats) = &loaded.standardization {
        data.standardize(stats);
    }

    let model = &loaded.model;
    let diffusion = &loaded.diffusion;
    let batch = options.batch_size.max(1);
    let band_mse: BandMse = band_mse(
        model,
        diffusion,
        &data,
        &indices,
        batch,
        options.seed,
        device,
    )?;
    let nll: Option<NllReport> = match options.nll {
        Some(NllOptions { stride }) => Some(nll(
            model,
            diffusion,
            &data,
            &indices,
            batch,
            stride,
            options.seed,
            device,
            &mut |done, total| progress(EvalPhase::Nll, done, total),
        )?),
        None => None,
    };

    let sample = options.distance.sample.as_ref().unwrap_or(&config.sample);
    let sampler = format!(
        "{}{}, {} network calls",
        sample.sampler.name(),
        if sample.karras_sigmas {
            " (Karras σ)".to_string()
        } else {
            format!(
                " ({} spacing)",
                format!("{:?}", diffusion.config.timestep_spacing).to_lowercase()
            )
        },
        sample.sampler.network_calls(sample.steps)
    );
    let real_batch = data.assemble(&indices, oxidiff_data::Augment::default(), |_| None)?;
    let real_images = real_batch.to_tensor(device);
    // The feature network, when a distance is asked for (samples or inpainted images).
    let features = if options.distance.samples.is_some() || !options.editing.inpaint.is_empty() {
        let mut train_data = train_all;
        if let Some(stats) = &loaded.standardization {
            train_data.standardize(stats);
        }
        let net_config = FeatureNetConfig::for_data(
            &train_data,
            split.train.len(),
            config.data.describe_source(),
            config.seed,
        );
        let (net, _cached) = load_or_train(
            &run_dir.fd_cache_dir(),
            &net_config,
            &train_data,
            &split.train,
            device,
            &mut |done, total| progress(EvalPhase::FeatureNet, done, total),
        )?;
        let accuracy = classifier_accuracy(
            &net,
            net_config.task,
            real_images.clone(),
            &real_batch.labels,
            batch,
        );
        let real = features_of(&net, real_images.clone(), batch);
        Some((net, real, accuracy))
    } else {
        None
    };
    let distance = match (options.distance.samples, &features) {
        (Some(count), Some((net, real, accuracy))) => {
            let mut generated = Vec::with_capacity(count * super::features::FEATURE_DIM);
            let mut made = 0;
            while made < count {
                let n = batch.min(count - made);
                let images: Tensor<4> = generate(
                    model,
                    diffusion,
                    sample,
                    [n, channels, size, size],
                    options.seed.wrapping_add(made as u64 + 1),
                    device,
                    &mut |_, _| {},
                )?
                .clamp(-1.0, 1.0);
                generated.extend(features_of(net, images, batch));
                made += n;
                progress(EvalPhase::Sampling, made, count);
            }
            Some(SampleDistance {
                feature_accuracy: *accuracy,
                ..sample_distance(real, &generated)?
            })
        }
        _ => None,
    };
    let mut inpaint = Vec::new();
    for (k, &method) in options.editing.inpaint.iter().enumerate() {
        let (mut score, filled) = inpaint_score(
            &loaded,
            real_images.clone(),
            method,
            options.editing.steps,
            options.seed,
        )?;
        if let Some((net, real, _)) = &features {
            let filled_features = features_of(net, filled, batch);
            score.fd_oxidiff = Some(sample_distance(real, &filled_features)?.fd_oxidiff);
        }
        inpaint.push(score);
        progress(EvalPhase::Inpainting, k + 1, options.editing.inpaint.len());
    }
    let mut denoise = Vec::new();
    for (k, &sigma) in options.editing.denoise_sigmas.iter().enumerate() {
        denoise.push(denoise_score(
            &loaded,
            real_images.clone(),
            sigma,
            options.editing.steps,
            options.seed,
        )?);
        progress(
            EvalPhase::Denoising,
            k + 1,
            options.editing.denoise_sigmas.len(),
        );
    }
    Ok(EvalResult {
        checkpoint: loaded.checkpoint.clone(),
        step: state.step,
        split: selection.split,
        source,
        images: indices.len(),
        band_mse,
        nll,
        distance,
        inpaint,
        denoise,
        sampler,
    })
}
