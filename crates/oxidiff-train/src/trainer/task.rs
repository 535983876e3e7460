//! What the loop trains, as one trait: a network, its loss on a batch, the samples and
//! held-out evaluations it writes. The diffusion UNet is one implementation
//! ([`super::DiffusionTask`]); a second model (an autoencoder) is a second one, not a second loop.

use std::path::Path;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use oxidiff_data::{ChannelStats, Dataset};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::feed::Conditioning;
use super::setup::RunData;
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::eval::EvalRecord;
use crate::memory::MemoryEstimate;
use crate::optim::clip_grad_norm;
use crate::run_dir::RunDir;

/// Which held-out measurements are due at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalDue {
    /// The cheap one (diffusion: ε-MSE per band of t), `train.eval_every`.
    pub frequent: bool,
    /// The expensive one (diffusion: bits/dim), `train.bpd_every`.
    pub likelihood: bool,
}

/// One micro-batch as a loss sees it.
pub struct MicroBatch<'a> {
    /// `[B, C, H, W]`
    pub images: Tensor<4>,
    /// `[B]`: the class labels, dropped to "no class" where the feed drew so.
    pub labels: &'a [usize],
    /// `[B]`: the captions of a text-conditioned task, dropped to the empty prompt where the
    /// feed drew so; empty for other tasks.
    pub captions: &'a [String],
}

/// A model the training loop can train.
pub trait TrainTask: Sized + Send {
    /// The trained network; `Module::valid` gives the copy samples and evaluations use.
    type Model: Module;
    /// What the task carries from step to step and through checkpoints besides the weights,
    /// saved inside `state.json`.
    type State: Clone + Send + Serialize + DeserializeOwned;

    /// The task a config describes.
    fn new(config: &RunConfig) -> Result<Self, TrainError>;

    /// `(size, channels)` of the images the task trains on, for a config.
    fn image_shape(config: &RunConfig) -> Result<(usize, usize), TrainError>;

    /// The memory a run of `config` needs at its peak, from the config alone (nothing may be
    /// allocated: the estimate is what refuses a size that cannot fit).
    fn memory_estimate(config: &RunConfig) -> Result<MemoryEstimate, TrainError>;

    /// The data the network trains on, made from the run's images once the run's files are
    /// written: the images themselves (the default), or what a frozen first stage makes of
    /// them (a latent diffusion model's latents). `device` has no autodiff.
    fn prepare_data(
        &mut self,
        data: RunData,
        run_dir: &RunDir,
        device: &Device,
    ) -> Result<RunData, TrainError> {
        let _ = (run_dir, device);
        Ok(data)
    }

    /// A freshly initialised network on `device` (seeded by the caller).
    fn init_model(&self, device: &Device) -> Self::Model;

    /// The network a fresh run starts from, on `device` (seeded by the caller): freshly
    /// initialised (the default), or weights the config names (the diffusion task's
    /// `model.init_from`).
    fn initial_model(&self, device: &Device) -> Result<Self::Model, TrainError> {
        Ok(self.init_model(device))
    }

    /// The task's own state: fresh (`None`) or continued from a checkpoint's.
    fn state(&self, saved: Option<Self::State>) -> Self::State;

    /// What the model is conditioned on (none by default), dropped by the feed for
    /// classifier-free guidance.
    fn conditioning(&self) -> Conditioning {
        Conditioning::default()
    }

    /// The loss of one micro-batch of optimiser step `step` (counted from 0), a scalar to
    /// differentiate.
    ///
    /// # Shapes
    /// - returns `[1]`
    ///
    /// # Errors
    /// What the batch's conditioning cannot be made from (a caption the tokenizer refuses).
    fn loss(
        &self,
        model: &Self::Model,
        batch: MicroBatch<'_>,
        step: u64,
        state: &mut Self::State,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError>;

    /// Scales the gradients so their norm is at most `max_norm` (0: measures only) and
    /// returns the norm before clipping. One global norm by default; a task whose module holds
    /// networks with optimisers of their own in the literature (an autoencoder and its
    /// discriminator) clips each by its own norm, as separate optimisers would.
    fn clip_gradients(
        &self,
        model: &Self::Model,
        grads: &mut GradientsParams,
        max_norm: f64,
    ) -> f64 {
        clip_grad_norm(model, grads, max_norm)
    }

    /// One optimiser step at learning rate `lr`. The same rate for every parameter by default;
    /// a task whose parts train at rates of their own (a text encoder's `text.lr`) scales their
    /// updates.
    fn step(
        &self,
        optimizer: &mut ModuleOptimizer,
        lr: f64,
        model: Self::Model,
        grads: GradientsParams,
    ) -> Self::Model {
        optimizer.step(lr, model, grads)
    }

    /// Writes the sample grid of `model` (without autodiff) to `path`. `shown` are images a
    /// grid may show beside what the model made of them (the held-out ones when the run has
    /// any, else the training ones): an autoencoder's reconstructions.
    fn write_samples(
        &self,
        model: &Self::Model,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
    ) -> Result<(), TrainError>;

    /// The due held-out measurements of `model` (without autodiff) on `validation`.
    fn evaluate(
        &self,
        model: &Self::Model,
        validation: &Dataset,
        due: EvalDue,
        step: u64,
        device: &Device,
    ) -> Result<EvalRecord, TrainError>;
}
