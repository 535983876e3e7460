//! The run configuration: one TOML file with `seed` and the sections `[data]`, `[model]`,
//! `[diffusion]`, `[train]` and `[sample]`, validated once at load time.

use std::path::Path;

use oxidiff_data::DataConfig;
use oxidiff_diffusion::sample::{KarrasOptions, check_eta};
use oxidiff_diffusion::{DiffusionConfig, LossKind, TimestepSampling};
use oxidiff_models::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::autoencoder_config::{AutoencoderSection, TaskKind};
use crate::error::TrainError;
use crate::latent::LatentSection;
use crate::text::TextSection;

mod resolve;

oxidiff_diffusion::named_enum! {
    /// Which optimiser updates the weights.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum OptimizerKind {
        /// Adam with L2 weight decay added to the gradient (Kingma & Ba 2015).
        Adam = "adam",
        /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
        AdamW = "adamw",
        /// RMSprop (Hinton 2012), with optional momentum.
        RmsProp = "rmsprop",
        /// Stochastic gradient descent with momentum (Nesterov when `nesterov = true`).
        Sgd = "sgd",
    }
}

oxidiff_diffusion::named_enum! {
    /// How the learning rate moves after the linear warm-up.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum LrSchedule {
        /// `lr` throughout.
        Constant = "constant",
        /// Half-cosine from `lr` to `min_lr` over the steps after warm-up.
        Cosine = "cosine",
        /// Straight line from `lr` to `min_lr` over the steps after warm-up.
        Linear = "linear",
    }
}

oxidiff_diffusion::named_enum! {
    /// Which sampler draws images from a trained model.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum SamplerKind {
        /// Ancestral sampling (Ho et al. 2020, Algorithm 2) over `steps` timesteps: all of them
        /// when `steps` = T, else the respaced chain (Nichol & Dhariwal 2021, §4).
        Ddpm = "ddpm",
        /// DDIM (Song et al. 2021) over `steps` respaced timesteps, stochasticity `eta`.
        Ddim = "ddim",
        /// PNDM's pseudo linear multistep method (Liu et al. 2022) as Stable Diffusion 1.x's
        /// `PNDMScheduler` with `skip_prk_steps`: deterministic, `steps` + 1 network calls.
        Pndm = "pndm",
        /// Euler's method on the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 2
        /// without its correction), `steps` network calls; S_churn noise optional.
        Euler = "euler",
        /// Heun's 2nd-order method (Karras et al. 2022, Algorithm 2): 2·`steps` − 1 network calls.
        Heun = "heun",
        /// DPM-Solver++(2M) (Lu et al. 2022), multistep, `steps` network calls.
        DpmPp2m = "dpmpp-2m",
        /// Its SDE variant (fresh noise every step).
        DpmPp2mSde = "dpmpp-2m-sde",
    }
}

impl SamplerKind {
    /// Network calls for `steps` sampling steps.
    pub fn network_calls(self, steps: usize) -> usize {
        match self {
            SamplerKind::Heun => (2 * steps).saturating_sub(1),
            // The first step is a pseudo improved-Euler step of two calls.
            SamplerKind::Pndm if steps > 1 => steps + 1,
            _ => steps,
        }
    }
}

