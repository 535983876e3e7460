//! The Euler, Heun and DPM-Solver++(2M) samplers: golden tests against Hugging Face diffusers
//! 0.42.1 (EulerDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler), and
//! end-to-end properties with denoisers whose ideal output is known in closed form.
//!
//! Regenerate the golden file (tests/golden/samplers.json) from the repository root with
//!
//!     /opt/refenv/bin/python tools/reference/sampler_golden.py
//!
//! (venv set-up in tools/reference/README.md).
//!
//! Tolerances:
//! - sigmas: 1e-6 relative. The script runs diffusers' `set_timesteps` on a float64
//!   alphas_cumprod and keeps its final float32 cast (6e-8 relative); this crate computes in
//!   float64. (diffusers' own float32 state is up to 2.6e-4 off, from 1 − ᾱ_0 ≈ 1e-4
//!   cancelling in float32, which is why the state is promoted.)
//! - timesteps: 1e-6 relative to max(1, |t|) (t = 0 has no relative scale). Except for
//!   DPM-Solver with Karras sigmas, where diffusers casts the fractional timestep of each σ to an
//!   integer (rounded, or truncated for the cosine schedule) and this crate keeps the fraction:
//!   there the rounded (truncated) value must be equal.
//! - steps: diffusers' step code run in float64 on float32 inputs (the golden) against this
//!   crate's float32 tensors, 1e-5 relative to max(1, max|expected|) of each tensor (they agree
//!   to 3e-7 today; diffusers' own float32 run is up to 1.8e-4 off, as the script prints). Every
//!   step is fed the exact float32 sigmas diffusers used (stored per case), and each case checks
//!   that those are the sigmas this crate's schedule gives, to 1e-6 relative.

mod common;

