//! diffusers' scheduler config (`scheduler/scheduler_config.json` of a pipeline) for oxidiff's
//! `[diffusion]` section, and back.
//!
//! The names map as `crates/oxidiff-diffusion/tests/` checks them against diffusers 0.42.1's
//! `DDPMScheduler`, `DDIMScheduler` and `PNDMScheduler` (`tools/reference/diffusers_golden.py`,
//! `pndm_golden.py`):
//!
//! | oxidiff `[diffusion]` | diffusers |
//! |---|---|
//! | `beta_schedule` linear / scaled-linear / cosine / sigmoid | `beta_schedule` linear / scaled_linear / squaredcos_cap_v2 / sigmoid |
//! | `prediction` epsilon / sample / velocity | `prediction_type` epsilon / sample / v_prediction |
//! | `ddpm_variance` fixed-small / fixed-large, `variance_type` fixed | `variance_type` fixed_small / fixed_large |
//! | `variance_type` learned | `variance_type` learned_range |
//! | `timestep_spacing` leading / trailing / linspace | `timestep_spacing` |
//! | `steps_offset` | `steps_offset` (shifts leading timesteps) |
//! | `set_alpha_to_one` | `set_alpha_to_one` (DDIM, PNDM) |
//! | `rescale_zero_terminal_snr` | `rescale_betas_zero_snr` |
//! | `clip_sample` | `clip_sample` (with `clip_sample_range` 1) |
//!
//! Every `[diffusion]` value oxidiff has is expressible, so an export refuses none; the keys
//! that only shape the training loss (`loss`, `vlb_weight`, `min_snr_gamma`, `offset_noise`)
//! have no place in a scheduler and are not written. Reading, oxidiff refuses by key and value
//! what it cannot compute: given `trained_betas`, dynamic `thresholding`, another
//! `clip_sample_range`, diffusers' raw `learned` log-variance, PNDM's Runge–Kutta warm-up
//! (`skip_prk_steps = false`), and other scheduler classes. A PNDMScheduler (Stable Diffusion
//! 1.x's) samples with oxidiff's `pndm` by default ([`scheduler_sampler`]).

use std::path::Path;

use oxidiff_diffusion::{
    BetaSchedule, DdpmVariance, DiffusionConfig, LossKind, Prediction, TimestepSpacing,
    VarianceType,
};
use oxidiff_models::{ConfigKeys, DIFFUSERS_VERSION};
use serde_json::{Value, json};

use crate::config::SamplerKind;
use crate::error::TrainError;

/// The scheduler's file in a pipeline's `scheduler/` folder.
pub const SCHEDULER_CONFIG: &str = "scheduler_config.json";

/// Every key of diffusers 0.42.1's `DDPMScheduler.__init__`.
const DDPM_KEYS: [&str; 15] = [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "variance_type",
    "clip_sample",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "clip_sample_range",
    "sample_max_value",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
];

/// The keys of `DDIMScheduler.__init__` and `PNDMScheduler.__init__` that `DDPMScheduler`
/// lacks. A config carries keys of another class for `from_config` to move between them
/// (Stable Diffusion 1.x's PNDM config has `clip_sample` for DDIM; DDIM keeps `variance_type`);
/// diffusers ignores the ones a class does not take, and so does oxidiff.
const OTHER_CLASS_KEYS: [&str; 2] = ["set_alpha_to_one", "skip_prk_steps"];

/// The scheduler classes whose noise schedules oxidiff reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchedulerClass {
    Ddpm,
    Ddim,
    Pndm,
}

impl SchedulerClass {
    /// The class a config's `_class_name` names (absent: `DDPMScheduler`, diffusers' default
    /// for a bare scheduler config), `None` for one oxidiff does not read.
    fn named(json: &Value) -> Option<Self> {
        match json
            .get("_class_name")
            .map_or(Some("DDPMScheduler"), Value::as_str)
        {
            Some("DDPMScheduler") => Some(Self::Ddpm),
            Some("DDIMScheduler") => Some(Self::Ddim),
            Some("PNDMScheduler") => Some(Self::Pndm),
            _ => None,
        }
    }

    fn of(keys: &ConfigKeys<'_, TrainError>, json: &Value) -> Result<Self, TrainError> {
        Self::named(json).ok_or_else(|| {
            keys.refuse(
                "_class_name",
                "is not supported: oxidiff reads the noise schedule of a DDPMScheduler, a \
                 DDIMScheduler or a PNDMScheduler",
            )
        })
    }
}

