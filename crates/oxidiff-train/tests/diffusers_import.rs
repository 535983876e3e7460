//! diffusers' formats read here: scheduler configs mapped to `[diffusion]` and back in
//! diffusers' names (refusing by key and value what oxidiff cannot compute), and pipelines
//! saved by the real diffusers sampling here as diffusers samples them — DDIM over 10 steps
//! from the stored x_T, through `load_for_sampling` (`tests/fixtures/tiny_ddpm_pipeline/`: a
//! `DDPMPipeline` with a cosine, v-prediction, fixed-large, clipped schedule;
//! `tests/fixtures/tiny_latent_pipeline/`: unet/, vae/ and a `DDIMScheduler`, scaled-linear,
//! trailing with steps_offset 1). The fixtures were written by
//!
//! ```text
//! /opt/refenv/bin/python tools/reference/pipeline_check.py
//! ```
//!
//! (torch 2.15, diffusers 0.42.1), and this test measured (2026-12-02) 7.2e-7 on the pixel
//! pipeline's x_0 (|x_0| ≤ 1), 1.9e-5 on the latent one's unclipped x_0 (|x_0| up to 31) and
//! 7.7e-7 on its decoded images. The other direction (oxidiff's exports in diffusers) is in
//! tests/export.rs.
//!
//! Tolerance: 1e-4 on the largest absolute difference, of x_0 relative to its largest value
//! where that exceeds 1 (an untrained model's unclipped latents are large: x̂₀ divides by
//! √ᾱ_T at the first step): ten DDIM steps of float32 UNets, whose single forward passes agree
//! with diffusers' to ~1e-5 (oxidiff-models' tests/unet2d.rs), on schedules computed in
//! float64 here and float32 there.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_diffusion::{
    BetaSchedule, DdpmVariance, DiffusionConfig, LossKind, Prediction, TimestepSpacing,
    VarianceType,
};
use oxidiff_train::{
    SamplerKind, diffusion_config_from_scheduler_json, load_for_sampling, scheduler_config_json,
    scheduler_sampler,
};
use serde_json::json;

use common::{SCHEDULER_KEYS, ddim, max_abs_diff, sampling_fields, values};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

#[test]
fn scheduler_configs_map_both_ways_in_diffusers_names() {
    let source = Path::new("scheduler/scheduler_config.json");
    let cases = [
        (DiffusionConfig::default(), json!({})),
        (
            DiffusionConfig {
                beta_schedule: BetaSchedule::Cosine,
                prediction: Prediction::Velocity,
                ddpm_variance: DdpmVariance::FixedLarge,
                timestep_spacing: TimestepSpacing::Leading,
                clip_sample: false,
                ..DiffusionConfig::default()
            },
            json!({"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
                   "variance_type": "fixed_large", "timestep_spacing": "leading",
                   "clip_sample": false}),
        ),
        (
            DiffusionConfig {
                beta_schedule: BetaSchedule::ScaledLinear,
                beta_start: 0.00085,
                beta_end: 0.012,
                prediction: Prediction::Sample,
                variance_type: VarianceType::Learned,
                loss: LossKind::Hybrid,
                timestep_spacing: TimestepSpacing::Linspace,
                num_train_timesteps: 500,
                ..DiffusionConfig::default()
            },
            json!({"beta_schedule": "scaled_linear", "prediction_type": "sample",
                   "variance_type": "learned_range", "timestep_spacing": "linspace",
                   "num_train_timesteps": 500, "beta_start": 0.00085}),
        ),
        (
            DiffusionConfig {
                beta_schedule: BetaSchedule::Sigmoid,
                rescale_zero_terminal_snr: true,
                prediction: Prediction::Velocity,
                ..DiffusionConfig::default()
            },
            json!({"beta_schedule": "sigmoid", "rescale_betas_zero_snr": true}),
        ),
    ];
    for (config, expected) in &cases {
        let json = scheduler_config_json(config).unwrap();
        assert_eq!(json.as_object().unwrap().len(), SCHEDULER_KEYS.len());
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&json[key], value, "{key} of {config:?}");
        }
        let back = diffusion_config_from_scheduler_json(&json, source).unwrap();
        assert_eq!(sampling_fields(&back), sampling_fields(config));
    }
    // Absent keys are diffusers' defaults (leading spacing, unlike oxidiff's trailing).
    let back = diffusion_config_from_scheduler_json(&json!({}), source).unwrap();
    assert_eq!(back.timestep_spacing, TimestepSpacing::Leading);
    assert!(back.clip_sample);
    // DDIM's config, with DDPM's variance_type that DDIMScheduler.from_config keeps.
    let ddim = json!({"_class_name": "DDIMScheduler", "set_alpha_to_one": true,
                      "variance_type": "fixed_small", "steps_offset": 1,
                      "timestep_spacing": "trailing"});
    diffusion_config_from_scheduler_json(&ddim, source).unwrap();
    // Stable Diffusion 1.5's scheduler_config.json, word for word: PLMS from steps 981, 961, …,
    // 1 to ᾱ_0, its clip_sample there for DDIMScheduler.from_config.
    let sd15 = json!({
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
        "trained_betas": null, "clip_sample": false
    });
    let back = diffusion_config_from_scheduler_json(&sd15, source).unwrap();
    let expected = DiffusionConfig {
        beta_schedule: BetaSchedule::ScaledLinear,
        beta_start: 0.00085,
        beta_end: 0.012,
        timestep_spacing: TimestepSpacing::Leading,
        steps_offset: 1,
        set_alpha_to_one: false,
        clip_sample: false,
        ..DiffusionConfig::default()
    };
    assert_eq!(sampling_fields(&back), sampling_fields(&expected));
    assert_eq!(scheduler_sampler(&sd15), SamplerKind::Pndm);
    assert_eq!(scheduler_sampler(&ddim), SamplerKind::Ddim);
    // PNDM's own defaults: it never clips and ends at ᾱ_0.
    let pndm = diffusion_config_from_scheduler_json(
        &json!({"_class_name": "PNDMScheduler", "skip_prk_steps": true}),
        source,
    )
    .unwrap();
    assert!(!pndm.clip_sample && !pndm.set_alpha_to_one);
    // An export keeps both: steps_offset is a DDPMScheduler key, set_alpha_to_one is carried
    // for DDIM and PNDM when false.
    let json = scheduler_config_json(&expected).unwrap();
    assert_eq!(json["steps_offset"], json!(1));
    assert_eq!(json["set_alpha_to_one"], json!(false));
    let back = diffusion_config_from_scheduler_json(&json, source).unwrap();
    assert_eq!(sampling_fields(&back), sampling_fields(&expected));

    // What oxidiff cannot compute, refused by key and value.
    let refused = [
        (
            json!({"trained_betas": [0.1, 0.2]}),
            "trained_betas = [0.1,0.2]",
        ),
        (json!({"thresholding": true}), "thresholding = true"),
        (
            json!({"variance_type": "learned"}),
            "variance_type = \"learned\"",
        ),
        (
            json!({"beta_schedule": "laplace"}),
            "beta_schedule = \"laplace\"",
        ),
        (json!({"clip_sample_range": 2.0}), "clip_sample_range = 2.0"),
        (
            json!({"use_karras_sigmas": true}),
            "use_karras_sigmas = true",
        ),
        (
            json!({"_class_name": "EulerDiscreteScheduler"}),
            "_class_name = \"EulerDiscreteScheduler\"",
        ),
        (
            json!({"_class_name": "PNDMScheduler"}),
            "skip_prk_steps = absent (diffusers' default)",
        ),
        (
            json!({"_class_name": "PNDMScheduler", "skip_prk_steps": false}),
            "skip_prk_steps = false",
        ),
        (
            json!({"_class_name": "PNDMScheduler", "skip_prk_steps": true,
                   "prediction_type": "sample"}),
            "prediction_type = \"sample\"",
        ),
        (json!({"steps_offset": 1000}), "diffusion.steps_offset"),
        (json!({"steps_offset": -1}), "steps_offset = -1"),
        (
            json!({"rescale_betas_zero_snr": true}),
            "diffusion.rescale_zero_terminal_snr",
        ),
    ];
    for (json, key) in refused {
        let err = diffusion_config_from_scheduler_json(&json, source)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("scheduler/scheduler_config.json: ") && err.contains(key),
            "{json}: {err}"
        );
    }
}

