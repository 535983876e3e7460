//! Inpainting (replacement and RePaint), SDEdit and known-σ denoising, checked with the ideal
//! denoiser of a single-point data distribution, whose answer is known exactly.

mod common;

use burn::tensor::Tensor;
use common::{PointDenoiser, device, max_abs_diff, tensor4, to_vec};
use oxidiff_diffusion::sample::{
    RePaintOptions, denoise_known_sigma, inpaint_ddim, repaint, repaint_schedule, sdedit,
    sdedit_timesteps, timestep_for_sigma,
};
use oxidiff_diffusion::{
    Denoiser, DiffusionConfig, DiffusionError, GaussianDiffusion, LossKind, Prediction,
    TimestepSpacing, VarianceType, randn,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SHAPE: [usize; 4] = [2, 3, 4, 4];
const T: usize = 60;

fn image(seed: u64) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    randn(&mut rng, SHAPE, &device())
        .mul_scalar(0.5)
        .clamp(-1.0, 1.0)
}

fn config(prediction: Prediction) -> DiffusionConfig {
    DiffusionConfig {
        num_train_timesteps: T,
        prediction,
        ..Default::default()
    }
}

/// ε, v and x₀ prediction, plus v prediction on a zero-terminal-SNR trailing schedule.
fn configs() -> Vec<DiffusionConfig> {
    vec![
        config(Prediction::Epsilon),
        config(Prediction::Velocity),
        config(Prediction::Sample),
        DiffusionConfig {
            rescale_zero_terminal_snr: true,
            timestep_spacing: TimestepSpacing::Trailing,
            ..config(Prediction::Velocity)
        },
    ]
}

/// `[1, 1, 4, 4]`: columns 0–1 known (1), column 2 half known (0.5), column 3 unknown (0).
fn mask() -> Tensor<4> {
    let row = [1.0, 1.0, 0.5, 0.0];
    let values: Vec<f32> = (0..4).flat_map(|_| row).collect();
    tensor4(&values, [1, 1, 4, 4])
}

/// Checks an inpainting result against m · known + (1 − m) · x₀: exactly where m = 1, within
/// `tol` elsewhere.
fn check_inpainted(out: Tensor<4>, known: &Tensor<4>, x0: &Tensor<4>, tol: f32, what: &str) {
    let (out, known, x0) = (to_vec(out), to_vec(known.clone()), to_vec(x0.clone()));
    let m = to_vec(mask());
    for (i, ((o, k), x)) in out.iter().zip(&known).zip(&x0).enumerate() {
        let m = m[i % 16];
        if m == 1.0 {
            assert_eq!(o, k, "{what}[{i}]: known pixel changed");
        } else {
            let expected = m * k + (1.0 - m) * x;
            assert!(
                (o - expected).abs() < tol,
                "{what}[{i}]: got {o}, expected {expected} (mask {m})"
            );
        }
    }
}

