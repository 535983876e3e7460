//! `oxidiff eval`: a checkpoint evaluated on the held-out images of its run (or the test set,
//! or any source of the same kind), as the library call behind the command.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_data::{
    Augment, ChannelStats, DataConfig, DataSource, Dataset, Split, Standardize, Subset,
    load_dataset_for_run, stratified_subset,
};
use oxidiff_diffusion::GaussianDiffusion;
use serde::{Deserialize, Serialize};

use super::features::{
    FEATURE_DIM, FeatureNet, FeatureNetConfig, SampleDistance, classifier_accuracy, features_of,
    load_or_train, sample_distance,
};
use super::tasks::{DenoiseScore, InpaintScore};
use super::{BandMse, NllReport, band_mse, nll};
use crate::TrainError;
use crate::config::{RunConfig, SampleConfig};
use crate::generate::{LoadedModel, generate, load_for_sampling};
use crate::run_dir::RunDir;
use crate::trainer::DiffusionState;
use editing::{measure_denoising, measure_inpainting};

mod autoencoder;
mod editing;
mod options;
mod prompts;
pub use autoencoder::{AutoencoderEvalResult, evaluate_autoencoder, is_autoencoder};
pub use options::{
    DistanceOptions, EditOptions, EvalOptions, EvalSplit, ImageSelection, NllOptions,
    PromptFollowingOptions,
};
pub use prompts::{ClassFollowing, PromptFollowing};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_following: Option<PromptFollowing>,
    /// How the generated samples were drawn (`"ddim (leading spacing), 50 network calls"`).
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
    Prompting,
}

/// Evaluates the checkpoint at `path` (or a run directory's newest): ε-MSE per band of t,
/// bits/dim, FD-oxidiff, inpainting, denoising and prompt following as `options` ask, on
/// `device` (no autodiff).
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
    let run_dir = RunDir::of_checkpoint(&loaded.checkpoint);
    let state = crate::checkpoint::load_state::<DiffusionState>(&loaded.checkpoint)?;
    if let Some(nll) = &options.nll {
        check_nll_possible(&loaded.config, nll)?;
    }
    let m = Measuring::new(&loaded, options, device)?;
    let run = RunData::load(&m.c, run_dir)?;
    if options.prompts.is_some() {
        prompts::check_possible(&loaded, &run.all)?;
    }
    let evaluated = select_images(&m.c, &run, &options.images)?;

    let in_model_space = in_model_space(&m, &evaluated)?;
    let band_mse = measure_band_mse(&m, &in_model_space)?;
    let nll = options
        .nll
        .map(|nll| measure_nll(&m, &in_model_space, nll, progress))
        .transpose()?;
    let (real, labels) = evaluated.assemble(device)?;
    let training_captions = options
        .prompts
        .map(|_| run.training_captions())
        .unwrap_or_default();
    // The feature network, when a distance is asked for (samples or inpainted images) or
    // samples are to be classified.
    let features = if options.distance.samples.is_some()
        || !options.editing.inpaint.is_empty()
        || options.prompts.is_some()
    {
        Some(feature_network(&m.c, run, &real, &labels, progress)?)
    } else {
        None
    };
    let sample = options.distance.sample_config(&loaded.config);
    let distance = match (options.distance.samples, &features) {
        (Some(count), Some(net)) => Some(measure_distance(&m, sample, count, net, progress)?),
        _ => None,
    };
    let inpaint = measure_inpainting(&m, &real, features.as_ref(), &options.editing, progress)?;
    let denoise = measure_denoising(&m, &real, &options.editing, progress)?;
    let prompt_following = match (options.prompts, &features) {
        (Some(prompting), Some(features)) => {
            let task = prompts::PromptTask {
                evaluated: &evaluated,
                training_captions: &training_captions,
                features,
                sample,
                guidance: prompting
                    .guidance
                    .unwrap_or(loaded.config.sample.guidance_scale),
            };
            Some(prompts::measure(&m, &task, &mut |done, total| {
                progress(EvalPhase::Prompting, done, total)
            })?)
        }
        _ => None,
    };
    Ok(EvalResult {
        checkpoint: loaded.checkpoint.clone(),
        step: state.step,
        split: options.images.split,
        images: evaluated.indices.len(),
        source: evaluated.source,
        band_mse,
        nll,
        distance,
        inpaint,
        denoise,
        prompt_following,
        sampler: describe_sampler(sample, &loaded.diffusion),
    })
}

