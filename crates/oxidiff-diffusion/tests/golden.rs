//! Golden tests against Hugging Face diffusers 0.42.1 (DDPMScheduler, also respaced, and
//! DDIMScheduler).
//!
//! Regenerate the golden files (tests/golden/*.json) from the repository root with
//!
//!     /opt/refenv/bin/python tools/reference/diffusers_golden.py
//!
//! (venv set-up in tools/reference/README.md).
//!
//! Tolerances. schedules.json is diffusers' own float32 schedule; this crate computes in float64:
//! - alphas_cumprod: 5e-6 relative (diffusers' float32 cumprod drifts up to 1.1e-6 over 1000
//!   steps, as the script prints), plus 6e-8/α_t for the float32 rounding of α_t = 1 − β_t itself,
//!   which dominates where β_t is near 1 (cosine's 0.999 cap: 1.3e-5 relative at t = 999);
//! - with the zero-terminal-SNR rescale, √ᾱ_t to 2e-7 absolute instead: diffusers computes
//!   √ᾱ_t − √ᾱ_{T−1} in float32 (ulp 6e-8 near 1), which cancels to ~1e-4 at the last steps
//!   (3.8e-5 relative in ᾱ_998 for scaled-linear);
//! - betas: 1e-5 relative plus 2e-7 absolute (diffusers' zero-SNR rescale forms β = 1 − α in
//!   float32, where one ulp of α ≈ 1 is 6e-8, large against β ≈ 1e-4);
//! - tensors (ddpm.json, ddim.json: diffusers' step code run on a float64 state, inputs float32):
//!   1e-5 relative to max(1, max|expected|) of each tensor. (diffusers' own float32 run is up to
//!   5e-5 off at t = 1, which is why the reference is computed in float64.)
//! - timesteps: exact.

mod common;

use common::{assert_close_scaled, tensor4, to_vec};
use oxidiff_diffusion::{
    BetaSchedule, DdpmVariance, DiffusionConfig, GaussianDiffusion, LossKind, NoiseSchedule,
    Prediction, TimestepSpacing, VarianceType, respace_timesteps,
    sample::{ddim_step, ddpm_step, respaced_ddpm_step},
};
use serde::Deserialize;

const TENSOR_RTOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Schedules {
    schedules: Vec<ScheduleCase>,
    respace: Vec<RespaceCase>,
}

