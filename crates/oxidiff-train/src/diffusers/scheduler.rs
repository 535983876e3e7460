//! diffusers' scheduler config (`scheduler/scheduler_config.json` of a pipeline) for oxidiff's
//! `[diffusion]` section, and back.
//!
//! The names map as `crates/oxidiff-diffusion/tests/` checks them against diffusers 0.42.1's
//! `DDPMScheduler` and `DDIMScheduler` (`tools/reference/diffusers_golden.py`):
//!
//! | oxidiff `[diffusion]` | diffusers |
//! |---|---|
//! | `beta_schedule` linear / scaled-linear / cosine / sigmoid | `beta_schedule` linear / scaled_linear / squaredcos_cap_v2 / sigmoid |
//! | `prediction` epsilon / sample / velocity | `prediction_type` epsilon / sample / v_prediction |
//! | `ddpm_variance` fixed-small / fixed-large, `variance_type` fixed | `variance_type` fixed_small / fixed_large |
//! | `variance_type` learned | `variance_type` learned_range |
//! | `timestep_spacing` leading / trailing / linspace | `timestep_spacing` (with `steps_offset` 0) |
//! | `rescale_zero_terminal_snr` | `rescale_betas_zero_snr` |
//! | `clip_sample` | `clip_sample` (with `clip_sample_range` 1) |
//!
//! Every `[diffusion]` value oxidiff has is expressible, so an export refuses none; the keys
//! that only shape the training loss (`loss`, `vlb_weight`, `min_snr_gamma`, `offset_noise`)
//! have no place in a scheduler and are not written. Reading, oxidiff refuses by key and value
//! what it cannot compute: given `trained_betas`, dynamic `thresholding`, another
//! `clip_sample_range`, diffusers' raw `learned` log-variance, a `steps_offset` that moves
//! `leading` timesteps, DDIM's `set_alpha_to_one = false`, and other scheduler classes.

use std::path::Path;

use oxidiff_diffusion::{
    BetaSchedule, DdpmVariance, DiffusionConfig, LossKind, Prediction, TimestepSpacing,
    VarianceType,
};
use oxidiff_models::{ConfigKeys, DIFFUSERS_VERSION};
use serde_json::{Value, json};

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

/// `DDIMScheduler.__init__`'s one key `DDPMScheduler` lacks (it has no `variance_type`).
const DDIM_ONLY_KEY: &str = "set_alpha_to_one";

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
    Ok(json!({
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
        "steps_offset": 0,
        "rescale_betas_zero_snr": config.rescale_zero_terminal_snr,
    }))
}

fn spacing_name(spacing: TimestepSpacing) -> &'static str {
    match spacing {
        TimestepSpacing::Leading => "leading",
        TimestepSpacing::Trailing => "trailing",
        TimestepSpacing::Linspace => "linspace",
    }
}

/// The `[diffusion]` section a `DDPMScheduler` or `DDIMScheduler` config describes
/// (`source`: its file, named in errors). A key left out has diffusers' default, as
/// `from_pretrained` gives it. The keys that only shape a training loss keep oxidiff's
/// defaults, except that a learned variance gets the hybrid loss that trains it.
///
/// # Errors
/// A key oxidiff cannot compute, named with its value; a key neither scheduler has; a
/// schedule oxidiff's `[diffusion]` checks refuse.
pub fn diffusion_config_from_scheduler_json(
    json: &Value,
    source: &Path,
) -> Result<DiffusionConfig, TrainError> {
    let keys = ConfigKeys::new(json, source, |path, message| {
        TrainError::diffusers(path, message)
    })?;
    let class = keys.get("_class_name", json!("DDPMScheduler"));
    let ddim = match class.as_str() {
        Some("DDPMScheduler") => false,
        Some("DDIMScheduler") => true,
        _ => {
            return Err(keys.refuse(
                "_class_name",
                "is not supported: oxidiff reads the noise schedule of a DDPMScheduler or a \
                 DDIMScheduler",
            ));
        }
    };
    for key in keys.object().keys() {
        // DDIM has DDPM's keys but variance_type, which DDIMScheduler.from_config(ddpm.config)
        // keeps (and ignores): every DDPM key passes for both.
        let known = DDPM_KEYS.contains(&key.as_str())
            || (ddim && key == DDIM_ONLY_KEY)
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
    if ddim {
        keys.require(
            DDIM_ONLY_KEY,
            json!(true),
            "oxidiff's DDIM steps to ᾱ = 1 after its last timestep",
        )?;
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
    let (variance_type, ddpm_variance) = match ddim {
        // DDIM has no reverse-step variance of its own: DDPMScheduler's default.
        true => (VarianceType::Fixed, DdpmVariance::FixedSmall),
        false => match keys.get("variance_type", json!("fixed_small")).as_str() {
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
    // steps_offset only shifts leading timesteps (diffusers adds it there alone).
    if timestep_spacing == TimestepSpacing::Leading && keys.number("steps_offset", 0.0)? != 0.0 {
        return Err(keys.refuse(
            "steps_offset",
            "is not supported with timestep_spacing \"leading\": oxidiff's leading timesteps \
             start at 0 (only steps_offset = 0 is)",
        ));
    }
    let clip_sample = match keys.get("clip_sample", json!(true)) {
        Value::Bool(b) => b,
        _ => return Err(keys.refuse("clip_sample", "is not true or false")),
    };
    if clip_sample && keys.number("clip_sample_range", 1.0)? != 1.0 {
        return Err(keys.refuse(
            "clip_sample_range",
            "is not supported: oxidiff clips x̂₀ to [-1, 1] (only clip_sample_range = 1 is)",
        ));
    }
    let rescale_zero_terminal_snr = match keys.get("rescale_betas_zero_snr", json!(false)) {
        Value::Bool(b) => b,
        _ => return Err(keys.refuse("rescale_betas_zero_snr", "is not true or false")),
    };
    let num_train_timesteps = keys
        .get("num_train_timesteps", json!(1000))
        .as_u64()
        .ok_or_else(|| keys.refuse("num_train_timesteps", "is not a non-negative integer"))?
        as usize;
    let config = DiffusionConfig {
        num_train_timesteps,
        beta_schedule,
        beta_start: keys.number("beta_start", 1e-4)?,
        beta_end: keys.number("beta_end", 0.02)?,
        rescale_zero_terminal_snr,
        prediction,
        ddpm_variance,
        timestep_spacing,
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