/// The images one evaluation measures: the dataset they are in (standardised as the run's
/// training images were), their positions in it, and the source in words.
struct Evaluated {
    data: Dataset,
    indices: Vec<usize>,
    source: String,
}

impl Evaluated {
    /// The evaluated images as one tensor `[N, C, S, S]` (centre crops), with their labels
    /// `[N]`.
    fn assemble(&self, device: &Device) -> Result<(Tensor<4>, Vec<usize>), TrainError> {
        let batch = self
            .data
            .assemble(&self.indices, Augment::default(), |_| None)?;
        Ok((batch.to_tensor(device), batch.labels))
    }
}

/// What reading and featurising a run's images needs, whatever model is evaluated.
struct Context<'a> {
    config: &'a RunConfig,
    /// How the run standardised its images (`None`: [-1, 1]).
    pub standardization: Option<&'a ChannelStats>,
    /// The images': channels and side (a latent run's are the autoencoder's).
    pub channels: usize,
    pub size: usize,
    /// At least 1.
    pub batch: usize,
    pub seed: u64,
    pub device: &'a Device,
}

/// What every measurement of a diffusion model reads besides its own options.
struct Measuring<'a> {
    c: Context<'a>,
    loaded: &'a LoadedModel,
    /// The UNet's inputs: `[channels, side, side]` (the latents' in a latent run).
    model_shape: [usize; 3],
}

impl<'a> Measuring<'a> {
    /// The settings of `options` every measurement shares, for the model `loaded`.
    fn new(
        loaded: &'a LoadedModel,
        options: &EvalOptions,
        device: &'a Device,
    ) -> Result<Self, TrainError> {
        let unet = loaded.config.unet()?;
        let (size, channels) = loaded.image_shape()?;
        if loaded.latent.is_some() && !options.editing.denoise_sigmas.is_empty() {
            return Err(TrainError::Eval {
                message: "denoising by a σ of pixel noise: a latent model never saw pixel \
                          noise; leave the denoising scores out for a latent run"
                    .into(),
            });
        }
        Ok(Self {
            c: Context {
                config: &loaded.config,
                standardization: loaded.standardization.as_ref(),
                channels,
                size,
                batch: options.batch_size.max(1),
                seed: options.seed,
                device,
            },
            loaded,
            model_shape: [unet.in_channels, unet.image_size, unet.image_size],
        })
    }
}

/// The run's own data: its directory, every training image (unstandardised) and the split
/// it was trained with.
struct RunData {
    dir: RunDir,
    all: Dataset,
    split: Split,
}

impl RunData {
    /// The training data of the run in `dir` (for the split, and to train the feature network
    /// on) and its saved split.
    ///
    /// # Errors
    /// The data or `split.json` cannot be read, or no longer match.
    fn load(c: &Context, dir: RunDir) -> Result<Self, TrainError> {
        let config = c.config;
        let all = load_dataset_for_run(&config.data, c.size, c.channels, config.seed)?;
        let split = crate::trainer::saved_split(&dir, &all)?;
        Ok(Self { dir, all, split })
    }

    /// Every caption of every training image.
    fn training_captions(&self) -> std::collections::HashSet<String> {
        self.split
            .train
            .iter()
            .flat_map(|&i| self.all.captions_of(i).into_owned())
            .collect()
    }
}

/// The feature network FD-oxidiff compares through, with the features of the evaluated
/// images and its accuracy on their labels (`None` for an auto-encoder).
struct Features {
    net: FeatureNet,
    real: Vec<f32>,
    accuracy: Option<f64>,
}

/// Refuses bits/dim that cannot be computed: a stride beyond the schedule, or a run
/// standardised per channel (the bound's discretised decoder needs 8-bit data in [-1, 1]).
fn check_nll_possible(config: &RunConfig, nll: &NllOptions) -> Result<(), TrainError> {
    let steps = config.diffusion.num_train_timesteps;
    if nll.stride == 0 || nll.stride > steps {
        return Err(TrainError::Eval {
            message: format!(
                "bits/dim stride {}: must be between 1 (the exact bound) and the model's {steps} \
                 timesteps",
                nll.stride
            ),
        });
    }
    if config.data.standardize == Standardize::PerChannel {
        return Err(TrainError::Eval {
            message: "bits/dim needs 8-bit images in [-1, 1], and this run standardised per \
                      channel (data.standardize = \"per-channel\"); leave bits/dim out"
                .into(),
        });
    }
    Ok(())
}