/// diffusers' `DDPMScheduler` config for `config`: every key its `__init__` takes (so nothing
/// is left to a default a later release might change), as `save_pretrained` writes them.
///
/// # Errors
/// An invalid `[diffusion]` section (the message names the key).
pub fn scheduler_config_json(config: &DiffusionConfig) -> Result<Value, TrainError> {
    config.validate()?;
    // Exhaustive matches: a new oxidiff option has to say here what diffusers calls it, or
    // refuse by key and value.
    let beta_schedule = match config.beta_schedule {
        BetaSchedule::Linear => "linear",
        BetaSchedule::ScaledLinear => "scaled_linear",
        BetaSchedule::Cosine => "squaredcos_cap_v2",
        BetaSchedule::Sigmoid => "sigmoid",
    };
    let prediction_type = match config.prediction {
        Prediction::Epsilon => "epsilon",
        Prediction::Sample => "sample",
        Prediction::Velocity => "v_prediction",
    };
    let variance_type = match (config.variance_type, config.ddpm_variance) {
        // Nichol & Dhariwal's interpolation between log β̃_t and log β_t is diffusers'
        // learned_range (diffusers' "learned" is a raw log-variance).
        (VarianceType::Learned, _) => "learned_range",
        (VarianceType::Fixed, DdpmVariance::FixedSmall) => "fixed_small",
        (VarianceType::Fixed, DdpmVariance::FixedLarge) => "fixed_large",
    };
    let mut json = json!({
        "_class_name": "DDPMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        "num_train_timesteps": config.num_train_timesteps,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "beta_schedule": beta_schedule,
        "trained_betas": null,
        "variance_type": variance_type,
        "clip_sample": config.clip_sample,
        "prediction_type": prediction_type,
        "thresholding": false,
        "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
        "timestep_spacing": spacing_name(config.timestep_spacing),
        "steps_offset": config.steps_offset,
        "rescale_betas_zero_snr": config.rescale_zero_terminal_snr,
    });
    if !config.set_alpha_to_one {
        // Not a DDPMScheduler key: carried for DDIMScheduler/PNDMScheduler.from_config, as
        // Stable Diffusion's configs carry it (DDPMScheduler ignores it).
        json["set_alpha_to_one"] = json!(false);
    }
    Ok(json)
}

fn spacing_name(spacing: TimestepSpacing) -> &'static str {
    match spacing {
        TimestepSpacing::Leading => "leading",
        TimestepSpacing::Trailing => "trailing",
        TimestepSpacing::Linspace => "linspace",
    }
}

