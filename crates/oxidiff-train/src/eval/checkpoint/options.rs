//! What [`evaluate_checkpoint`](super::evaluate_checkpoint) measures and how: one group of
//! options per measurement, each with `oxidiff eval`'s defaults.

use oxidiff_diffusion::TimestepSpacing;

use crate::config::{RunConfig, SampleConfig};
use crate::edit::InpaintMethod;

oxidiff_diffusion::named_enum! {
    /// Which images a checkpoint is evaluated on.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub enum EvalSplit {
        /// The run's held-out images (`split.json`).
        #[default]
        Val = "val",
        /// A test set: Fashion-MNIST's test files for a Fashion-MNIST run, otherwise every
        /// image of the source given by --data / --set.
        Test = "test",
        /// The run's training images (to compare against held-out numbers).
        Train = "train",
    }
}

/// What to measure and how, grouped by the measurement that reads it. The defaults are
/// `oxidiff eval`'s: the held-out images, ε-MSE and bits/dim (stride 20), batches of 100, seed
/// 0, EMA weights; no FD-oxidiff, inpainting, denoising or prompt following.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Which images every measurement runs on.
    pub images: ImageSelection,
    /// Images (or samples) through the network at once; 0 counts as 1.
    pub batch_size: usize,
    /// Seeds the evaluation noise (timesteps, ε, generated samples).
    pub seed: u64,
    /// Evaluate the EMA weights (`true`) or the online weights.
    pub use_ema: bool,
    /// Timestep spacing of every sampler here; `None`: the run's `diffusion.timestep_spacing`.
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Bits/dim from the bound; `None` skips it.
    pub nll: Option<NllOptions>,
    /// FD-oxidiff against generated samples.
    pub distance: DistanceOptions,
    /// Inpainting and denoising of the evaluated images.
    pub editing: EditOptions,
    /// How well a text-to-image model's samples follow their prompts; `None` skips it.
    pub prompts: Option<PromptFollowingOptions>,
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
            prompts: None,
        }
    }
}

/// Which images are evaluated (see [`EvalSplit`]).
#[derive(Debug, Clone, Default)]
pub struct ImageSelection {
    /// The run's held-out or training images, or a test source.
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
    /// 1 = the exact bound; k = every k-th KL term counted k times (see [`NllReport::stride`](crate::eval::NllReport::stride)).
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
    /// How samples are drawn (and what [`EvalResult::sampler`](super::EvalResult::sampler) says); `None`: the run's
    /// `[sample]` section.
    pub sample: Option<SampleConfig>,
}

impl DistanceOptions {
    /// How samples are drawn for a run configured as `run`: [`DistanceOptions::sample`], or
    /// the run's `[sample]` section.
    pub fn sample_config<'a>(&'a self, run: &'a RunConfig) -> &'a SampleConfig {
        self.sample.as_ref().unwrap_or(&run.sample)
    }
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

/// Prompt following (see [`PromptFollowing`](super::PromptFollowing)): one sample per
/// evaluated image, prompted with one of its captions, drawn as
/// [`DistanceOptions::sample_config`] says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PromptFollowingOptions {
    /// The classifier-free guidance scale; `None`: the run's `sample.guidance_scale`.
    pub guidance: Option<f64>,
}