/// `data` standardised as the run's training images were (unchanged for a [-1, 1] run).
fn standardized(stats: Option<&ChannelStats>, mut data: Dataset) -> Dataset {
    if let Some(stats) = stats {
        data.standardize(stats);
    }
    data
}

/// The images `selection` asks for: the held-out or the training split of the run's data,
/// or every image of a test source ([`test_source`]); `max_images` of them drawn evenly
/// across classes (seeded by the run's seed),
/// standardised as the run's.
///
/// # Errors
/// Data overrides with a split of the run, a run without held-out images for
/// [`EvalSplit::Val`], no test source, a test source that cannot be read, no images left.
fn select_images(
    c: &Context,
    run: &RunData,
    selection: &ImageSelection,
) -> Result<Evaluated, TrainError> {
    let config = c.config;
    let split = &run.split;
    let (data, mut indices, source) = match selection.split {
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
                        run.dir.path().display()
                    ),
                });
            }
            let source = format!("{} (held-out split)", config.data.describe_source());
            (run.all.clone(), split.validation.clone(), source)
        }
        EvalSplit::Train => {
            let source = format!("{} (training split)", config.data.describe_source());
            (run.all.clone(), split.train.clone(), source)
        }
        EvalSplit::Test => {
            let test = test_source(config, &selection.data_overrides)?;
            let data = load_dataset_for_run(&test, c.size, c.channels, config.seed)?;
            let all = (0..data.len()).collect();
            (data, all, test.describe_source())
        }
    };
    let mut source = source;
    if let Some(max) = selection.max_images.filter(|&max| max < indices.len()) {
        let labels: Vec<usize> = indices.iter().map(|&i| data.labels[i]).collect();
        let keys: Vec<String> = indices.iter().map(|&i| data.keys[i].clone()).collect();
        indices = stratified_subset(&labels, &keys, max, config.seed)
            .into_iter()
            .map(|k| indices[k])
            .collect();
        source = format!("{source}, {max} of them: the same number per class where possible");
    }
    if indices.is_empty() {
        return Err(TrainError::Eval {
            message: format!("no images to evaluate in {source}"),
        });
    }
    Ok(Evaluated {
        data: standardized(c.standardization, data),
        indices,
        source,
    })
}

/// The `[data]` section of a test source: the run's with `data_overrides` applied, or, with
/// none, Fashion-MNIST's test files for a Fashion-MNIST run; used whole (nothing held out).
///
/// # Errors
/// No overrides for a run of another source; a bad override (the message names it).
fn test_source(config: &RunConfig, data_overrides: &[String]) -> Result<DataConfig, TrainError> {
    let mut test = if data_overrides.is_empty() {
        if config.data.source != DataSource::FashionMnist {
            return Err(TrainError::Eval {
                message: format!(
                    "--split test needs a test source for {} (e.g. --data PATH); \
                     Fashion-MNIST runs use its test files by themselves",
                    config.data.describe_source()
                ),
            });
        }
        DataConfig {
            subset: Some(Subset::Test),
            ..config.data.clone()
        }
    } else {
        RunConfig::data_with_overrides(&config.data, "the run's [data] section", data_overrides)?
    };
    // A test source is used whole: no split of it is held out.
    test.validation_fraction = 0.0;
    test.validation_list = None;
    Ok(test)
}

/// The evaluated images as the UNet sees them: themselves, or in a latent run their scaled
/// latents (encoded a batch at a time).
fn in_model_space(m: &Measuring, images: &Evaluated) -> Result<Evaluated, TrainError> {
    let Some(space) = &m.loaded.latent else {
        return Ok(Evaluated {
            data: images.data.clone(),
            indices: images.indices.clone(),
            source: images.source.clone(),
        });
    };
    let chosen = images.data.subset(&images.indices);
    let latents = crate::latent::encode(space, &chosen, m.c.batch, m.c.device)?;
    let [c, s, _] = m.model_shape;
    let data = Dataset::new(
        oxidiff_data::Images::Cached(latents),
        c,
        s,
        chosen.labels.clone(),
        chosen.class_names.clone(),
        chosen.keys.clone(),
    );
    Ok(Evaluated {
        data,
        indices: (0..chosen.len()).collect(),
        source: images.source.clone(),
    })
}