/// The `[diffusion]` section a `DDPMScheduler`, `DDIMScheduler` or `PNDMScheduler` config
/// describes (`source`: its file, named in errors). A key left out has that class's default, as
/// `from_pretrained` gives it (PNDM: `set_alpha_to_one = false`, and `clip_sample = false`
/// since it never clips). The keys that only shape a training loss keep oxidiff's defaults,
/// except that a learned variance gets the hybrid loss that trains it.
///
/// # Errors
/// A key oxidiff cannot compute, named with its value; a key none of the three schedulers
/// has; a schedule oxidiff's `[diffusion]` checks refuse.
pub fn diffusion_config_from_scheduler_json(
    json: &Value,
    source: &Path,
) -> Result<DiffusionConfig, TrainError> {
    let keys = ConfigKeys::new(json, source, |path, message| {
        TrainError::diffusers(path, message)
    })?;
    let class = SchedulerClass::of(&keys, json)?;
    for key in keys.object().keys() {
        let known = DDPM_KEYS.contains(&key.as_str())
            || OTHER_CLASS_KEYS.contains(&key.as_str())
            || ["_class_name", "_diffusers_version"].contains(&key.as_str());
        if !known {
            return Err(keys.refuse(key, "is not a key of diffusers 0.42.1's scheduler"));
        }
    }
    keys.require(
        "trained_betas",
        Value::Null,
        "oxidiff computes β_t from beta_schedule",
    )?;
    keys.require(
        "thresholding",
        json!(false),
        "oxidiff clips x̂₀ to [-1, 1] (clip_sample) but has no dynamic thresholding",
    )?;
    // PNDMScheduler's default is false, which `require` (absent = the one value) cannot say.
    if class == SchedulerClass::Pndm && keys.get("skip_prk_steps", json!(false)) != json!(true) {
        return Err(keys.refuse(
            "skip_prk_steps",
            "is not supported: oxidiff's pndm is PLMS without the Runge-Kutta warm-up, as \
             Stable Diffusion 1.x's scheduler (only skip_prk_steps = true is; PNDMScheduler's \
             default is false)",
        ));
    }
    let beta_schedule = match keys.get("beta_schedule", json!("linear")).as_str() {
        Some("linear") => BetaSchedule::Linear,
        Some("scaled_linear") => BetaSchedule::ScaledLinear,
        Some("squaredcos_cap_v2") => BetaSchedule::Cosine,
        Some("sigmoid") => BetaSchedule::Sigmoid,
        _ => {
            return Err(keys.refuse(
                "beta_schedule",
                "is not one oxidiff has (linear, scaled_linear, squaredcos_cap_v2, sigmoid)",
            ));
        }
    };
    let prediction = match keys.get("prediction_type", json!("epsilon")).as_str() {
        Some("epsilon") => Prediction::Epsilon,
        Some("sample") => Prediction::Sample,
        Some("v_prediction") => Prediction::Velocity,
        _ => {
            return Err(keys.refuse(
                "prediction_type",
                "is not one oxidiff has (epsilon, sample, v_prediction)",
            ));
        }
    };
    if class == SchedulerClass::Pndm && prediction == Prediction::Sample {
        return Err(keys.refuse(
            "prediction_type",
            "is not one PNDMScheduler steps along (epsilon, v_prediction)",
        ));
    }
    let (variance_type, ddpm_variance) = match class {
        // DDIM and PNDM have no reverse-step variance of their own: DDPMScheduler's default.
        SchedulerClass::Ddim | SchedulerClass::Pndm => {
            (VarianceType::Fixed, DdpmVariance::FixedSmall)
        }
        SchedulerClass::Ddpm => match keys.get("variance_type", json!("fixed_small")).as_str() {
            // The _log variants compute the same σ_t through its logarithm.
            Some("fixed_small" | "fixed_small_log") => {
                (VarianceType::Fixed, DdpmVariance::FixedSmall)
            }
            Some("fixed_large" | "fixed_large_log") => {
                (VarianceType::Fixed, DdpmVariance::FixedLarge)
            }
            Some("learned_range") => (VarianceType::Learned, DdpmVariance::FixedSmall),
            _ => {
                return Err(keys.refuse(
                    "variance_type",
                    "is not supported: oxidiff's variances are fixed_small, fixed_large and \
                     learned_range (an interpolation between them; diffusers' \"learned\" is a \
                     raw log-variance)",
                ));
            }
        },
    };
    let timestep_spacing = match keys.get("timestep_spacing", json!("leading")).as_str() {
        Some("leading") => TimestepSpacing::Leading,
        Some("trailing") => TimestepSpacing::Trailing,
        Some("linspace") => TimestepSpacing::Linspace,
        _ => {
            return Err(keys.refuse(
                "timestep_spacing",
                "is not one oxidiff has (leading, trailing, linspace)",
            ));
        }
    };
    let uint_key = |key: &str, default: u64| {
        keys.get(key, json!(default))
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| keys.refuse(key, "is not a non-negative integer"))
    };
    let steps_offset = uint_key("steps_offset", 0)?;
    let bool_key = |key: &str, default: bool| match keys.get(key, json!(default)) {
        Value::Bool(b) => Ok(b),
        _ => Err(keys.refuse(key, "is not true or false")),
    };
    // DDPMScheduler has no such key; oxidiff's exports carry it when false.
    let set_alpha_to_one = bool_key("set_alpha_to_one", class != SchedulerClass::Pndm)?;
    let clip_sample = bool_key("clip_sample", class != SchedulerClass::Pndm)?;
    if clip_sample && keys.number("clip_sample_range", 1.0)? != 1.0 {
        return Err(keys.refuse(
            "clip_sample_range",
            "is not supported: oxidiff clips x̂₀ to [-1, 1] (only clip_sample_range = 1 is)",
        ));
    }
    let rescale_zero_terminal_snr = bool_key("rescale_betas_zero_snr", false)?;
    let num_train_timesteps = uint_key("num_train_timesteps", 1000)?;
    let config = DiffusionConfig {
        num_train_timesteps,
        beta_schedule,
        beta_start: keys.number("beta_start", 1e-4)?,
        beta_end: keys.number("beta_end", 0.02)?,
        rescale_zero_terminal_snr,
        prediction,
        ddpm_variance,
        timestep_spacing,
        steps_offset,
        set_alpha_to_one,
        clip_sample,
        variance_type,
        loss: match variance_type {
            VarianceType::Fixed => LossKind::Simple,
            VarianceType::Learned => LossKind::Hybrid,
        },
        ..DiffusionConfig::default()
    };
    config.validate().map_err(|e| {
        TrainError::diffusers(
            source,
            format!("describes a schedule oxidiff refuses (diffusion.{e}, in oxidiff's names)"),
        )
    })?;
    Ok(config)
}

/// The sampler a pipeline with this scheduler config runs by default, as diffusers' pipeline
/// steps with its scheduler: `pndm` for a PNDMScheduler, else oxidiff's default `ddim`.
pub fn scheduler_sampler(json: &Value) -> SamplerKind {
    match SchedulerClass::named(json) {
        Some(SchedulerClass::Pndm) => SamplerKind::Pndm,
        _ => SamplerKind::Ddim,
    }
}
