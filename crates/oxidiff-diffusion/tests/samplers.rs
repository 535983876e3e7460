//! End-to-end checks of the samplers with denoisers whose ideal output is known in closed form.

mod common;

use burn::tensor::Tensor;
use common::{PointDenoiser, device, max_abs_diff, to_vec};
use oxidiff_diffusion::sample::{sample_ddim, sample_ddpm};
use oxidiff_diffusion::{
    DdpmVariance, Denoiser, DiffusionConfig, DiffusionError, GaussianDiffusion, Prediction,
    TimestepSpacing, randn,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SHAPE: [usize; 4] = [2, 3, 4, 4];

fn point(seed: u64) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    randn(&mut rng, SHAPE, &device())
        .mul_scalar(0.5)
        .clamp(-1.0, 1.0)
}

fn configs() -> Vec<DiffusionConfig> {
    let mut out = Vec::new();
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::Velocity,
    ] {
        for zero_snr in [false, true] {
            if zero_snr && prediction == Prediction::Epsilon {
                continue;
            }
            out.push(DiffusionConfig {
                num_train_timesteps: 100,
                prediction,
                rescale_zero_terminal_snr: zero_snr,
                timestep_spacing: TimestepSpacing::Trailing,
                ..Default::default()
            });
        }
    }
    out
}

/// If the data is a single point x₀*, an ideal denoiser makes every sampler land on x₀*: the
/// last DDPM step returns μ̃_0 = x̂₀ (coef1 = 1, coef2 = 0 at t = 0) and the last DDIM step
/// returns √1 · x̂₀.
#[test]
fn samplers_recover_a_point_distribution() {
    for cfg in configs() {
        let diffusion = GaussianDiffusion::new(cfg.clone()).unwrap();
        let x0 = point(1);
        let denoiser = PointDenoiser {
            diffusion: &diffusion,
            x0: x0.clone(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x_t = randn(&mut rng, SHAPE, &device());
        let what = format!(
            "{:?} zero-snr={}",
            cfg.prediction, cfg.rescale_zero_terminal_snr
        );

        for steps in [diffusion.num_timesteps(), 10] {
            let out = sample_ddpm(
                &denoiser,
                &diffusion,
                x_t.clone(),
                steps,
                &mut rng,
                &mut |_, _| {},
            )
            .unwrap();
            let err = max_abs_diff(out, x0.clone());
            assert!(err < 1e-4, "ddpm {steps} steps {what}: off by {err}");
        }

        for (steps, eta) in [(10, 0.0), (25, 0.5), (100, 1.0)] {
            let out = sample_ddim(
                &denoiser,
                &diffusion,
                x_t.clone(),
                steps,
                eta,
                &mut rng,
                &mut |_, _| {},
            )
            .unwrap();
            let err = max_abs_diff(out, x0.clone());
            assert!(
                err < 1e-4,
                "ddim {steps} steps eta={eta} {what}: off by {err}"
            );
        }
    }
}

/// The ideal ε-predictor for data x₀ ~ N(0, 1): with x_t = a x₀ + s ε and a² + s² = 1,
/// E[ε | x_t] = s x_t.
struct StandardNormalDenoiser<'a>(&'a GaussianDiffusion);

impl Denoiser for StandardNormalDenoiser<'_> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t = to_vec(t)[0] as usize;
        x_t.mul_scalar(self.0.schedule.sqrt_one_minus_alphas_cumprod[t] as f32)
    }
}

fn mean_var(x: Tensor<4>) -> (f64, f64) {
    let v: Vec<f64> = to_vec(x).into_iter().map(f64::from).collect();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
}