/// The data is the single point x₀*, so the ideal denoiser's x̂₀ is x₀* and the last step of
/// either sampler outputs x₀* in the generated region; the known region (a different image, to
/// tell the two apart) is pasted back exactly.
#[test]
fn inpainting_a_point_distribution_keeps_known_and_fills_x0() {
    for cfg in configs() {
        let diffusion = GaussianDiffusion::new(cfg.clone()).unwrap();
        let (x0, known) = (image(1), image(2));
        let denoiser = PointDenoiser {
            diffusion: &diffusion,
            x0: x0.clone(),
        };
        let what = format!(
            "{:?} zero-snr={}",
            cfg.prediction, cfg.rescale_zero_terminal_snr
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (steps, eta) in [(10, 0.0), (T, 1.0)] {
            let mut calls = 0;
            let out = inpaint_ddim(
                &denoiser,
                &diffusion,
                known.clone(),
                mask(),
                steps,
                eta,
                &mut rng,
                &mut |i, n| {
                    calls += 1;
                    assert_eq!((i, n), (calls, steps));
                },
            )
            .unwrap();
            assert_eq!(calls, steps);
            check_inpainted(out, &known, &x0, 1e-4, &format!("ddim {steps} {what}"));
        }
        for (steps, jump_length, resample_count) in [(12, 3, 3), (T, 10, 2), (5, 1, 1)] {
            let options = RePaintOptions {
                jump_length,
                resample_count,
            };
            let expected_calls = repaint_schedule(steps, jump_length, resample_count)
                .unwrap()
                .iter()
                .filter(|(from, to)| to < from)
                .count();
            let mut calls = 0;
            let out = repaint(
                &denoiser,
                &diffusion,
                known.clone(),
                mask(),
                steps,
                options,
                &mut rng,
                &mut |i, n| {
                    calls += 1;
                    assert_eq!((i, n), (calls, expected_calls));
                },
            )
            .unwrap();
            assert_eq!(calls, expected_calls);
            check_inpainted(
                out,
                &known,
                &x0,
                1e-4,
                &format!("repaint {options:?} {steps} {what}"),
            );
        }
    }
}

/// A learned-variance network outputs 2C channels; the ideal one is given v = 0 (log σ² halfway
/// between log β̃ and log β). RePaint must use only the mean half and still land on x₀*.
struct LearnedPoint<'a>(PointDenoiser<'a>);

impl Denoiser for LearnedPoint<'_> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let mean = self.0.denoise(x_t, t);
        let v = mean.zeros_like();
        Tensor::cat(vec![mean, v], 1)
    }
}