/// The `[train]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub lr_schedule: LrSchedule,
    pub warmup_steps: u64,
    pub min_lr: f64,
    pub grad_clip_norm: f64,
    /// A loss or gradient norm that turns NaN or infinite rolls the run back to its last
    /// checkpoint with half the learning rate, at most this many times in a row (0: the run
    /// stops at once).
    pub max_rollbacks: u32,
    pub grad_accum_steps: usize,
    pub ema_decay: f64,
    pub ema_warmup: bool,
    pub log_every: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub sample_every: u64,
    /// How t is drawn: uniformly, or importance-sampled by the loss's second moment. (Saved
    /// configs from before the rename call it `timestep_sampler`.)
    #[serde(alias = "timestep_sampler")]
    pub timestep_draw: TimestepSampling,
    /// Steps between per-band MSEs on the held-out images (0 = never); unset: about six per
    /// run when images are held out ([`RunConfig::eval_intervals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Held-out images the in-training evaluation uses (the first ones of the split).
    pub eval_images: usize,
    /// Steps between held-out bits/dim (0 = never); unset: twice per run when images are held
    /// out and the data are 8-bit images in [-1, 1] ([`RunConfig::eval_intervals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpd_every: Option<u64>,
    /// Stride of the bits/dim estimate (see `oxidiff_diffusion::bound_timesteps`).
    pub bpd_stride: usize,
    /// Class-conditional models: probability that a training label is replaced by "no class",
    /// which trains the unconditional model classifier-free guidance needs.
    pub label_dropout: f64,
    /// Text-conditioned models: probability that a training image is shown with the empty
    /// prompt instead of its caption, the unconditional model of classifier-free guidance
    /// (kohya's `caption_dropout_rate`, diffusers' `proportion_empty_prompts`).
    pub caption_dropout: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1500,
            batch_size: 32,
            lr: 1e-3,
            optimizer: OptimizerKind::AdamW,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.9,
            nesterov: false,
            lr_schedule: LrSchedule::Cosine,
            warmup_steps: 100,
            min_lr: 1e-5,
            grad_clip_norm: 1.0,
            max_rollbacks: 3,
            grad_accum_steps: 1,
            ema_decay: 0.999,
            ema_warmup: true,
            log_every: 50,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            sample_every: 500,
            timestep_draw: TimestepSampling::Uniform,
            eval_every: None,
            eval_images: 64,
            bpd_every: None,
            bpd_stride: 20,
            label_dropout: 0.1,
            caption_dropout: 0.1,
        }
    }
}

/// The `[sample]` section: how grids are drawn during training and by `oxidiff sample`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    pub sampler: SamplerKind,
    pub steps: usize,
    pub eta: f64,
    pub num: usize,
    pub use_ema: bool,
    /// Euler, Heun and DPM-Solver++: step through Karras et al.'s σ schedule (ρ = 7) instead of
    /// the respaced training σs.
    pub karras_sigmas: bool,
    /// Euler and Heun: S_churn, the noise re-injected along the way (0 = the deterministic ODE).
    pub s_churn: f64,
    /// Text-to-image runs: the classifier-free guidance scale of the grids drawn while
    /// training, and `oxidiff sample --prompt`'s default (diffusers' 7.5).
    pub guidance_scale: f64,
}

impl SampleConfig {
    /// The Euler/Heun options these settings choose (σ schedule and churn).
    pub fn karras_options(&self) -> KarrasOptions {
        KarrasOptions {
            karras_sigmas: self.karras_sigmas,
            s_churn: self.s_churn,
            ..KarrasOptions::default()
        }
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            sampler: SamplerKind::Ddim,
            steps: 50,
            eta: 0.0,
            num: 64,
            use_ema: true,
            karras_sigmas: false,
            s_churn: 0.0,
            guidance_scale: 7.5,
        }
    }
}

/// A whole run: saved as `config.toml` next to every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub seed: u64,
    /// What the run trains: a diffusion model (`[model]`, `[diffusion]`) or an autoencoder
    /// (`[autoencoder]`).
    pub task: TaskKind,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
    pub train: TrainConfig,
    pub sample: SampleConfig,
    pub autoencoder: AutoencoderSection,
    /// A diffusion run in an autoencoder's latent space (latent diffusion).
    pub latent: LatentSection,
    /// A text-to-image run's text encoder.
    pub text: TextSection,
}

/// The documented default configuration printed by `oxidiff config default`.
///
/// A test checks that it parses to exactly [`RunConfig::default`].
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../default_config.toml");

/// Steps between the held-out evaluations of a run while it trains (0 = never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalIntervals {
    /// Per-band ε-MSE.
    pub band_mse: u64,
    /// Bits/dim.
    pub bpd: u64,
}

impl RunConfig {
    /// The in-training evaluation intervals: `train.eval_every` and `train.bpd_every` where set;
    /// unset, a sixth (band MSE) and half (bits/dim) of `train.steps` when the run holds images
    /// out — bits/dim only for 8-bit images in [-1, 1], which its decoder assumes — else never.
    pub fn eval_intervals(&self, held_out: bool) -> EvalIntervals {
        let t = &self.train;
        // A latent run's latents are no 8-bit data: its bound counts latent dimensions at the
        // decoder's 8-bit bins, which `oxidiff eval` reports when asked, not by default.
        let eight_bit = self.data.standardize == oxidiff_data::Standardize::MinusOneOne
            && self.latent.autoencoder.is_none();
        let auto = |fraction: u64, applies: bool| match held_out && applies {
            true => (t.steps / fraction).max(1),
            false => 0,
        };
        EvalIntervals {
            band_mse: t.eval_every.unwrap_or_else(|| auto(6, true)),
            bpd: t.bpd_every.unwrap_or_else(|| auto(2, eight_bit)),
        }
    }