/// For x₀ ~ N(0, 1) every marginal q(x_t) is N(0, 1) and the true reverse step is
/// N(√α_t x_t, β_t), exactly the fixed-large DDPM step (Ho et al. 2020, §3.2), so ancestral
/// sampling must return variance ᾱ_0 ≈ 1 (the last step outputs x̂₀ = √ᾱ_0 x). The same holds
/// for a respaced chain, whose β' = 1 − ᾱ_τ/ᾱ_τ' make it the forward process of its own visited
/// timesteps (Nichol & Dhariwal 2021, §4); run at T and at 20 steps.
/// 32768 samples: standard errors √(1/n) = 0.0055 for the mean, √(2/n) = 0.0078 for the
/// variance; the bounds are about 5 of them.
#[test]
fn ddpm_fixed_large_preserves_a_standard_normal() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 200,
        ddpm_variance: DdpmVariance::FixedLarge,
        clip_sample: false,
        ..Default::default()
    })
    .unwrap();
    let denoiser = StandardNormalDenoiser(&diffusion);
    for steps in [200, 20] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x_t = randn(&mut rng, [32768, 1, 1, 1], &device());
        let out = sample_ddpm(&denoiser, &diffusion, x_t, steps, &mut rng, &mut |_, _| {});
        let (mean, var) = mean_var(out.unwrap());
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.04,
            "{steps} steps: mean {mean}, var {var}"
        );
    }
}

/// With the same ideal denoiser, one deterministic DDIM step from t to t' is linear:
/// x̂₀ = a x, ε̂ = s x, so x' = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'}) ε̂ = (a a' + s s') x (Song et al. 2021,
/// eq. 12 with σ = 0), and the last step (ᾱ' = 1) gives a x. The whole run multiplies by the
/// product of those factors over the respaced schedule — checked element by element for every
/// spacing, which also checks that each step goes to the next timestep of the schedule.
#[test]
fn ddim_eta_0_is_the_expected_linear_map() {
    for spacing in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        let diffusion = GaussianDiffusion::new(DiffusionConfig {
            num_train_timesteps: 200,
            clip_sample: false,
            timestep_spacing: spacing,
            ..Default::default()
        })
        .unwrap();
        let s = &diffusion.schedule;
        let steps = oxidiff_diffusion::respace_timesteps(200, 13, spacing).unwrap();
        let factor: f64 = steps
            .iter()
            .enumerate()
            .map(|(i, &t)| match steps.get(i + 1) {
                Some(&p) => {
                    s.sqrt_alphas_cumprod[t] * s.sqrt_alphas_cumprod[p]
                        + s.sqrt_one_minus_alphas_cumprod[t] * s.sqrt_one_minus_alphas_cumprod[p]
                }
                None => s.sqrt_alphas_cumprod[t],
            })
            .product();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x_t = randn(&mut rng, [64, 1, 1, 1], &device());
        let denoiser = StandardNormalDenoiser(&diffusion);
        let out = sample_ddim(
            &denoiser,
            &diffusion,
            x_t.clone(),
            13,
            0.0,
            &mut rng,
            &mut |_, _| {},
        )
        .unwrap();
        for (o, x) in to_vec(out).iter().zip(to_vec(x_t)) {
            let expected = factor as f32 * x;
            assert!(
                (o - expected).abs() < 1e-5,
                "{spacing:?}: {o} vs {expected}"
            );
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 50,
        ..Default::default()
    })
    .unwrap();
    let denoiser = PointDenoiser {
        diffusion: &diffusion,
        x0: point(4),
    };
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x_t = randn(&mut rng, SHAPE, &device());
        // Stop before the end, where every run converges on x₀*.
        let ddim = sample_ddim(
            &denoiser,
            &diffusion,
            x_t.clone(),
            5,
            1.0,
            &mut rng,
            &mut |_, _| {},
        )
        .unwrap();
        let ddpm = sample_ddpm(&denoiser, &diffusion, x_t, 50, &mut rng, &mut |_, _| {}).unwrap();
        (
            to_vec(ddim),
            to_vec(ddpm),
            to_vec(randn(&mut rng, SHAPE, &device())),
        )
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).2, run(10).2);
}

#[test]
fn sample_ddim_rejects_bad_arguments() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 10,
        ..Default::default()
    })
    .unwrap();
    let denoiser = PointDenoiser {
        diffusion: &diffusion,
        x0: point(5),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x_t = randn(&mut rng, SHAPE, &device());
    for (steps, eta, name) in [
        (0, 0.0, "num_inference_steps"),
        (11, 0.0, "num_inference_steps"),
        (5, -0.1, "eta"),
        (5, 1.5, "eta"),
        (5, f64::NAN, "eta"),
    ] {
        let err = sample_ddim(
            &denoiser,
            &diffusion,
            x_t.clone(),
            steps,
            eta,
            &mut rng,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, DiffusionError::InvalidArgument { name: n, .. } if n == name),
            "{steps} {eta}: {err}"
        );
    }
}
