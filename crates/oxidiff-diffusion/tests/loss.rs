//! The parameterisations and the loss, against values worked out by hand.
//!
//! Hand schedule used throughout: T = 2, linear β from 0.2 to 0.5, so
//!   β = [0.2, 0.5], α = [0.8, 0.5], ᾱ = [0.8, 0.8 · 0.5] = [0.8, 0.4],
//!   SNR = ᾱ/(1 − ᾱ) = [0.8/0.2, 0.4/0.6] = [4, 2/3].

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{device, tensor4, to_vec};
use oxidiff_diffusion::{DiffusionConfig, DiffusionError, GaussianDiffusion, Prediction, randn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn hand(prediction: Prediction, min_snr_gamma: Option<f64>, zero_snr: bool) -> GaussianDiffusion {
    GaussianDiffusion::new(DiffusionConfig {
        num_train_timesteps: 2,
        beta_start: 0.2,
        beta_end: 0.5,
        prediction,
        min_snr_gamma,
        rescale_zero_terminal_snr: zero_snr,
        ..Default::default()
    })
    .unwrap()
}

fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= tol,
            "got {actual:?}, expected {expected:?}"
        );
    }
}

#[test]
fn hand_schedule() {
    let d = hand(Prediction::Epsilon, None, false);
    assert_all_close(&d.schedule.alphas_cumprod, &[0.8, 0.4], 1e-15);
    assert_all_close(
        &[d.schedule.snr(0), d.schedule.snr(1)],
        &[4.0, 2.0 / 3.0],
        1e-14,
    );
    // β̃_1 = β_1 (1 − ᾱ_0)/(1 − ᾱ_1) = 0.5 · 0.2/0.6 = 1/6
    assert_all_close(&d.schedule.posterior_variance, &[0.0, 1.0 / 6.0], 1e-15);
    // Zero terminal SNR rescale: √ᾱ = [√0.8, √0.4] → (√ᾱ − √0.4) · √0.8/(√0.8 − √0.4)
    //   = [√0.8, 0], so ᾱ = [0.8, 0] and SNR = [4, 0].
    let z = hand(Prediction::Velocity, None, true);
    assert_all_close(&z.schedule.alphas_cumprod, &[0.8, 0.0], 1e-15);
    assert_eq!(z.schedule.snr(1), 0.0);
}

#[test]
fn velocity_and_q_sample_by_hand() {
    // x₀ = 1, ε = 2 everywhere.
    // t = 0: a = √0.8 = 2√0.2, s = √0.2:
    //   v   = a ε − s x₀ = 4√0.2 − √0.2 = 3√0.2 = 1.3416408
    //   x_t = a x₀ + s ε = 2√0.2 + 2√0.2 = 4√0.2 = 1.7888544
    // t = 1: a = √0.4, s = √0.6:
    //   v   = 2√0.4 − √0.6 = 1.2649111 − 0.7745967 = 0.4903144
    //   x_t = √0.4 + 2√0.6 = 0.6324555 + 1.5491933 = 2.1816488
    let d = hand(Prediction::Velocity, None, false);
    let x0 = tensor4(&[1.0; 2], [2, 1, 1, 1]);
    let eps = tensor4(&[2.0; 2], [2, 1, 1, 1]);
    let t = [0, 1];
    let v = to_vec(d.velocity(x0.clone(), eps.clone(), &t));
    let x_t = to_vec(d.q_sample(x0.clone(), &t, eps.clone()));
    let r = 0.2f32.sqrt();
    assert!(
        (v[0] - 3.0 * r).abs() < 1e-6 && (v[1] - 0.490_314_4).abs() < 1e-6,
        "{v:?}"
    );
    assert!(
        (x_t[0] - 4.0 * r).abs() < 1e-6 && (x_t[1] - 2.181_648_8).abs() < 1e-6,
        "{x_t:?}"
    );
    // And back: x₀ = a x_t − s v, ε = s x_t + a v.
    let (x0_hat, eps_hat) =
        d.predict_start_and_noise(tensor4(&v, [2, 1, 1, 1]), tensor4(&x_t, [2, 1, 1, 1]), &t);
    for (a, e) in to_vec(x0_hat).iter().zip([1.0, 1.0]) {
        assert!((a - e).abs() < 1e-6);
    }
    for (a, e) in to_vec(eps_hat).iter().zip([2.0, 2.0]) {
        assert!((a - e).abs() < 1e-6);
    }
}