    /// Parses TOML text, applies `section.key=value` overrides and validates the result.
    ///
    /// `origin` names the text in messages (a file path, or "the default config").
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        let value: toml::Value = toml::from_str(text).map_err(|e| TrainError::Config {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        Self::from_value(value, origin, overrides)
    }

    /// Applies `section.key=value` overrides to a parsed TOML tree, deserialises and validates
    /// the result: the one path every config (file, text, or section value) takes.
    fn from_value(
        mut value: toml::Value,
        origin: &str,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        for assignment in overrides {
            apply_override(&mut value, assignment)?;
        }
        // A bad value may come from the file or from an override: say both were read.
        let origin = &match overrides {
            [] => origin.to_string(),
            _ => format!("{origin} with the --set overrides"),
        };
        let config: RunConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            TrainError::Config {
                origin: origin.to_string(),
                message: format!("{path}: {}", e.into_inner()),
            }
        })?;
        config.validate().map_err(|message| TrainError::Config {
            origin: origin.to_string(),
            message,
        })?;
        Ok(config)
    }

    /// `data` with `data.key=value` overrides applied, deserialised and validated as
    /// [`RunConfig::from_toml_str`] does a `[data]` section alone (the other sections at their
    /// defaults); messages name `origin` and the bad key or assignment.
    pub(crate) fn data_with_overrides(
        data: &DataConfig,
        origin: &str,
        overrides: &[String],
    ) -> Result<DataConfig, TrainError> {
        let section = toml::Value::try_from(data).map_err(|e| TrainError::Config {
            origin: origin.to_string(),
            message: format!("cannot re-read it: {e}"),
        })?;
        let root = toml::Value::Table(toml::Table::from_iter([("data".to_string(), section)]));
        Ok(Self::from_value(root, origin, overrides)?.data)
    }

    /// Reads, overrides and validates a config file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// The defaults with overrides applied.
    pub fn default_with(overrides: &[String]) -> Result<Self, TrainError> {
        Self::from_toml_str("", "the default config", overrides)
    }

    /// Serialises the config as TOML (what is saved with every run).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serialises")
    }

    /// Checks values that parse but cannot work; the message starts with the key.
    pub fn validate(&self) -> Result<(), String> {
        self.latent.validate()?;
        self.text.validate(self.task, self.model.num_classes)?;
        if self.latent.autoencoder.is_some() {
            self.validate_latent()?;
        }
        // DataError names its key with the section already (`data.path: …`).
        self.data.validate().map_err(|e| e.to_string())?;
        // A latent run's UNet takes its size and channels from the autoencoder, which
        // `unet()` reads; its model section alone is not the network.
        if self.latent.autoencoder.is_none() {
            self.model.resolve().map_err(|e| e.to_string())?;
        }
        if self.task == TaskKind::Autoencoder {
            self.autoencoder.resolve()?;
            if self.model.init_from.is_some() {
                return Err(
                    "model.init_from: initialises a diffusion UNet, and an autoencoder \
                     run (task = \"autoencoder\") has none"
                        .into(),
                );
            }
        }
        self.diffusion
            .validate()
            .map_err(|e| format!("diffusion.{e}"))?;
        if self.data.standardize == oxidiff_data::Standardize::PerChannel
            && (self.diffusion.loss != LossKind::Simple || self.train.bpd_every.unwrap_or(0) > 0)
        {
            return Err(
                "data.standardize: \"per-channel\" is not 8-bit data in [-1, 1], which the \
                 bound's discretised decoder (diffusion.loss = \"hybrid\" | \"vlb\", \
                 train.bpd_every) assumes; use \"minus-one-one\" with them"
                    .into(),
            );
        }
        if self.data.standardize == oxidiff_data::Standardize::PerChannel
            && self.diffusion.clip_sample
        {
            return Err(
                "data.standardize: \"per-channel\" moves the images out of [-1, 1], where \
                        the samplers clip x̂₀; set diffusion.clip_sample = false with it"
                    .into(),
            );
        }
        let t = &self.train;
        let positive_f = [("train.lr", t.lr), ("train.eps", t.eps)];
        for (key, v) in positive_f {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key}: must be a positive number, got {v}"));
            }
        }
        let unit = [
            ("train.beta1", t.beta1),
            ("train.beta2", t.beta2),
            ("train.momentum", t.momentum),
            ("train.label_dropout", t.label_dropout),
            ("train.caption_dropout", t.caption_dropout),
            ("train.ema_decay", t.ema_decay),
        ];
        for (key, v) in unit {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{key}: must be in [0, 1), got {v}"));
            }
        }
        let non_negative = [
            ("train.weight_decay", t.weight_decay),
            ("train.min_lr", t.min_lr),
            ("train.grad_clip_norm", t.grad_clip_norm),
        ];
        for (key, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key}: must be zero or positive, got {v}"));
            }
        }
        if t.min_lr > t.lr {
            return Err(format!(
                "train.min_lr: {} exceeds train.lr {}",
                t.min_lr, t.lr
            ));
        }
        let at_least_one = [
            ("train.steps", t.steps),
            ("train.batch_size", t.batch_size as u64),
            ("train.grad_accum_steps", t.grad_accum_steps as u64),
            ("train.log_every", t.log_every),
            ("train.checkpoint_every", t.checkpoint_every),
            ("train.keep_checkpoints", t.keep_checkpoints as u64),
            ("train.sample_every", t.sample_every),
            ("train.eval_images", t.eval_images as u64),
            ("train.bpd_stride", t.bpd_stride as u64),
            ("sample.steps", self.sample.steps as u64),
            ("sample.num", self.sample.num as u64),
        ];
        for (key, v) in at_least_one {
            if v == 0 {
                return Err(format!("{key}: must be at least 1, got 0"));
            }
        }
        if self.sample.steps > self.diffusion.num_train_timesteps {
            return Err(format!(
                "sample.steps: {} exceeds diffusion.num_train_timesteps {}",
                self.sample.steps, self.diffusion.num_train_timesteps
            ));
        }
        if !(self.sample.s_churn.is_finite() && self.sample.s_churn >= 0.0) {
            return Err(format!(
                "sample.s_churn: must be zero or positive, got {}",
                self.sample.s_churn
            ));
        }
        if !self.sample.guidance_scale.is_finite() {
            return Err(format!(
                "sample.guidance_scale: must be a finite number, got {}",
                self.sample.guidance_scale
            ));
        }
        check_eta(self.sample.eta).map_err(|e| format!("sample.{e}"))?;
        Ok(())
    }
}

