//! Stable Diffusion 1.x's scheduler settings against Hugging Face diffusers 0.42.1: whole PLMS
//! runs (`PNDMScheduler` with `skip_prk_steps = true`) and DDIM with `steps_offset = 1` and
//! `set_alpha_to_one = false`, the model replaced by stored outputs replayed in call order.
//!
//! Regenerate the golden file (tests/golden/pndm.json) from the repository root with
//!
//!     /opt/refenv/bin/python tools/reference/pndm_golden.py
//!
//! (venv set-up in tools/reference/README.md).
//!
//! Tolerance: the golden runs are diffusers' step code in float64 on float32 inputs; this
//! crate's float32 tensors agree to 1e-5 relative to max(1, max|expected|) of every sample
//! (diffusers' own float32 run is up to 8.7e-6 off, as the script prints).

mod common;

use std::sync::Mutex;

use burn::tensor::Tensor;
use common::{assert_close_scaled, device, tensor4, to_vec};
use oxidiff_diffusion::sample::{sample_ddim, sample_pndm};
use oxidiff_diffusion::{
    BetaSchedule, Denoiser, DiffusionConfig, DiffusionError, GaussianDiffusion, Prediction,
    TimestepSpacing,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

const TENSOR_RTOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    shape: [usize; 4],
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    name: String,
    scheduler: String,
    beta_schedule: BetaSchedule,
    beta_start: f64,
    beta_end: f64,
    num_train_timesteps: usize,
    prediction: Prediction,
    timestep_spacing: TimestepSpacing,
    steps_offset: usize,
    set_alpha_to_one: bool,
    num_inference_steps: usize,
    timesteps: Vec<usize>,
    x_t: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    samples: Vec<Vec<f32>>,
}

fn golden() -> Golden {
    let text = include_str!("golden/pndm.json");
    serde_json::from_str(text).expect("tests/golden/pndm.json parses")
}

impl Run {
    fn diffusion(&self) -> GaussianDiffusion {
        GaussianDiffusion::new(DiffusionConfig {
            num_train_timesteps: self.num_train_timesteps,
            beta_schedule: self.beta_schedule,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            prediction: self.prediction,
            timestep_spacing: self.timestep_spacing,
            steps_offset: self.steps_offset,
            set_alpha_to_one: self.set_alpha_to_one,
            clip_sample: false,
            ..DiffusionConfig::default()
        })
        .unwrap()
    }
}

/// Returns the stored outputs in call order, recording the timesteps it is asked for and the
/// samples it sees (the sample after call k is what call k + 1 receives).
struct Replay {
    outputs: Vec<Tensor<4>>,
    calls: Mutex<Vec<(usize, Vec<f32>)>>,
}

impl Denoiser for Replay {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t = to_vec(t);
        assert!(t.iter().all(|&v| v == t[0]), "one timestep per call: {t:?}");
        let mut calls = self.calls.lock().unwrap();
        let output = self
            .outputs
            .get(calls.len())
            .unwrap_or_else(|| panic!("more network calls than the {}", self.outputs.len()))
            .clone();
        calls.push((t[0] as usize, to_vec(x_t)));
        output
    }
}

#[test]
fn sampling_runs_match_diffusers() {
    let g = golden();
    let dev = device();
    let mut seen = Vec::new();
    for run in &g.runs {
        let what = &run.name;
        let replay = Replay {
            outputs: run.outputs.iter().map(|o| tensor4(o, g.shape)).collect(),
            calls: Mutex::new(Vec::new()),
        };
        let diffusion = run.diffusion();
        let x_t = tensor4(&run.x_t, g.shape).to_device(&dev);
        let mut steps_reported = Vec::new();
        let mut progress = |i: usize, n: usize| steps_reported.push((i, n));
        let x = match run.scheduler.as_str() {
            "PNDMScheduler" => sample_pndm(
                &replay,
                &diffusion,
                x_t,
                run.num_inference_steps,
                &mut progress,
            ),
            "DDIMScheduler" => sample_ddim(
                &replay,
                &diffusion,
                x_t,
                run.num_inference_steps,
                0.0,
                &mut ChaCha8Rng::seed_from_u64(0),
                &mut progress,
            ),
            other => panic!("{what}: unexpected scheduler {other}"),
        }
        .unwrap();
        let calls = replay.calls.into_inner().unwrap();
        let visited: Vec<usize> = calls.iter().map(|(t, _)| *t).collect();
        assert_eq!(visited, run.timesteps, "{what}: timesteps of the calls");
        // Call k + 1 sees the sample after scheduler call k; PLMS's second call sees its Euler
        // prediction, which diffusers returns from its first step() too.
        for (k, (_, x_seen)) in calls.iter().enumerate().skip(1) {
            assert_close_scaled(
                x_seen,
                &run.samples[k - 1],
                TENSOR_RTOL,
                &format!("{what}: input of call {k}"),
            );
        }
        let (x, expected) = (to_vec(x), run.samples.last().unwrap());
        let worst = x
            .iter()
            .zip(expected)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{what}: final sample off by {worst:.2e}");
        assert_close_scaled(&x, expected, TENSOR_RTOL, &format!("{what}: final sample"));
        let n = run.num_inference_steps;
        assert_eq!(
            steps_reported,
            (1..=n).map(|i| (i, n)).collect::<Vec<_>>(),
            "{what}: progress"
        );
        seen.push(run.scheduler.clone());
    }
    assert!(seen.contains(&"PNDMScheduler".to_string()) && seen.contains(&"DDIMScheduler".into()));
}

#[test]
fn pndm_refuses_sample_prediction() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        prediction: Prediction::Sample,
        ..DiffusionConfig::default()
    })
    .unwrap();
    let replay = Replay {
        outputs: vec![],
        calls: Mutex::new(Vec::new()),
    };
    let x = Tensor::<4>::zeros([1, 1, 2, 2], &device());
    let err = sample_pndm(&replay, &diffusion, x, 5, &mut |_, _| {}).unwrap_err();
    match err {
        DiffusionError::InvalidArgument { name, .. } => assert_eq!(name, "prediction"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn set_alpha_to_one_only_changes_the_last_step() {
    // With ᾱ_prev = ᾱ_0 instead of 1 the last DDIM step stops short of x̂₀ by exactly
    // √ᾱ_0 x̂₀ + √(1 − ᾱ_0) ε̂; a constant ε̂ = 0 model makes x̂₀ = x_t/√ᾱ_t.
    struct Zero;
    impl Denoiser for Zero {
        fn denoise(&self, x_t: Tensor<4>, _t: Tensor<1>) -> Tensor<4> {
            x_t.zeros_like()
        }
    }
    let run = |set_alpha_to_one| {
        let diffusion = GaussianDiffusion::new(DiffusionConfig {
            set_alpha_to_one,
            clip_sample: false,
            ..DiffusionConfig::default()
        })
        .unwrap();
        let x = Tensor::<4>::ones([1, 1, 1, 1], &device());
        let out = sample_ddim(
            &Zero,
            &diffusion,
            x,
            1,
            0.0,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut |_, _| {},
        )
        .unwrap();
        (to_vec(out)[0] as f64, diffusion)
    };
    let (clean, d) = run(true);
    let (short, _) = run(false);
    let ac = &d.schedule.alphas_cumprod;
    let x0 = 1.0 / ac[999].sqrt();
    assert!((clean - x0).abs() < 1e-3 * x0, "{clean} vs {x0}");
    assert!((short - ac[0].sqrt() * x0).abs() < 1e-3 * x0, "{short}");
}