use burn::tensor::Tensor;
use common::{PointDenoiser, assert_close_scaled, device, max_abs_diff, tensor4, to_vec};
use oxidiff_diffusion::sample::{
    DpmSolverAlgorithm, DpmSolverOptions, KarrasOptions, SigmaSchedule, churn, denoise_at_sigma,
    discrete_sigmas, dpm_solver_sigmas, dpm_solver_step, euler_step, heun_correction,
    karras_sigmas, ode_derivative, predict_start_at_sigma, sample_dpm_solver, sample_euler,
    sample_heun, timestep_to_sigma, training_sigmas,
};
use oxidiff_diffusion::{
    BetaSchedule, Denoiser, DiffusionConfig, DiffusionError, GaussianDiffusion, LossKind,
    Prediction, TimestepSpacing, VarianceType, randn,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

const TENSOR_RTOL: f32 = 1e-5;
const SIGMA_RTOL: f64 = 1e-6;

#[derive(Deserialize)]
struct Golden {
    shape: [usize; 4],
    schedules: Vec<ScheduleCase>,
    euler: Vec<EulerCase>,
    heun: Vec<HeunCase>,
    dpm_solver: Vec<DpmCase>,
}

#[derive(Deserialize)]
struct ScheduleCase {
    scheduler: String,
    beta_schedule: BetaSchedule,
    beta_start: f64,
    beta_end: f64,
    num_train_timesteps: usize,
    rescale_zero_terminal_snr: bool,
    timestep_spacing: TimestepSpacing,
    karras_sigmas: bool,
    num_inference_steps: usize,
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
}

#[derive(Deserialize)]
struct EulerCase {
    prediction: Prediction,
    timestep_spacing: TimestepSpacing,
    karras_sigmas: bool,
    num_inference_steps: usize,
    step_index: usize,
    s_churn: f64,
    s_tmin: f64,
    s_tmax: Option<f64>,
    s_noise: f64,
    gamma: f64,
    sigma: f64,
    sigma_next: f64,
    x: Vec<f32>,
    model_output: Vec<f32>,
    noise: Vec<f32>,
    pred_original_sample: Vec<f32>,
    prev_sample: Vec<f32>,
}

#[derive(Deserialize)]
struct HeunCase {
    prediction: Prediction,
    karras_sigmas: bool,
    clip_sample: bool,
    num_inference_steps: usize,
    step_index: usize,
    sigma: f64,
    sigma_next: f64,
    x: Vec<f32>,
    model_output: Vec<f32>,
    pred_original_sample: Vec<f32>,
    prev_sample: Vec<f32>,
    model_output_2: Option<Vec<f32>>,
    pred_original_sample_2: Option<Vec<f32>>,
    prev_sample_2: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct DpmCase {
    algorithm: DpmSolverAlgorithm,
    prediction: Prediction,
    timestep_spacing: TimestepSpacing,
    karras_sigmas: bool,
    learned_variance: bool,
    num_inference_steps: usize,
    step_index: usize,
    shape: [usize; 4],
    sigmas: [f64; 3],
    x: Vec<f32>,
    model_output: Vec<f32>,
    noise: Option<Vec<f32>>,
    x0_pred: Vec<f32>,
    prev_sample: Vec<f32>,
    x_2: Vec<f32>,
    model_output_2: Vec<f32>,
    noise_2: Option<Vec<f32>>,
    x0_pred_2: Vec<f32>,
    prev_sample_2: Vec<f32>,
}

fn load() -> Golden {
    let path = format!("{}/tests/golden/samplers.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_rel(actual: f64, expected: f64, rtol: f64, scale: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= rtol * scale,
        "{what}: got {actual:e}, diffusers {expected:e}"
    );
}

fn diffusion(cfg: DiffusionConfig) -> GaussianDiffusion {
    GaussianDiffusion::new(cfg).unwrap()
}

fn step_config(prediction: Prediction, spacing: TimestepSpacing) -> DiffusionConfig {
    DiffusionConfig {
        prediction,
        timestep_spacing: spacing,
        // diffusers' Euler and DPM-Solver have no static clipping; Heun cases set their own.
        clip_sample: false,
        ..Default::default()
    }
}

/// The step's sigmas must be the ones this crate's schedule gives.
fn assert_schedule_has(schedule: &SigmaSchedule, from: usize, sigmas: &[f64], what: &str) {
    for (k, &expected) in sigmas.iter().enumerate() {
        let ours = schedule.sigmas[from + k];
        assert_rel(
            ours,
            expected,
            SIGMA_RTOL,
            expected.abs(),
            &format!("{what} schedule sigma[{}]", from + k),
        );
    }
}

#[test]
fn sigma_schedules_match_set_timesteps() {
    let golden = load();
    assert_eq!(golden.schedules.len(), 34);
    for case in &golden.schedules {
        let cfg = DiffusionConfig {
            num_train_timesteps: case.num_train_timesteps,
            beta_schedule: case.beta_schedule,
            beta_start: case.beta_start,
            beta_end: case.beta_end,
            rescale_zero_terminal_snr: case.rescale_zero_terminal_snr,
            prediction: Prediction::Velocity,
            timestep_spacing: case.timestep_spacing,
            ..Default::default()
        };
        let d = diffusion(cfg);
        let n = case.num_inference_steps;
        let what = format!(
            "{} {:?} T={} {:?} n={n} karras={} zero-snr={}",
            case.scheduler,
            case.beta_schedule,
            case.num_train_timesteps,
            case.timestep_spacing,
            case.karras_sigmas,
            case.rescale_zero_terminal_snr
        );
        let dpm = case.scheduler == "dpm_solver";
        let ours = if dpm {
            dpm_solver_sigmas(&d, n, case.karras_sigmas)
        } else if case.karras_sigmas {
            // diffusers' Euler and Heun take σ_min, σ_max from their respaced timesteps; that is
            // the training range (what this crate uses) only for linspace spacing.
            assert_eq!(case.timestep_spacing, TimestepSpacing::Linspace, "{what}");
            karras_sigmas(&d, n)
        } else {
            discrete_sigmas(&d, n)
        }
        .unwrap();
        assert_eq!(ours.sigmas.len(), case.sigmas.len(), "{what}");
        assert_eq!(ours.timesteps.len(), case.timesteps.len(), "{what}");
        for (i, (&a, &e)) in ours.sigmas.iter().zip(&case.sigmas).enumerate() {
            assert_rel(a, e, SIGMA_RTOL, e.abs(), &format!("{what} sigma[{i}]"));
        }
        for (i, (&a, &e)) in ours.timesteps.iter().zip(&case.timesteps).enumerate() {
            let what = format!("{what} timestep[{i}]");
            if dpm && case.karras_sigmas {
                let cast = if case.beta_schedule == BetaSchedule::Cosine {
                    a.trunc()
                } else {
                    a.round_ties_even()
                };
                assert_eq!(cast, e, "{what}: ours {a}");
            } else {
                assert_rel(a, e, SIGMA_RTOL, e.abs().max(1.0), &what);
            }
        }
    }
}

#[test]
fn euler_step_matches_euler_discrete_scheduler() {
    let golden = load();
    assert_eq!(golden.euler.len(), 18);
    let shape = golden.shape;
    for case in &golden.euler {
        let d = diffusion(step_config(case.prediction, case.timestep_spacing));
        let options = KarrasOptions {
            karras_sigmas: case.karras_sigmas,
            s_churn: case.s_churn,
            s_tmin: case.s_tmin,
            s_tmax: case.s_tmax.unwrap_or(f64::INFINITY),
            s_noise: case.s_noise,
        };
        let n = case.num_inference_steps;
        let what = format!(
            "euler {:?} {:?} karras={} i={} churn={}",
            case.prediction,
            case.timestep_spacing,
            case.karras_sigmas,
            case.step_index,
            case.s_churn
        );
        let schedule = options.schedule(&d, n).unwrap();
        assert_schedule_has(
            &schedule,
            case.step_index,
            &[case.sigma, case.sigma_next],
            &what,
        );
        let gamma = options.gamma(case.sigma, n);
        assert_rel(gamma, case.gamma, 1e-12, 1.0, &format!("{what} gamma"));
        let x = tensor4(&case.x, shape);
        let (x_hat, sigma_hat) = if gamma > 0.0 {
            churn(
                x,
                case.sigma,
                gamma,
                case.s_noise,
                tensor4(&case.noise, shape),
            )
        } else {
            (x, case.sigma)
        };
        let model_output = tensor4(&case.model_output, shape);
        let x0 = denoise_at_sigma(&d, model_output.clone(), x_hat.clone(), sigma_hat);
        assert_close_scaled(
            &to_vec(x0),
            &case.pred_original_sample,
            TENSOR_RTOL,
            &format!("{what} pred_original_sample"),
        );
        let prev = euler_step(&d, model_output, x_hat, sigma_hat, case.sigma_next);
        assert_close_scaled(
            &to_vec(prev),
            &case.prev_sample,
            TENSOR_RTOL,
            &format!("{what} prev_sample"),
        );
    }
}

#[test]
fn heun_half_steps_match_heun_discrete_scheduler() {
    let golden = load();
    assert_eq!(golden.heun.len(), 14);
    let shape = golden.shape;
    for case in &golden.heun {
        let d = diffusion(DiffusionConfig {
            clip_sample: case.clip_sample,
            ..step_config(case.prediction, TimestepSpacing::Linspace)
        });
        let what = format!(
            "heun {:?} karras={} clip={} i={}",
            case.prediction, case.karras_sigmas, case.clip_sample, case.step_index
        );
        let options = KarrasOptions {
            karras_sigmas: case.karras_sigmas,
            ..Default::default()
        };
        let schedule = options.schedule(&d, case.num_inference_steps).unwrap();
        assert_schedule_has(
            &schedule,
            case.step_index,
            &[case.sigma, case.sigma_next],
            &what,
        );
        let (sigma, sigma_next) = (case.sigma, case.sigma_next);
        let x = tensor4(&case.x, shape);
        let out = tensor4(&case.model_output, shape);
        let x0 = denoise_at_sigma(&d, out.clone(), x.clone(), sigma);
        assert_close_scaled(
            &to_vec(x0),
            &case.pred_original_sample,
            TENSOR_RTOL,
            &format!("{what} first pred_original_sample"),
        );
        // The first-order half is an Euler step.
        let first = euler_step(&d, out.clone(), x.clone(), sigma, sigma_next);
        assert_close_scaled(
            &to_vec(first),
            &case.prev_sample,
            TENSOR_RTOL,
            &format!("{what} first prev_sample"),
        );
        if sigma_next == 0.0 {
            assert!(case.model_output_2.is_none(), "{what}");
            continue;
        }
        let derivative = ode_derivative(&d, out, x.clone(), sigma);
        // diffusers' own first half, as a float32 value, is the second call's input.
        let x_next = tensor4(&case.prev_sample, shape);
        let out_2 = tensor4(case.model_output_2.as_ref().unwrap(), shape);
        let x0_2 = denoise_at_sigma(&d, out_2.clone(), x_next.clone(), sigma_next);
        assert_close_scaled(
            &to_vec(x0_2),
            case.pred_original_sample_2.as_ref().unwrap(),
            TENSOR_RTOL,
            &format!("{what} second pred_original_sample"),
        );
        let second = heun_correction(&d, out_2, x, x_next, derivative, sigma, sigma_next);
        assert_close_scaled(
            &to_vec(second),
            case.prev_sample_2.as_ref().unwrap(),
            TENSOR_RTOL,
            &format!("{what} second prev_sample"),
        );
    }
}

#[test]
fn dpm_solver_steps_match_dpm_solver_multistep_scheduler() {
    let golden = load();
    assert_eq!(golden.dpm_solver.len(), 23);
    for case in &golden.dpm_solver {
        let mut cfg = step_config(case.prediction, case.timestep_spacing);
        if case.learned_variance {
            cfg.variance_type = VarianceType::Learned;
            cfg.loss = LossKind::Hybrid;
        }
        let d = diffusion(cfg);
        let what = format!(
            "{:?} {:?} {:?} karras={} learned={} steps {},{}",
            case.algorithm,
            case.prediction,
            case.timestep_spacing,
            case.karras_sigmas,
            case.learned_variance,
            case.step_index,
            case.step_index + 1
        );
        let schedule = dpm_solver_sigmas(&d, case.num_inference_steps, case.karras_sigmas).unwrap();
        assert_schedule_has(&schedule, case.step_index, &case.sigmas, &what);
        let shape = case.shape;
        let out_shape = [
            shape[0],
            shape[1] * d.output_channel_factor(),
            shape[2],
            shape[3],
        ];
        let sde = case.algorithm == DpmSolverAlgorithm::SdeDpmSolverPlusPlus;
        assert_eq!(case.noise.is_some(), sde, "{what}");
        let [s0, s1, s2] = case.sigmas;

        let x = tensor4(&case.x, shape);
        let x0 = predict_start_at_sigma(&d, tensor4(&case.model_output, out_shape), x.clone(), s0);
        assert_close_scaled(
            &to_vec(x0.clone()),
            &case.x0_pred,
            TENSOR_RTOL,
            &format!("{what} first x0"),
        );
        let noise = case.noise.as_ref().map(|v| tensor4(v, shape));
        // The first step of a run (no previous x̂₀) is first order.
        let prev = dpm_solver_step(x, x0.clone(), None, s0, s1, noise);
        assert_close_scaled(
            &to_vec(prev),
            &case.prev_sample,
            TENSOR_RTOL,
            &format!("{what} first prev_sample"),
        );

        let x_2 = tensor4(&case.x_2, shape);
        let x0_2 = predict_start_at_sigma(
            &d,
            tensor4(&case.model_output_2, out_shape),
            x_2.clone(),
            s1,
        );
        assert_close_scaled(
            &to_vec(x0_2.clone()),
            &case.x0_pred_2,
            TENSOR_RTOL,
            &format!("{what} second x0"),
        );
        let noise_2 = case.noise_2.as_ref().map(|v| tensor4(v, shape));
        // Second order, or first order when it ends at σ = 0 (lower_order_final).
        let prev_2 = dpm_solver_step(x_2, x0_2, Some((x0, s0)), s1, s2, noise_2);
        assert_close_scaled(
            &to_vec(prev_2),
            &case.prev_sample_2,
            TENSOR_RTOL,
            &format!("{what} second prev_sample"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// End-to-end properties

const SHAPE: [usize; 4] = [2, 3, 4, 4];

/// The ideal denoiser of a single data point x₀* at any (fractional) timestep: it reads σ off
/// the timestep with [`timestep_to_sigma`] and answers in the diffusion's parameterisation at
/// ᾱ = 1/(1 + σ²), with zero variance channels for a learned-variance config. (The shared
/// [`PointDenoiser`] truncates t to an integer.)
struct SigmaPointDenoiser<'a> {
    diffusion: &'a GaussianDiffusion,
    train_sigmas: Vec<f64>,
    x0: Tensor<4>,
}

impl<'a> SigmaPointDenoiser<'a> {
    fn new(diffusion: &'a GaussianDiffusion, x0: Tensor<4>) -> Self {
        Self {
            diffusion,
            train_sigmas: training_sigmas(diffusion),
            x0,
        }
    }
}

impl Denoiser for SigmaPointDenoiser<'_> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t = f64::from(to_vec(t)[0]);
        let sigma = timestep_to_sigma(&self.train_sigmas, t);
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let sigma_t = sigma * alpha;
        let x0 = self.x0.clone();
        // x_t = α x₀ + σ_t ε solved for ε
        let eps = (x_t - x0.clone().mul_scalar(alpha as f32)).mul_scalar((1.0 / sigma_t) as f32);
        let out = match self.diffusion.config.prediction {
            Prediction::Epsilon => eps,
            Prediction::Sample => x0,
            // Salimans & Ho 2022, §4: v = α ε − σ_t x₀
            Prediction::Velocity => eps.mul_scalar(alpha as f32) - x0.mul_scalar(sigma_t as f32),
        };
        match self.diffusion.config.variance_type {
            VarianceType::Fixed => out,
            VarianceType::Learned => {
                let v = out.zeros_like();
                Tensor::cat(vec![out, v], 1)
            }
        }
    }
}

fn point(seed: u64) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    randn(&mut rng, SHAPE, &device())
        .mul_scalar(0.5)
        .clamp(-1.0, 1.0)
}

fn point_configs() -> Vec<DiffusionConfig> {
    let mut out = Vec::new();
    let spacings = [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ];
    for (k, prediction) in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::Velocity,
    ]
    .into_iter()
    .enumerate()
    {
        for zero_snr in [false, true] {
            if zero_snr && prediction == Prediction::Epsilon {
                continue;
            }
            out.push(DiffusionConfig {
                num_train_timesteps: 100,
                prediction,
                rescale_zero_terminal_snr: zero_snr,
                timestep_spacing: spacings[(k + usize::from(zero_snr)) % 3],
                ..Default::default()
            });
        }
    }
    out.push(DiffusionConfig {
        num_train_timesteps: 100,
        prediction: Prediction::Epsilon,
        variance_type: VarianceType::Learned,
        loss: LossKind::Hybrid,
        beta_schedule: BetaSchedule::Cosine,
        ..Default::default()
    });
    out
}

fn churn_options(karras_sigmas: bool) -> KarrasOptions {
    KarrasOptions {
        karras_sigmas,
        s_churn: 4.0,
        s_tmin: 0.05,
        s_tmax: 50.0,
        s_noise: 1.003,
    }
}

/// If the data is a single point x₀*, the ideal denoiser returns x̂₀ = x₀* at every σ, and
/// every sampler's last step (to σ = 0) returns that x̂₀: Euler and Heun land on
/// D(x; σ_{n−1}) and DPM-Solver's final first-order step on x̂₀. So each must end on x₀* for every
/// parameterisation, which checks that sampler and network agree on σ ↔ t ↔ ᾱ throughout.
#[test]
fn samplers_recover_a_point_distribution() {
    for cfg in point_configs() {
        let d = diffusion(cfg.clone());
        let x0 = point(1);
        let denoiser = SigmaPointDenoiser::new(&d, x0.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x_t = randn(&mut rng, SHAPE, &device());
        let what = format!(
            "{:?} {:?} zero-snr={} {:?}",
            cfg.prediction, cfg.timestep_spacing, cfg.rescale_zero_terminal_snr, cfg.variance_type
        );
        let check = |name: &str, out: Result<Tensor<4>, DiffusionError>| {
            let err = max_abs_diff(out.unwrap(), x0.clone());
            assert!(err < 1e-5, "{name} {what}: off by {err}");
        };
        for (steps, karras) in [(10, false), (20, true), (13, true)] {
            let plain = KarrasOptions {
                karras_sigmas: karras,
                ..Default::default()
            };
            let mut calls = 0;
            let mut progress = |i: usize, n: usize| {
                calls += 1;
                assert_eq!((i, n), (calls, steps));
            };
            let x = x_t.clone();
            check(
                &format!("euler {steps} karras={karras}"),
                sample_euler(&denoiser, &d, x, steps, &plain, &mut rng, &mut progress),
            );
            assert_eq!(calls, steps);
            for options in [plain, churn_options(karras)] {
                let x = x_t.clone();
                check(
                    &format!("euler {steps} {options:?}"),
                    sample_euler(&denoiser, &d, x, steps, &options, &mut rng, &mut |_, _| {}),
                );
                let x = x_t.clone();
                check(
                    &format!("heun {steps} {options:?}"),
                    sample_heun(&denoiser, &d, x, steps, &options, &mut rng, &mut |_, _| {}),
                );
            }
            for algorithm in [
                DpmSolverAlgorithm::DpmSolverPlusPlus,
                DpmSolverAlgorithm::SdeDpmSolverPlusPlus,
            ] {
                let options = DpmSolverOptions {
                    algorithm,
                    karras_sigmas: karras,
                };
                let x = x_t.clone();
                check(
                    &format!("dpm-solver {steps} {options:?}"),
                    sample_dpm_solver(&denoiser, &d, x, steps, &options, &mut rng, &mut |_, _| {}),
                );
            }
        }
    }
}

/// With integer timesteps only (respaced sigmas, no churn) the shared [`PointDenoiser`] is exact
/// too: the samplers hand the network the training timestep itself.
#[test]
fn respaced_samplers_pass_integer_timesteps() {
    let d = diffusion(DiffusionConfig {
        num_train_timesteps: 50,
        prediction: Prediction::Velocity,
        timestep_spacing: TimestepSpacing::Trailing,
        ..Default::default()
    });
    let x0 = point(3);
    let denoiser = PointDenoiser {
        diffusion: &d,
        x0: x0.clone(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x_t = randn(&mut rng, SHAPE, &device());
    let options = KarrasOptions::default();
    let outs = [
        sample_euler(
            &denoiser,
            &d,
            x_t.clone(),
            10,
            &options,
            &mut rng,
            &mut |_, _| {},
        ),
        sample_heun(
            &denoiser,
            &d,
            x_t.clone(),
            10,
            &options,
            &mut rng,
            &mut |_, _| {},
        ),
        sample_dpm_solver(
            &denoiser,
            &d,
            x_t,
            10,
            &DpmSolverOptions::default(),
            &mut rng,
            &mut |_, _| {},
        ),
    ];
    for out in outs {
        let err = max_abs_diff(out.unwrap(), x0.clone());
        assert!(err < 1e-5, "off by {err}");
    }
}

/// The ideal ε-predictor for data x₀ ~ N(0, 1) at any timestep: E[ε | x_t] = σ_t x_t with
/// σ_t = σ/√(σ² + 1).
struct StandardNormalDenoiser(Vec<f64>);

impl Denoiser for StandardNormalDenoiser {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let sigma = timestep_to_sigma(&self.0, f64::from(to_vec(t)[0]));
        x_t.mul_scalar((sigma / (sigma * sigma + 1.0).sqrt()) as f32)
    }
}

/// For x₀ ~ N(0, 1) the probability-flow ODE is linear: D(x; σ) = x/(1 + σ²), so
/// dx/dσ = σ x/(1 + σ²) and x_σ = x_T √(1 + σ²) exactly. Every sampler must therefore return
/// x_T times a factor that tends to 1: at first order (Euler) the error about halves when the
/// steps double, at second order (Heun, DPM-Solver++(2M)) it falls about four times.
#[test]
fn samplers_converge_at_their_order_on_a_gaussian() {
    let d = diffusion(DiffusionConfig {
        num_train_timesteps: 1000,
        clip_sample: false,
        ..Default::default()
    });
    let denoiser = StandardNormalDenoiser(training_sigmas(&d));
    let x_t = Tensor::<4>::ones([1, 1, 1, 1], &device());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let karras = KarrasOptions {
        karras_sigmas: true,
        ..Default::default()
    };
    let dpm = DpmSolverOptions {
        karras_sigmas: true,
        ..Default::default()
    };
    let mut error = |name: &str, steps: usize| -> f64 {
        let out = match name {
            "euler" => sample_euler(
                &denoiser,
                &d,
                x_t.clone(),
                steps,
                &karras,
                &mut rng,
                &mut |_, _| {},
            ),
            "heun" => sample_heun(
                &denoiser,
                &d,
                x_t.clone(),
                steps,
                &karras,
                &mut rng,
                &mut |_, _| {},
            ),
            _ => sample_dpm_solver(
                &denoiser,
                &d,
                x_t.clone(),
                steps,
                &dpm,
                &mut rng,
                &mut |_, _| {},
            ),
        };
        (f64::from(to_vec(out.unwrap())[0]) - 1.0).abs()
    };
    for (name, min_ratio, max_ratio) in [("euler", 1.6, 2.6), ("heun", 3.0, 6.0), ("dpm", 3.0, 6.0)]
    {
        let (coarse, fine) = (error(name, 16), error(name, 32));
        let ratio = coarse / fine;
        assert!(
            (min_ratio..max_ratio).contains(&ratio),
            "{name}: error {coarse:e} at 16 steps, {fine:e} at 32 (ratio {ratio})"
        );
    }
}

#[test]
fn stochastic_samplers_are_reproducible_and_seeded() {
    let d = diffusion(DiffusionConfig {
        num_train_timesteps: 50,
        ..Default::default()
    });
    let denoiser = StandardNormalDenoiser(training_sigmas(&d));
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x_t = randn(&mut rng, SHAPE, &device());
        let euler = sample_euler(
            &denoiser,
            &d,
            x_t.clone(),
            8,
            &churn_options(false),
            &mut rng,
            &mut |_, _| {},
        );
        let heun = sample_heun(
            &denoiser,
            &d,
            x_t.clone(),
            8,
            &churn_options(true),
            &mut rng,
            &mut |_, _| {},
        );
        let sde = DpmSolverOptions {
            algorithm: DpmSolverAlgorithm::SdeDpmSolverPlusPlus,
            karras_sigmas: false,
        };
        let dpm = sample_dpm_solver(&denoiser, &d, x_t, 8, &sde, &mut rng, &mut |_, _| {});
        (
            to_vec(euler.unwrap()),
            to_vec(heun.unwrap()),
            to_vec(dpm.unwrap()),
        )
    };
    let (a, b) = (run(9), run(10));
    assert_eq!(a, run(9));
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
    assert_ne!(a.2, b.2);
}

#[test]
fn samplers_reject_bad_arguments() {
    // Leading spacing: DPM-Solver's grid then needs n + 1 training timesteps (checked below).
    let d = diffusion(DiffusionConfig {
        num_train_timesteps: 10,
        timestep_spacing: TimestepSpacing::Leading,
        ..Default::default()
    });
    let denoiser = StandardNormalDenoiser(training_sigmas(&d));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x_t = randn(&mut rng, SHAPE, &device());
    let base = KarrasOptions::default();
    let cases = [
        (0, base, "num_inference_steps"),
        (11, base, "num_inference_steps"),
        (
            5,
            KarrasOptions {
                s_churn: -1.0,
                ..base
            },
            "s_churn",
        ),
        (
            5,
            KarrasOptions {
                s_churn: f64::NAN,
                ..base
            },
            "s_churn",
        ),
        (
            5,
            KarrasOptions {
                s_noise: f64::INFINITY,
                ..base
            },
            "s_noise",
        ),
        (
            5,
            KarrasOptions {
                s_tmin: -0.5,
                ..base
            },
            "s_tmin",
        ),
        (
            5,
            KarrasOptions {
                s_tmin: 2.0,
                s_tmax: 1.0,
                ..base
            },
            "s_tmax",
        ),
        (
            0,
            KarrasOptions {
                karras_sigmas: true,
                ..base
            },
            "num_inference_steps",
        ),
    ];
    for (steps, options, name) in cases {
        for heun in [false, true] {
            let x = x_t.clone();
            let err = if heun {
                sample_heun(&denoiser, &d, x, steps, &options, &mut rng, &mut |_, _| {})
            } else {
                sample_euler(&denoiser, &d, x, steps, &options, &mut rng, &mut |_, _| {})
            }
            .unwrap_err();
            assert!(
                matches!(&err, DiffusionError::InvalidArgument { name: n, .. } if n == name),
                "{steps} {options:?}: {err}"
            );
        }
    }
    // DPM-Solver's leading and linspace grids need n + 1 training timesteps.
    for (steps, karras, ok) in [
        (0, false, false),
        (10, false, false),
        (9, false, true),
        (40, true, true),
    ] {
        let result = sample_dpm_solver(
            &denoiser,
            &d,
            x_t.clone(),
            steps,
            &DpmSolverOptions {
                karras_sigmas: karras,
                ..Default::default()
            },
            &mut rng,
            &mut |_, _| {},
        );
        assert_eq!(result.is_ok(), ok, "{steps} karras={karras}");
    }
    // Trailing spacing (the default) takes every training timestep.
    let trailing = diffusion(DiffusionConfig {
        num_train_timesteps: 10,
        ..Default::default()
    });
    let result = sample_dpm_solver(
        &denoiser,
        &trailing,
        x_t,
        10,
        &DpmSolverOptions::default(),
        &mut rng,
        &mut |_, _| {},
    );
    assert!(result.is_ok(), "{:?}", result.err());
}
