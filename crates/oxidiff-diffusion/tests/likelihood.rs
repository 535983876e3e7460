//! Golden tests of the likelihood maths (normal_kl, the discretised Gaussian decoder, the bound's
//! terms with fixed and learned variances, the prior term, bits/dim) against a float64 numpy /
//! scipy transcription of the papers' equations.
//!
//! Regenerate tests/golden/likelihood.json from the repository root with
//!
//!     /opt/refenv/bin/python tools/reference/likelihood_golden.py
//!
//! Tolerances: this crate computes in float32 (the network's precision) what the reference
//! computes in float64 from the same float32 inputs.
//! - normal_kl: 1e-5 relative to the tensor's scale (a handful of float32 operations);
//! - log-likelihoods: 5e-6 absolute in nats plus 5e-6 relative — Φ's tails are computed with
//!   relative precision (erfc fit, < 1.2e-7), so even bins 10σ out keep ~6 digits (measured:
//!   1.4e-6 relative at log p = −10); where a bin lies so far out that its float32 mass
//!   underflows (log p < −25), both sides clamp at different floors, so those are only checked
//!   to be very negative;
//! - the bound's terms: 2e-3 relative plus 1e-6 bits absolute — at t = 999 x̂₀ divides by
//!   √ᾱ_t ≈ 0.0064, which multiplies float32 rounding by ~160 before the KL squares it.

mod common;

use burn::tensor::Tensor;
use common::{assert_close_scaled, device, tensor4, to_vec};
use oxidiff_diffusion::{
    BetaSchedule, Denoiser, DiffusionConfig, GaussianDiffusion, Prediction, VarianceType,
    discretized_gaussian_log_likelihood, normal_kl,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    normal_kl: KlCase,
    discretized: DiscretizedCase,
    vlb: VlbCase,
    sanity_uniform_levels: Sanity,
}

#[derive(Deserialize)]
struct KlCase {
    shape: [usize; 4],
    mean1: Vec<f32>,
    logvar1: Vec<f32>,
    mean2: Vec<f32>,
    logvar2_per_sample: Vec<f32>,
    kl: Vec<f32>,
}

#[derive(Deserialize)]
struct DiscretizedCase {
    shape: [usize; 4],
    x: Vec<f32>,
    mean: Vec<f32>,
    log_scale: Vec<f32>,
    log_likelihood: Vec<f64>,
}

#[derive(Deserialize)]
struct VlbCase {
    shape: [usize; 4],
    t: Vec<usize>,
    x_start: Vec<f32>,
    x_t: Vec<f32>,
    eps_hat: Vec<f32>,
    v_hat: Vec<f32>,
    terms_fixed_small: Vec<f64>,
    terms_learned: Vec<f64>,
    prior: Vec<f64>,
}

#[derive(Deserialize)]
struct Sanity {
    betas: [f64; 2],
    prior: f64,
    decoder: f64,
    diffusion: f64,
    total: f64,
}

fn golden() -> Golden {
    let path = format!(
        "{}/tests/golden/likelihood.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_terms(actual: &[f32], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let tol = 2e-3 * e.abs() + 1e-6;
        assert!(
            (f64::from(a) - e).abs() <= tol,
            "{what}[{i}]: got {a:e}, reference {e:e}"
        );
    }
}

#[test]
fn normal_kl_matches_the_closed_form() {
    let g = golden().normal_kl;
    let [b, ..] = g.shape;
    let kl = normal_kl(
        tensor4(&g.mean1, g.shape),
        tensor4(&g.logvar1, g.shape),
        tensor4(&g.mean2, g.shape),
        tensor4(&g.logvar2_per_sample, [b, 1, 1, 1]),
    );
    assert_close_scaled(&to_vec(kl), &g.kl, 1e-5, "normal_kl");
}

#[test]
fn discretized_log_likelihood_matches_float64_reference() {
    let g = golden().discretized;
    let ll = to_vec(discretized_gaussian_log_likelihood(
        tensor4(&g.x, g.shape),
        tensor4(&g.mean, g.shape),
        tensor4(&g.log_scale, g.shape),
    ));
    for (i, (&a, &e)) in ll.iter().zip(&g.log_likelihood).enumerate() {
        if e < -25.0 {
            assert!(a < -20.0, "[{i}]: got {a}, reference {e} (far tail)");
            continue;
        }
        let tol = 5e-6 + 5e-6 * e.abs();
        assert!(
            (f64::from(a) - e).abs() <= tol,
            "[{i}]: got {a}, reference {e}"
        );
        assert!(a <= 0.0, "[{i}]: a log-probability above 0: {a}");
    }
}