#[test]
fn inpainting_with_a_learned_variance() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        variance_type: VarianceType::Learned,
        loss: LossKind::Hybrid,
        ..config(Prediction::Epsilon)
    })
    .unwrap();
    let (x0, known) = (image(4), image(5));
    let denoiser = LearnedPoint(PointDenoiser {
        diffusion: &diffusion,
        x0: x0.clone(),
    });
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let options = RePaintOptions {
        jump_length: 4,
        resample_count: 2,
    };
    let out = repaint(
        &denoiser,
        &diffusion,
        known.clone(),
        mask(),
        20,
        options,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    check_inpainted(out, &known, &x0, 1e-4, "repaint learned");
    let out = inpaint_ddim(
        &denoiser,
        &diffusion,
        known.clone(),
        mask(),
        20,
        0.5,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    check_inpainted(out, &known, &x0, 1e-4, "ddim learned");
}

/// A per-pixel, per-channel, per-batch-item mask is accepted as well as a broadcast one.
#[test]
fn full_shape_mask_is_accepted() {
    let diffusion = GaussianDiffusion::new(config(Prediction::Epsilon)).unwrap();
    let (x0, known) = (image(7), image(8));
    let denoiser = PointDenoiser {
        diffusion: &diffusion,
        x0: x0.clone(),
    };
    let m: Vec<f32> = (0..96).map(|i| (i % 2) as f32).collect();
    let full = tensor4(&m, SHAPE);
    let out = inpaint_ddim(
        &denoiser,
        &diffusion,
        known.clone(),
        full,
        8,
        0.0,
        &mut ChaCha8Rng::seed_from_u64(9),
        &mut |_, _| {},
    )
    .unwrap();
    let (out, known, x0) = (to_vec(out), to_vec(known), to_vec(x0));
    for i in 0..96 {
        if i % 2 == 1 {
            assert_eq!(out[i], known[i], "[{i}]");
        } else {
            assert!(
                (out[i] - x0[i]).abs() < 1e-4,
                "[{i}]: {} vs {}",
                out[i],
                x0[i]
            );
        }
    }
}

/// The worked example n = 5, j = 2, r = 2: jump points at levels 1 and 3 (RePaint's t = 0 and
/// 2, both < n − j = 3), each jumped from once.
#[test]
fn repaint_schedule_small_example() {
    assert_eq!(
        repaint_schedule(5, 2, 2).unwrap(),
        vec![
            (5, 4),
            (4, 3),
            (3, 5),
            (5, 4),
            (4, 3),
            (3, 2),
            (2, 1),
            (1, 3),
            (3, 2),
            (2, 1),
            (1, 0),
        ]
    );
    let plain: Vec<(usize, usize)> = (1..=4).rev().map(|k| (k, k - 1)).collect();
    assert_eq!(repaint_schedule(4, 1, 1).unwrap(), plain);
    assert_eq!(repaint_schedule(4, 4, 10).unwrap(), plain);
    assert_eq!(repaint_schedule(1, 1, 5).unwrap(), vec![(1, 0)]);
}

/// For many (n, j, r): the moves are contiguous, start at n and end at 0, every downward move is
/// one level, every upward move is exactly j levels from a jump point (1, j + 1, 2j + 1, … with
/// a target ≤ n), each jump point is jumped from r − 1 times and so arrived at from above r
/// times, and the level never leaves 0..=n.
#[test]
fn repaint_schedule_visits_jump_points_resample_count_times() {
    for n in 1..=40 {
        for j in 1..=12 {
            for r in 1..=4 {
                let moves = repaint_schedule(n, j, r).unwrap();
                let what = format!("n={n} j={j} r={r}");
                assert_eq!(moves[0].0, n, "{what}");
                assert_eq!(*moves.last().unwrap(), (1, 0), "{what}");
                assert!(moves.windows(2).all(|w| w[0].1 == w[1].0), "{what}");
                let mut jumps_from = vec![0; n + 1];
                let mut arrivals = vec![0; n + 1];
                for &(from, to) in &moves {
                    assert!(from <= n && to <= n, "{what}: {from} → {to}");
                    if to < from {
                        assert_eq!(to, from - 1, "{what}");
                        arrivals[to] += 1;
                    } else {
                        assert_eq!(to, from + j, "{what}: jump {from} → {to}");
                        jumps_from[from] += 1;
                    }
                }
                let mut jump_points = 0;
                for level in 1..=n {
                    let is_point = (level - 1) % j == 0 && level + j <= n;
                    if is_point {
                        jump_points += 1;
                        assert_eq!(jumps_from[level], r - 1, "{what}: level {level}");
                        assert_eq!(arrivals[level], r, "{what}: level {level}");
                    } else {
                        assert_eq!(jumps_from[level], 0, "{what}: level {level}");
                    }
                }
                assert_eq!(arrivals[0], 1, "{what}");
                assert_eq!(moves.len(), n + jump_points * (r - 1) * (j + 1), "{what}");
            }
        }
    }
}

/// SDEdit from any strength ends on x₀* for the point data, whatever the guide image.
#[test]
fn sdedit_returns_the_point() {
    for cfg in configs() {
        let diffusion = GaussianDiffusion::new(cfg.clone()).unwrap();
        let x0 = image(10);
        let denoiser = PointDenoiser {
            diffusion: &diffusion,
            x0: x0.clone(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (strength, steps, eta) in [
            (0.3, 5, 0.0),
            (0.75, 10, 0.5),
            (1.0, 20, 1.0),
            (0.01, 1, 0.0),
        ] {
            let mut calls = 0;
            let out = sdedit(
                &denoiser,
                &diffusion,
                image(12),
                strength,
                steps,
                eta,
                &mut rng,
                &mut |_, _| calls += 1,
            )
            .unwrap();
            assert_eq!(calls, steps);
            let err = max_abs_diff(out, x0.clone());
            assert!(
                err < 1e-4,
                "{:?} zero-snr={} strength {strength}: off by {err}",
                cfg.prediction,
                cfg.rescale_zero_terminal_snr
            );
        }
    }
}

#[test]
fn sdedit_starts_at_strength_times_t() {
    let diffusion = GaussianDiffusion::new(config(Prediction::Epsilon)).unwrap();
    // round(0.5 · 59) = round(29.5) = 30
    assert_eq!(
        sdedit_timesteps(&diffusion, 0.5, 4).unwrap(),
        vec![30, 20, 10, 0]
    );
    assert_eq!(sdedit_timesteps(&diffusion, 1.0, 1).unwrap(), vec![T - 1]);
    let all = sdedit_timesteps(&diffusion, 1.0, T).unwrap();
    assert_eq!(all, (0..T).rev().collect::<Vec<_>>());
}

/// Known-σ denoising of x₀* + σ n returns x₀* for the point data.
#[test]
fn denoise_known_sigma_returns_the_point() {
    for cfg in configs() {
        let diffusion = GaussianDiffusion::new(cfg.clone()).unwrap();
        let x0 = image(13);
        let denoiser = PointDenoiser {
            diffusion: &diffusion,
            x0: x0.clone(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        for (sigma, steps, eta) in [(0.05, 1, 0.0), (0.3, 4, 0.0), (0.8, 6, 0.5)] {
            let noisy = x0.clone() + randn(&mut rng, SHAPE, &device()).mul_scalar(sigma as f32);
            let out = denoise_known_sigma(
                &denoiser,
                &diffusion,
                noisy,
                sigma,
                steps,
                eta,
                &mut rng,
                &mut |_, _| {},
            )
            .unwrap();
            let err = max_abs_diff(out, x0.clone());
            assert!(
                err < 1e-4,
                "{:?} zero-snr={} sigma {sigma}: off by {err}",
                cfg.prediction,
                cfg.rescale_zero_terminal_snr
            );
        }
    }
}

/// The chosen timestep's σ_t = √((1 − ᾱ_t)/ᾱ_t) is at least as close to σ as any other's, and
/// σ_t itself maps back to t.
#[test]
fn timestep_for_sigma_is_the_nearest() {
    for cfg in configs() {
        let diffusion = GaussianDiffusion::new(cfg).unwrap();
        let sigmas: Vec<f64> = diffusion
            .schedule
            .alphas_cumprod
            .iter()
            .map(|&ac| ((1.0 - ac) / ac).sqrt())
            .collect();
        for (t, &s) in sigmas.iter().enumerate() {
            if s.is_finite() {
                assert_eq!(timestep_for_sigma(&diffusion, s), t);
            }
        }
        for k in 0..200 {
            let sigma = 0.005 * 1.05f64.powi(k);
            let t = timestep_for_sigma(&diffusion, sigma);
            let d = (sigmas[t] - sigma).abs();
            assert!(
                sigmas.iter().all(|s| (s - sigma).abs() >= d),
                "sigma {sigma}: chose t = {t} (σ_t = {})",
                sigmas[t]
            );
        }
    }
}

fn assert_argument_error<T: std::fmt::Debug>(
    result: Result<T, DiffusionError>,
    name: &str,
    what: &str,
) {
    match result {
        Err(DiffusionError::InvalidArgument { name: n, message }) => {
            assert_eq!(n, name, "{what}: {message}");
            assert!(!message.is_empty());
        }
        other => panic!("{what}: expected an InvalidArgument naming {name}, got {other:?}"),
    }
}

#[test]
fn bad_arguments_are_errors_naming_the_argument() {
    let diffusion = GaussianDiffusion::new(config(Prediction::Epsilon)).unwrap();
    let denoiser = PointDenoiser {
        diffusion: &diffusion,
        x0: image(15),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let known = image(17);
    let ok = RePaintOptions::default();
    let masks = [
        ("height", Tensor::<4>::ones([1, 1, 3, 4], &device())),
        ("width", Tensor::<4>::ones([1, 1, 4, 5], &device())),
        ("batch", Tensor::<4>::ones([3, 1, 4, 4], &device())),
        ("channels", Tensor::<4>::ones([1, 2, 4, 4], &device())),
        (
            "values",
            Tensor::<4>::ones([1, 1, 4, 4], &device()).mul_scalar(2.0),
        ),
        (
            "nan",
            Tensor::<4>::ones([1, 1, 4, 4], &device()).mul_scalar(f32::NAN),
        ),
    ];
    for (what, m) in masks {
        let r = inpaint_ddim(
            &denoiser,
            &diffusion,
            known.clone(),
            m.clone(),
            5,
            0.0,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "mask", what);
        let r = repaint(
            &denoiser,
            &diffusion,
            known.clone(),
            m,
            5,
            ok,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "mask", what);
    }
    // The shape error states both shapes.
    let err = inpaint_ddim(
        &denoiser,
        &diffusion,
        known.clone(),
        Tensor::<4>::ones([1, 1, 3, 4], &device()),
        5,
        0.0,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("mask:") && err.contains("[2, 3, 4, 4]") && err.contains("[1, 1, 3, 4]"),
        "{err}"
    );

    for steps in [0, T + 1] {
        let r = inpaint_ddim(
            &denoiser,
            &diffusion,
            known.clone(),
            mask(),
            steps,
            0.0,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "num_steps", "inpaint_ddim steps");
        let r = repaint(
            &denoiser,
            &diffusion,
            known.clone(),
            mask(),
            steps,
            ok,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "num_steps", "repaint steps");
    }
    for eta in [-0.1, 1.5, f64::NAN] {
        let r = inpaint_ddim(
            &denoiser,
            &diffusion,
            known.clone(),
            mask(),
            5,
            eta,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "eta", "inpaint_ddim eta");
        let r = sdedit(
            &denoiser,
            &diffusion,
            known.clone(),
            0.5,
            5,
            eta,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "eta", "sdedit eta");
    }
    for (options, name) in [
        (
            RePaintOptions {
                jump_length: 0,
                resample_count: 3,
            },
            "jump_length",
        ),
        (
            RePaintOptions {
                jump_length: 3,
                resample_count: 0,
            },
            "resample_count",
        ),
    ] {
        let r = repaint(
            &denoiser,
            &diffusion,
            known.clone(),
            mask(),
            5,
            options,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, name, name);
        assert_argument_error(
            repaint_schedule(5, options.jump_length, options.resample_count),
            name,
            "schedule",
        );
    }

    for strength in [0.0, -0.5, 1.0001, 2.0, f64::NAN, f64::INFINITY] {
        let r = sdedit(
            &denoiser,
            &diffusion,
            known.clone(),
            strength,
            5,
            0.0,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "strength", &format!("strength {strength}"));
    }
    // strength 0.1 → t₀ = round(5.9) = 6: at most 7 timesteps.
    let r = sdedit(
        &denoiser,
        &diffusion,
        known.clone(),
        0.1,
        8,
        0.0,
        &mut rng,
        &mut |_, _| {},
    );
    assert_argument_error(r, "num_steps", "sdedit steps");
    let r = sdedit(
        &denoiser,
        &diffusion,
        known.clone(),
        0.1,
        0,
        0.0,
        &mut rng,
        &mut |_, _| {},
    );
    assert_argument_error(r, "num_steps", "sdedit 0 steps");

    let largest = diffusion
        .schedule
        .alphas_cumprod
        .iter()
        .map(|&ac| ((1.0 - ac) / ac).sqrt())
        .fold(0.0, f64::max);
    for sigma in [0.0, -0.1, f64::NAN, f64::INFINITY, largest * 1.01] {
        let r = denoise_known_sigma(
            &denoiser,
            &diffusion,
            known.clone(),
            sigma,
            1,
            0.0,
            &mut rng,
            &mut |_, _| {},
        );
        assert_argument_error(r, "sigma", &format!("sigma {sigma}"));
    }
    denoise_known_sigma(
        &denoiser,
        &diffusion,
        known.clone(),
        largest,
        1,
        0.0,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    let t = timestep_for_sigma(&diffusion, 0.2);
    let r = denoise_known_sigma(
        &denoiser,
        &diffusion,
        known,
        0.2,
        t + 2,
        0.0,
        &mut rng,
        &mut |_, _| {},
    );
    assert_argument_error(r, "num_steps", "denoise steps");
}

/// Records, for every call, the timestep and the mean and variance of
/// (x_t − √ᾱ_t k)/√(1 − ᾱ_t) for a constant known image k: with everything known (mask = 1) the
/// model must always see a sample of q(x_t | k) at the timestep it is told, which makes that
/// residual standard normal. That holds only if the replacement after each step uses the step's
/// new timestep and RePaint's renoising jumps compose the forward process correctly.
struct Recorder<'a> {
    inner: PointDenoiser<'a>,
    known_value: f32,
    seen: std::sync::Mutex<Vec<(usize, f64, f64)>>,
}

impl Denoiser for Recorder<'_> {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let step = to_vec(t.clone())[0] as usize;
        let s = &self.inner.diffusion.schedule;
        let (a, sd) = (
            s.sqrt_alphas_cumprod[step],
            s.sqrt_one_minus_alphas_cumprod[step],
        );
        let r: Vec<f64> = to_vec(x_t.clone())
            .iter()
            .map(|&v| (f64::from(v) - a * f64::from(self.known_value)) / sd)
            .collect();
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        self.seen.lock().unwrap().push((step, mean, var));
        self.inner.denoise(x_t, t)
    }
}

#[test]
fn the_model_always_sees_the_known_region_at_its_timestep() {
    let diffusion = GaussianDiffusion::new(config(Prediction::Epsilon)).unwrap();
    let shape = [1, 1, 64, 64];
    let known_value = 0.9;
    let known = Tensor::<4>::ones(shape, &device()).mul_scalar(known_value);
    let recorder = Recorder {
        inner: PointDenoiser {
            diffusion: &diffusion,
            x0: known.clone(),
        },
        known_value,
        seen: Default::default(),
    };
    let everything = Tensor::<4>::ones([1, 1, 64, 64], &device());
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let (steps, jump_length, resample_count) = (12, 3, 3);
    let out = repaint(
        &recorder,
        &diffusion,
        known.clone(),
        everything.clone(),
        steps,
        RePaintOptions {
            jump_length,
            resample_count,
        },
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(to_vec(out), to_vec(known.clone()));
    let mut ascending =
        oxidiff_diffusion::respace_timesteps(T, steps, diffusion.config.timestep_spacing).unwrap();
    ascending.reverse();
    let expected: Vec<usize> = repaint_schedule(steps, jump_length, resample_count)
        .unwrap()
        .iter()
        .filter(|(from, to)| to < from)
        .map(|&(from, _)| ascending[from - 1])
        .collect();
    let repaint_seen = std::mem::take(&mut *recorder.seen.lock().unwrap());
    let visited: Vec<usize> = repaint_seen.iter().map(|s| s.0).collect();
    assert_eq!(visited, expected, "repaint's model calls");

    inpaint_ddim(
        &recorder,
        &diffusion,
        known.clone(),
        everything,
        10,
        0.5,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    let ddim_seen = std::mem::take(&mut *recorder.seen.lock().unwrap());
    assert_eq!(ddim_seen.len(), 10);
    // 4096 pixels: standard errors 0.016 (mean) and 0.022 (variance); bounds of about 5.
    for (what, seen) in [("repaint", repaint_seen), ("ddim", ddim_seen)] {
        for (t, mean, var) in seen {
            assert!(
                mean.abs() < 0.08 && (var - 1.0).abs() < 0.12,
                "{what} t={t}: residual mean {mean}, variance {var}"
            );
        }
    }
}