#[derive(Deserialize)]
struct ScheduleCase {
    label: String,
    beta_schedule: BetaSchedule,
    beta_start: f64,
    beta_end: f64,
    num_train_timesteps: usize,
    rescale_zero_terminal_snr: bool,
    indices: Vec<usize>,
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

#[derive(Deserialize)]
struct RespaceCase {
    num_train_timesteps: usize,
    num_inference_steps: usize,
    timestep_spacing: TimestepSpacing,
    timesteps: Vec<i64>,
}

#[derive(Deserialize)]
struct Ddpm {
    shape: [usize; 4],
    x_start: Vec<f32>,
    noise: Vec<f32>,
    timesteps: Vec<usize>,
    add_noise: Vec<f32>,
    velocity: Vec<f32>,
    model_output: Vec<f32>,
    x_t: Vec<f32>,
    steps: Vec<DdpmCase>,
    respaced_steps: Vec<RespacedDdpmCase>,
}

#[derive(Deserialize)]
struct RespacedDdpmCase {
    prediction: Prediction,
    ddpm_variance: DdpmVariance,
    learned_variance: bool,
    clip_sample: bool,
    timestep_spacing: TimestepSpacing,
    num_inference_steps: usize,
    t: usize,
    prev_t: i64,
    model_output: Vec<f32>,
    variance_noise: Vec<f32>,
    prev_sample: Vec<f32>,
}

#[derive(Deserialize)]
struct DdpmCase {
    prediction: Prediction,
    ddpm_variance: DdpmVariance,
    clip_sample: bool,
    t: usize,
    variance_noise: Vec<f32>,
    pred_original_sample: Vec<f32>,
    prev_sample: Vec<f32>,
}

#[derive(Deserialize)]
struct Ddim {
    shape: [usize; 4],
    model_output: Vec<f32>,
    x_t: Vec<f32>,
    variance_noise: Vec<f32>,
    steps: Vec<DdimCase>,
}

#[derive(Deserialize)]
struct DdimCase {
    prediction: Prediction,
    timestep_spacing: TimestepSpacing,
    rescale_zero_terminal_snr: bool,
    clip_sample: bool,
    t: usize,
    prev_t: Option<usize>,
    eta: f64,
    pred_original_sample: Vec<f32>,
    prev_sample: Vec<f32>,
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_rel(actual: f64, expected: f64, rtol: f64, atol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= rtol * expected.abs() + atol,
        "{what}: got {actual:e}, diffusers {expected:e}"
    );
}

#[test]
fn beta_schedules_match_diffusers() {
    let golden: Schedules = load("schedules.json");
    assert_eq!(golden.schedules.len(), 9);
    for case in &golden.schedules {
        let cfg = DiffusionConfig {
            num_train_timesteps: case.num_train_timesteps,
            beta_schedule: case.beta_schedule,
            beta_start: case.beta_start,
            beta_end: case.beta_end,
            rescale_zero_terminal_snr: case.rescale_zero_terminal_snr,
            // Zero terminal SNR needs a parameterisation other than ε (see validate).
            prediction: Prediction::Velocity,
            ..Default::default()
        };
        let s = NoiseSchedule::new(&cfg).unwrap();
        for (k, &i) in case.indices.iter().enumerate() {
            let what = format!("{} t={i}", case.label);
            assert_rel(
                s.betas[i],
                case.betas[k],
                1e-5,
                2e-7,
                &format!("{what} beta"),
            );
            if case.rescale_zero_terminal_snr {
                assert_rel(
                    s.alphas_cumprod[i].sqrt(),
                    case.alphas_cumprod[k].sqrt(),
                    0.0,
                    2e-7,
                    &format!("{what} sqrt(alphas_cumprod)"),
                );
                continue;
            }
            let alpha_rounding = 6e-8 / s.alphas[i].max(f64::MIN_POSITIVE);
            assert_rel(
                s.alphas_cumprod[i],
                case.alphas_cumprod[k],
                5e-6 + alpha_rounding,
                0.0,
                &format!("{what} alphas_cumprod"),
            );
        }
        if case.rescale_zero_terminal_snr {
            assert_eq!(*case.alphas_cumprod.last().unwrap(), 0.0);
            assert_eq!(*s.alphas_cumprod.last().unwrap(), 0.0);
        }
    }
}

#[test]
fn respaced_timesteps_match_ddim_set_timesteps() {
    let golden: Schedules = load("schedules.json");
    for case in &golden.respace {
        let ours = respace_timesteps(
            case.num_train_timesteps,
            case.num_inference_steps,
            case.timestep_spacing,
        )
        .unwrap();
        let mut theirs = case.timesteps.clone();
        if theirs.len() > case.num_inference_steps {
            // numpy's arange overshoot for `trailing` (see respace_timesteps): diffusers appends
            // one spurious −1 there, which this crate drops.
            assert_eq!(case.timestep_spacing, TimestepSpacing::Trailing);
            assert_eq!(theirs.pop(), Some(-1));
        }
        let ours: Vec<i64> = ours.iter().map(|&t| t as i64).collect();
        assert_eq!(
            ours, theirs,
            "T={} n={} {:?}",
            case.num_train_timesteps, case.num_inference_steps, case.timestep_spacing
        );
    }
}

#[test]
fn q_sample_and_velocity_match_add_noise_and_get_velocity() {
    let g: Ddpm = load("ddpm.json");
    let diffusion = GaussianDiffusion::new(DiffusionConfig::default()).unwrap();
    let x_start = tensor4(&g.x_start, g.shape);
    let noise = tensor4(&g.noise, g.shape);
    let x_t = diffusion.q_sample(x_start.clone(), &g.timesteps, noise.clone());
    assert_close_scaled(&to_vec(x_t), &g.add_noise, TENSOR_RTOL, "add_noise");
    let v = diffusion.velocity(x_start, noise, &g.timesteps);
    assert_close_scaled(&to_vec(v), &g.velocity, TENSOR_RTOL, "get_velocity");
}

#[test]
fn ddpm_step_matches_ddpm_scheduler_step() {
    let g: Ddpm = load("ddpm.json");
    assert_eq!(g.steps.len(), 14);
    for case in &g.steps {
        let cfg = DiffusionConfig {
            prediction: case.prediction,
            ddpm_variance: case.ddpm_variance,
            clip_sample: case.clip_sample,
            ..Default::default()
        };
        let diffusion = GaussianDiffusion::new(cfg).unwrap();
        let what = format!(
            "{:?} {:?} clip={} t={}",
            case.prediction, case.ddpm_variance, case.clip_sample, case.t
        );
        let model_output = tensor4(&g.model_output, g.shape);
        let x_t = tensor4(&g.x_t, g.shape);
        let ts = vec![case.t; g.shape[0]];
        let (x0, _) = diffusion.predict_start_and_noise(model_output.clone(), x_t.clone(), &ts);
        let x0 = if case.clip_sample {
            x0.clamp(-1.0, 1.0)
        } else {
            x0
        };
        assert_close_scaled(
            &to_vec(x0),
            &case.pred_original_sample,
            TENSOR_RTOL,
            &format!("{what} pred_original_sample"),
        );
        let noise = tensor4(&case.variance_noise, g.shape);
        let prev = ddpm_step(&diffusion, model_output, case.t, x_t, Some(noise));
        assert_close_scaled(
            &to_vec(prev),
            &case.prev_sample,
            TENSOR_RTOL,
            &format!("{what} prev_sample"),
        );
    }
}

/// The step between two visited timesteps of a respaced chain, against `DDPMScheduler.step`
/// after `set_timesteps(n)` (which steps from t to t − T/n with β' = 1 − ᾱ_t/ᾱ_prev), with fixed
/// and learned (`learned_range`) variances.
#[test]
fn respaced_ddpm_step_matches_ddpm_scheduler_after_set_timesteps() {
    let g: Ddpm = load("ddpm.json");
    assert_eq!(g.respaced_steps.len(), 7);
    for case in &g.respaced_steps {
        let cfg = DiffusionConfig {
            prediction: case.prediction,
            ddpm_variance: case.ddpm_variance,
            clip_sample: case.clip_sample,
            timestep_spacing: case.timestep_spacing,
            variance_type: if case.learned_variance {
                VarianceType::Learned
            } else {
                VarianceType::Fixed
            },
            loss: if case.learned_variance {
                LossKind::Hybrid
            } else {
                LossKind::Simple
            },
            ..Default::default()
        };
        let diffusion = GaussianDiffusion::new(cfg).unwrap();
        // The step sample_ddpm takes from t: to the next timestep of the respaced schedule.
        let schedule =
            respace_timesteps(1000, case.num_inference_steps, case.timestep_spacing).unwrap();
        let at = schedule.iter().position(|&s| s == case.t).unwrap();
        let prev_t = schedule.get(at + 1).copied();
        assert_eq!(prev_t.map_or(-1, |p| p as i64), case.prev_t.max(-1));
        let [b, c, h, w] = g.shape;
        let factor = if case.learned_variance { 2 } else { 1 };
        let model_output = tensor4(&case.model_output, [b, c * factor, h, w]);
        let x_t = tensor4(&g.x_t, g.shape);
        let noise = tensor4(&case.variance_noise, g.shape);
        let prev = respaced_ddpm_step(&diffusion, model_output, case.t, prev_t, x_t, Some(noise));
        assert_close_scaled(
            &to_vec(prev),
            &case.prev_sample,
            TENSOR_RTOL,
            &format!(
                "{:?} {:?} learned={} {} of {} steps, t={}",
                case.prediction,
                case.ddpm_variance,
                case.learned_variance,
                at + 1,
                case.num_inference_steps,
                case.t
            ),
        );
    }
}

#[test]
fn ddim_step_matches_ddim_scheduler_step() {
    let g: Ddim = load("ddim.json");
    assert_eq!(g.steps.len(), 16);
    for case in &g.steps {
        let cfg = DiffusionConfig {
            prediction: case.prediction,
            clip_sample: case.clip_sample,
            rescale_zero_terminal_snr: case.rescale_zero_terminal_snr,
            timestep_spacing: case.timestep_spacing,
            ..Default::default()
        };
        let diffusion = GaussianDiffusion::new(cfg).unwrap();
        let what = format!(
            "{:?} clip={} zero-snr={} t={} prev={:?} eta={}",
            case.prediction,
            case.clip_sample,
            case.rescale_zero_terminal_snr,
            case.t,
            case.prev_t,
            case.eta
        );
        let model_output = tensor4(&g.model_output, g.shape);
        let x_t = tensor4(&g.x_t, g.shape);
        let ts = vec![case.t; g.shape[0]];
        let (x0, _) = diffusion.predict_start_and_noise(model_output.clone(), x_t.clone(), &ts);
        let x0 = if case.clip_sample {
            x0.clamp(-1.0, 1.0)
        } else {
            x0
        };
        assert_close_scaled(
            &to_vec(x0),
            &case.pred_original_sample,
            TENSOR_RTOL,
            &format!("{what} pred_original_sample"),
        );
        let noise = (case.eta > 0.0).then(|| tensor4(&g.variance_noise, g.shape));
        let prev = ddim_step(
            &diffusion,
            model_output,
            case.t,
            case.prev_t,
            x_t,
            case.eta,
            noise,
        );
        let prev = to_vec(prev);
        assert!(prev.iter().all(|v| v.is_finite()), "{what}: not finite");
        assert_close_scaled(
            &prev,
            &case.prev_sample,
            TENSOR_RTOL,
            &format!("{what} prev_sample"),
        );
    }
}