#[test]
fn min_snr_weights_by_hand() {
    // γ = 1, SNR = [4, 2/3] (see header):
    //   ε:  min(SNR, γ)/SNR       = [1/4, (2/3)/(2/3)]   = [0.25, 1]
    //   x₀: min(SNR, γ)           = [1, 2/3]
    //   v:  min(SNR, γ)/(SNR + 1) = [1/5, (2/3)/(5/3)]   = [0.2, 0.4]
    let t = [0, 1];
    let cases = [
        (Prediction::Epsilon, [0.25, 1.0]),
        (Prediction::Sample, [1.0, 2.0 / 3.0]),
        (Prediction::Velocity, [0.2, 0.4]),
    ];
    for (prediction, expected) in cases {
        let w = hand(prediction, Some(1.0), false).loss_weights(&t);
        assert_all_close(&w, &expected, 1e-12);
        // No weighting without γ.
        assert_eq!(
            hand(prediction, None, false).loss_weights(&t),
            vec![1.0, 1.0]
        );
    }
    // γ = 5 on the same schedule: SNR = 4 < 5 is untouched in x₀-space, so
    //   ε: 4/4 = 1, x₀: 4, v: 4/5 = 0.8 at t = 0.
    assert_all_close(
        &hand(Prediction::Epsilon, Some(5.0), false).loss_weights(&[0]),
        &[1.0],
        1e-12,
    );
    assert_all_close(
        &hand(Prediction::Sample, Some(5.0), false).loss_weights(&[0]),
        &[4.0],
        1e-12,
    );
    assert_all_close(
        &hand(Prediction::Velocity, Some(5.0), false).loss_weights(&[0]),
        &[0.8],
        1e-12,
    );
}

#[test]
fn min_snr_weights_at_zero_terminal_snr_are_finite() {
    // ᾱ = [0.8, 0], SNR = [4, 0]; γ = 1:
    //   x₀: [min(4, 1), min(0, 1)] = [1, 0];  v: [1/5, 0/(0 + 1)] = [0.2, 0].
    let w = hand(Prediction::Sample, Some(1.0), true).loss_weights(&[0, 1]);
    assert_all_close(&w, &[1.0, 0.0], 1e-12);
    let w = hand(Prediction::Velocity, Some(1.0), true).loss_weights(&[0, 1]);
    assert_all_close(&w, &[0.2, 0.0], 1e-12);
    // ε-prediction cannot be combined with a zero terminal SNR at all.
    let err = GaussianDiffusion::new(DiffusionConfig {
        rescale_zero_terminal_snr: true,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, DiffusionError::InvalidConfig { key, .. } if key == "rescale_zero_terminal_snr")
    );
}

/// Random (x₀, ε) with a fixed seed on a default T = 1000 schedule.
fn random_batch(rng: &mut ChaCha8Rng) -> (Tensor<4>, Tensor<4>, Vec<usize>) {
    let shape = [4, 3, 5, 5];
    let x0 = randn(rng, shape, &device()).clamp(-1.0, 1.0);
    let eps = randn(rng, shape, &device());
    (x0, eps, vec![3, 150, 600, 990])
}

#[test]
fn ideal_model_output_has_zero_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (x0, eps, t) = random_batch(&mut rng);
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::Velocity,
    ] {
        for gamma in [None, Some(5.0)] {
            let d = GaussianDiffusion::new(DiffusionConfig {
                prediction,
                min_snr_gamma: gamma,
                ..Default::default()
            })
            .unwrap();
            let ideal = d.training_target(x0.clone(), eps.clone(), &t);
            let loss = to_vec(d.training_loss(ideal, x0.clone(), eps.clone(), &t));
            assert_eq!(loss, vec![0.0], "{prediction:?} γ={gamma:?}");
        }
    }
}