/// Applies one `section.key=value` assignment to the TOML tree. The value is read as TOML
/// (`1e-4`, `true`, `"cosine"`, `[1, 2]`), and as a plain string when it is not valid TOML, so
/// `train.optimizer=sgd` works without quotes.
fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<(), TrainError> {
    let bad = |message: String| TrainError::Override {
        assignment: assignment.to_string(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| bad("expected section.key=value".into()))?;
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(bad("the key is empty".into()));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut table) => table.remove("v").expect("the key v was just written"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .ok_or_else(|| bad(format!("`{part}` is not inside a table")))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().ok_or_else(|| {
        bad(format!(
            "the parent of `{}` is not a table",
            parts[parts.len() - 1]
        ))
    })?;
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `oxidiff eval --split test` did before [`RunConfig::data_with_overrides`]: the
    /// `[data]` section written as TOML text and read back with the overrides.
    fn through_text(data: &DataConfig, overrides: &[String]) -> Result<DataConfig, TrainError> {
        let text = format!("[data]\n{}", toml::to_string(data).unwrap());
        Ok(RunConfig::from_toml_str(&text, "the run's [data] section", overrides)?.data)
    }

    #[test]
    fn data_overrides_match_the_text_round_trip() {
        let mut data = DataConfig {
            validation_fraction: 0.3,
            ..DataConfig::default()
        };
        data.path = Some("/runs/images".into());
        let cases: &[&[&str]] = &[
            &[],
            &["data.source=\"folder\"", "data.path=\"/elsewhere\""],
            &["data.source=npy", "data.validation_fraction=0"],
            &["data.validation_fraction=2"],
            &["data.no_such_key=1"],
            &["data.validation_fraction=\"half\""],
            &["data.source"],
            &["data.=1"],
            &["model.preset=\"no-such-preset\""],
        ];
        for case in cases {
            let overrides: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            let origin = "the run's [data] section";
            let direct = RunConfig::data_with_overrides(&data, origin, &overrides);
            match (direct, through_text(&data, &overrides)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{case:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{case:?}"),
                (a, b) => panic!("{case:?}: {a:?} vs {b:?}"),
            }
        }
    }
}