fn diffusion(variance_type: VarianceType) -> GaussianDiffusion {
    GaussianDiffusion::new(DiffusionConfig {
        variance_type,
        loss: match variance_type {
            VarianceType::Fixed => oxidiff_diffusion::LossKind::Vlb,
            VarianceType::Learned => oxidiff_diffusion::LossKind::Hybrid,
        },
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn vlb_terms_and_prior_match_the_reference() {
    let g = golden().vlb;
    let [b, c, h, w] = g.shape;
    let x_start = tensor4(&g.x_start, g.shape);
    let x_t = tensor4(&g.x_t, g.shape);
    let eps = tensor4(&g.eps_hat, g.shape);

    let fixed = diffusion(VarianceType::Fixed);
    let step = fixed.p_mean_variance(eps.clone(), x_t.clone(), &g.t, false);
    let terms = to_vec(fixed.vlb_terms(&step, x_start.clone(), x_t.clone(), &g.t));
    assert_terms(&terms, &g.terms_fixed_small, "fixed-small terms");

    let learned = diffusion(VarianceType::Learned);
    let output = Tensor::cat(vec![eps, tensor4(&g.v_hat, g.shape)], 1);
    assert_eq!(output.dims(), [b, 2 * c, h, w]);
    let step = learned.p_mean_variance(output, x_t.clone(), &g.t, false);
    let terms = to_vec(learned.vlb_terms(&step, x_start.clone(), x_t, &g.t));
    assert_terms(&terms, &g.terms_learned, "learned-variance terms");

    assert_terms(&to_vec(fixed.prior_bpd(x_start)), &g.prior, "prior");
}

/// Predicts x₀ = 0 whatever it is shown.
struct ZeroSample;

impl Denoiser for ZeroSample {
    fn denoise(&self, x_t: Tensor<4>, _t: Tensor<1>) -> Tensor<4> {
        x_t.zeros_like()
    }
}

#[test]
fn bits_per_dim_of_a_trivial_model_on_uniform_levels_is_analytic_and_above_the_entropy() {
    let g = golden().sanity_uniform_levels;
    let d = GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 2,
        beta_schedule: BetaSchedule::Linear,
        beta_start: g.betas[0],
        beta_end: g.betas[1],
        prediction: Prediction::Sample,
        ..Default::default()
    })
    .unwrap();
    // Every 8-bit level once: the data's entropy is exactly 8 bits per dimension.
    let levels: Vec<f32> = (0..256).map(|k| k as f32 * 2.0 / 255.0 - 1.0).collect();
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(levels, [1, 1, 16, 16]),
        &device(),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let bpd = d.bits_per_dim(&ZeroSample, x, 1, &mut rng);
    let close = |a: f64, e: f64, what: &str| {
        assert!(
            (a - e).abs() <= 1e-4 * e.abs() + 1e-5,
            "{what}: {a} vs analytic {e}"
        )
    };
    close(bpd.prior[0], g.prior, "prior");
    close(bpd.decoder[0], g.decoder, "decoder");
    close(bpd.diffusion[0], g.diffusion, "diffusion");
    close(bpd.total[0], g.total, "total");
    assert!(
        bpd.total[0] >= 8.0,
        "{} bits/dim beats the entropy",
        bpd.total[0]
    );
}

#[test]
fn the_oracle_of_a_single_image_pays_only_for_the_decoder_and_prior() {
    // With the true x₀ known, every posterior mean is exact and the fixed-small variance is the
    // true one, so each KL term is 0 (up to float32), with any stride; what remains is the
    // decoder and the prior.
    let d = GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 50,
        ..Default::default()
    })
    .unwrap();
    let values: Vec<f32> = (0..2 * 3 * 4 * 4)
        .map(|k| ((k * 37) % 256) as f32 * 2.0 / 255.0 - 1.0)
        .collect();
    let x0 = tensor4(&values, [2, 3, 4, 4]);
    let oracle = common::PointDenoiser {
        diffusion: &d,
        x0: x0.clone(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let full = d.bits_per_dim(&oracle, x0.clone(), 1, &mut rng);
    let strided = d.bits_per_dim(&oracle, x0, 7, &mut rng);
    for bpd in [&full, &strided] {
        for i in 0..2 {
            assert!(bpd.diffusion[i].abs() < 1e-3, "{:?}", bpd.diffusion);
            let sum = bpd.prior[i] + bpd.decoder[i] + bpd.diffusion[i];
            assert!((bpd.total[i] - sum).abs() < 1e-9);
        }
    }
    // The decoder term is exact in both (t = 0 is always evaluated) and noise-free for the
    // oracle, whose decoder mean is x₀ itself: the same number, between 0 and 8 bits.
    for i in 0..2 {
        assert!((full.decoder[i] - strided.decoder[i]).abs() < 1e-4);
        assert!((0.0..8.0).contains(&full.decoder[i]), "{:?}", full.decoder);
    }
}