/// `ddim_io.safetensors` of a fixture: float32 tensors by name.
fn read_io(path: &Path, device: &Device) -> HashMap<String, Tensor<4>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let data = TensorData::new(values, view.shape().to_vec());
            (name, Tensor::from_data(data, device))
        })
        .collect()
}

#[test]
fn pipelines_saved_by_diffusers_sample_here_as_diffusers_samples_them() {
    let device = Device::flex();
    for name in ["tiny_ddpm_pipeline", "tiny_latent_pipeline"] {
        let dir = fixture(name);
        let loaded = load_for_sampling(&dir, true, &device).unwrap();
        let d = &loaded.diffusion.config;
        if name == "tiny_ddpm_pipeline" {
            assert_eq!(
                (d.beta_schedule, d.prediction, d.ddpm_variance),
                (
                    BetaSchedule::Cosine,
                    Prediction::Velocity,
                    DdpmVariance::FixedLarge
                )
            );
            assert_eq!(
                (d.timestep_spacing, d.clip_sample),
                (TimestepSpacing::Leading, true)
            );
            assert!(loaded.latent.is_none());
            assert_eq!(loaded.image_shape().unwrap(), (8, 1));
        } else {
            assert_eq!(d.beta_schedule, BetaSchedule::ScaledLinear);
            assert_eq!(
                (d.timestep_spacing, d.clip_sample),
                (TimestepSpacing::Trailing, false)
            );
            assert_eq!(loaded.latent.as_ref().unwrap().scaling_factor, 0.5);
            assert_eq!(loaded.image_shape().unwrap(), (8, 1));
        }
        let mut io = read_io(&dir.join("ddim_io.safetensors"), &device);
        let x_0 = ddim(&loaded, io.remove("x_T").unwrap());
        let expected = values(io.remove("x_0").unwrap());
        let diff = max_abs_diff(&values(x_0.clone()), &expected);
        let scale = max_abs(&expected).max(1.0);
        eprintln!("{name}: DDIM x_0 max |oxidiff - diffusers| = {diff:.3e} (|x_0| max {scale:.3})");
        assert!(diff <= TOLERANCE * scale, "{name}: x_0 differs by {diff}");
        if let Some(images) = io.remove("images") {
            let diff = max_abs_diff(&values(loaded.to_images(x_0)), &values(images));
            eprintln!("{name}: decoded images max |oxidiff - diffusers| = {diff:.3e}");
            assert!(diff <= TOLERANCE, "{name}: images differ by {diff}");
        }
    }
}