/// ε-MSE of the evaluated images per band of t (see [`band_mse`]).
fn measure_band_mse(m: &Measuring, images: &Evaluated) -> Result<BandMse, TrainError> {
    band_mse(
        &m.loaded.denoiser(None, m.c.device)?,
        &m.loaded.diffusion,
        &images.data,
        &images.indices,
        m.c.batch,
        m.c.seed,
        m.c.device,
    )
}

/// Bits/dim of the evaluated images from the bound (see [`nll`]); progress as
/// [`EvalPhase::Nll`].
fn measure_nll(
    m: &Measuring,
    images: &Evaluated,
    options: NllOptions,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<NllReport, TrainError> {
    nll(
        &m.loaded.denoiser(None, m.c.device)?,
        &m.loaded.diffusion,
        &images.data,
        &images.indices,
        m.c.batch,
        options.stride,
        m.c.seed,
        m.c.device,
        &mut |done, total| progress(EvalPhase::Nll, done, total),
    )
}

/// The run's feature network, from its cache or trained on the training split of the run's
/// data (progress as [`EvalPhase::FeatureNet`]), with the features of `real_images` and its
/// accuracy on `labels`.
///
/// # Shapes
/// - `real_images`: `[N, C, S, S]`; `labels`: `[N]`
///
/// # Errors
/// The feature network cannot be trained or its cache read.
fn feature_network(
    c: &Context,
    run: RunData,
    real_images: &Tensor<4>,
    labels: &[usize],
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<Features, TrainError> {
    let config = c.config;
    let split = &run.split;
    let train_data = standardized(c.standardization, run.all);
    let net_config = FeatureNetConfig::for_data(
        &train_data,
        split.train.len(),
        config.data.describe_source(),
        config.seed,
    );
    let (net, _cached) = load_or_train(
        &run.dir.fd_cache_dir(),
        &net_config,
        &train_data,
        &split.train,
        c.device,
        &mut |done, total| progress(EvalPhase::FeatureNet, done, total),
    )?;
    let accuracy = classifier_accuracy(&net, net_config.task, real_images.clone(), labels, c.batch);
    let real = features_of(&net, real_images.clone(), c.batch);
    Ok(Features {
        net,
        real,
        accuracy,
    })
}

/// FD-oxidiff, precision and recall of `count` samples drawn with `sample` against the
/// evaluated images, through `features`. Samples come in batches of the batch size, each
/// seeded by `seed` + 1 + the number drawn before it; progress as [`EvalPhase::Sampling`].
///
/// # Errors
/// A sampling error; too few samples or non-finite features (see [`sample_distance`]).
fn measure_distance(
    m: &Measuring,
    sample: &SampleConfig,
    count: usize,
    features: &Features,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<SampleDistance, TrainError> {
    let mut generated = Vec::with_capacity(count * FEATURE_DIM);
    let mut made = 0;
    // A text-to-image model's unconditional model (the empty prompt); the UNet otherwise.
    let model = m.loaded.denoiser(None, m.c.device)?;
    while made < count {
        let n = m.c.batch.min(count - made);
        let [c, s, _] = m.model_shape;
        let images = generate(
            &model,
            &m.loaded.diffusion,
            sample,
            [n, c, s, s],
            m.c.seed.wrapping_add(made as u64 + 1),
            m.c.device,
            &mut |_, _| {},
        )?;
        let images = m.loaded.to_images(images).clamp(-1.0, 1.0);
        generated.extend(features_of(&features.net, images, m.c.batch));
        made += n;
        progress(EvalPhase::Sampling, made, count);
    }
    Ok(SampleDistance {
        feature_accuracy: features.accuracy,
        ..sample_distance(&features.real, &generated)?
    })
}

/// How the samples are drawn, in words: `"ddim (leading spacing), 50 network calls"`, or
/// `"heun (Karras σ), 19 network calls"`.
fn describe_sampler(sample: &SampleConfig, diffusion: &GaussianDiffusion) -> String {
    let schedule = if sample.karras_sigmas {
        " (Karras σ)".to_string()
    } else {
        format!(
            " ({} spacing)",
            format!("{:?}", diffusion.config.timestep_spacing).to_lowercase()
        )
    };
    format!(
        "{}{schedule}, {} network calls",
        sample.sampler.name(),
        sample.sampler.network_calls(sample.steps)
    )
}