/// Per-sample mean squared value over C, H, W.
fn per_sample_ms(x: Tensor<4>) -> Vec<f64> {
    let b = x.dims()[0];
    to_vec(x.square().mean_dims(&[1, 2, 3]).reshape([b]))
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn error_spaces_are_related_by_the_derived_factors() {
    // One wrong x̂₀ = x₀ + δ at fixed x_t, expressed in all three spaces (see
    // GaussianDiffusion::loss_weights for the derivation):
    //   ‖ε̂ − ε‖² = SNR ‖δ‖²,  ‖v̂ − v‖² = (SNR + 1) ‖δ‖².
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (x0, eps, t) = random_batch(&mut rng);
    let delta = randn(&mut rng, x0.dims(), &device()).mul_scalar(0.1);
    let d = GaussianDiffusion::new(DiffusionConfig::default()).unwrap();
    let x_t = d.q_sample(x0.clone(), &t, eps.clone());
    let x0_hat = x0.clone() + delta.clone();
    let eps_hat = d.predict_noise_from_start(x_t.clone(), x0_hat.clone(), &t);
    let v_hat = d.velocity(x0_hat.clone(), eps_hat.clone(), &t);
    let v = d.velocity(x0.clone(), eps.clone(), &t);

    let dx0 = per_sample_ms(delta);
    let deps = per_sample_ms(eps_hat - eps.clone());
    let dv = per_sample_ms(v_hat - v);
    for (i, &ti) in t.iter().enumerate() {
        let snr = d.schedule.snr(ti);
        let rel_eps = deps[i] / (snr * dx0[i]);
        let rel_v = dv[i] / ((snr + 1.0) * dx0[i]);
        assert!(
            (rel_eps - 1.0).abs() < 1e-3,
            "t={ti}: ε factor off by {rel_eps}"
        );
        assert!(
            (rel_v - 1.0).abs() < 1e-3,
            "t={ti}: v factor off by {rel_v}"
        );
    }

    // Hence with min-SNR-γ the three losses agree: each equals mean_b min(SNR, γ) ‖δ‖².
    let gamma = 5.0;
    let expected: f64 = t
        .iter()
        .zip(&dx0)
        .map(|(&ti, e)| d.schedule.snr(ti).min(gamma) * e)
        .sum::<f64>()
        / t.len() as f64;
    for (prediction, output) in [
        (Prediction::Epsilon, eps_hat_for(&d, &x_t, &x0_hat, &t)),
        (Prediction::Sample, x0_hat.clone()),
        (Prediction::Velocity, v_hat_for(&d, &x_t, &x0_hat, &t)),
    ] {
        let dp = GaussianDiffusion::new(DiffusionConfig {
            prediction,
            min_snr_gamma: Some(gamma),
            ..Default::default()
        })
        .unwrap();
        let loss = f64::from(to_vec(dp.training_loss(output, x0.clone(), eps.clone(), &t))[0]);
        assert!(
            (loss - expected).abs() <= 1e-3 * expected,
            "{prediction:?}: loss {loss}, expected {expected}"
        );
    }
}

fn eps_hat_for(
    d: &GaussianDiffusion,
    x_t: &Tensor<4>,
    x0_hat: &Tensor<4>,
    t: &[usize],
) -> Tensor<4> {
    d.predict_noise_from_start(x_t.clone(), x0_hat.clone(), t)
}

fn v_hat_for(d: &GaussianDiffusion, x_t: &Tensor<4>, x0_hat: &Tensor<4>, t: &[usize]) -> Tensor<4> {
    let eps_hat = eps_hat_for(d, x_t, x0_hat, t);
    d.velocity(x0_hat.clone(), eps_hat, t)
}

#[test]
fn loss_is_differentiable_in_model_output() {
    // L = (1/B) Σ_b w_b (1/N) Σ (ŷ − y)², so ∂L/∂ŷ = 2 w_b (ŷ − y) / (B N), N = C·H·W.
    let d = hand(Prediction::Velocity, Some(1.0), false);
    let ad = device().autodiff();
    let x0 = Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 4], [2, 1, 1, 2]), &ad);
    let eps = Tensor::<4>::from_data(TensorData::new(vec![-1.0f32; 4], [2, 1, 1, 2]), &ad);
    let out = Tensor::<4>::from_data(
        TensorData::new(vec![0.25f32, -0.5, 1.0, 0.0], [2, 1, 1, 2]),
        &ad,
    )
    .require_grad();
    let t = [0, 1];
    let target = to_vec(d.training_target(x0.clone(), eps.clone(), &t));
    let loss = d.training_loss(out.clone(), x0, eps, &t);
    let grads = loss.backward();
    let grad = to_vec(out.grad(&grads).expect("gradient"));
    let w = d.loss_weights(&t);
    let out_v = [0.25f32, -0.5, 1.0, 0.0];
    for i in 0..4 {
        let expected = 2.0 * w[i / 2] as f32 * (out_v[i] - target[i]) / 4.0;
        assert!(
            (grad[i] - expected).abs() < 1e-6,
            "grad[{i}] = {}, expected {expected}",
            grad[i]
        );
    }
}
