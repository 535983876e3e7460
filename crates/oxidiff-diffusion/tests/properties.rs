//! Property tests on the schedule maths and the sampler schedules.

mod common;

use std::sync::Mutex;

use burn::tensor::Tensor;
use common::{device, to_vec};
use oxidiff_diffusion::sample::{sample_ddim, sample_ddpm};
use oxidiff_diffusion::{
    BetaSchedule, DiffusionConfig, GaussianDiffusion, NoiseSchedule, Prediction, TimestepSpacing,
    respace_timesteps,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn beta_schedule() -> impl Strategy<Value = BetaSchedule> {
    prop_oneof![
        Just(BetaSchedule::Linear),
        Just(BetaSchedule::ScaledLinear),
        Just(BetaSchedule::Cosine),
        Just(BetaSchedule::Sigmoid),
    ]
}

fn spacing() -> impl Strategy<Value = TimestepSpacing> {
    prop_oneof![
        Just(TimestepSpacing::Leading),
        Just(TimestepSpacing::Trailing),
        Just(TimestepSpacing::Linspace),
    ]
}

/// Any valid schedule config: T in 1..2000, β ranges from 1e-5 up to 0.05 and 0.5.
fn schedule_config() -> impl Strategy<Value = DiffusionConfig> {
    (
        1usize..2000,
        beta_schedule(),
        1e-5f64..0.05,
        0.0f64..0.45,
        any::<bool>(),
    )
        .prop_map(|(t, schedule, start, spread, rescale)| DiffusionConfig {
            num_train_timesteps: t,
            beta_schedule: schedule,
            beta_start: start,
            beta_end: start + spread,
            rescale_zero_terminal_snr: rescale && t >= 2,
            prediction: Prediction::Velocity,
            ..Default::default()
        })
}

/// Records every timestep a sampler asks about and answers 0 (any output will do here).
struct Recorder(Mutex<Vec<usize>>);

impl oxidiff_diffusion::Denoiser for Recorder {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t = to_vec(t);
        assert!(t.iter().all(|&v| v == t[0]), "one timestep per call");
        self.0.lock().unwrap().push(t[0] as usize);
        x_t.zeros_like()
    }
}

proptest! {
    #[test]
    fn schedule_is_well_formed(cfg in schedule_config()) {
        let s = NoiseSchedule::new(&cfg).unwrap();
        let n = cfg.num_train_timesteps;
        prop_assert_eq!(s.num_timesteps(), n);
        let ac = &s.alphas_cumprod;
        for w in ac.windows(2) {
            prop_assert!(w[1] < w[0], "alphas_cumprod not strictly decreasing: {:?}", w);
        }
        if cfg.rescale_zero_terminal_snr {
            prop_assert_eq!(ac[n - 1], 0.0);
            prop_assert!(ac.iter().all(|&a| (0.0..=1.0).contains(&a)));
            prop_assert!(ac[..n - 1].iter().all(|&a| a > 0.0));
        } else {
            prop_assert!(ac.iter().all(|&a| a > 0.0 && a <= 1.0));
        }
        prop_assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 1.0));
        if cfg.beta_schedule == BetaSchedule::Cosine && !cfg.rescale_zero_terminal_snr {
            prop_assert!(s.betas.iter().all(|&b| b <= 0.999));
        }
        prop_assert!(s.posterior_variance.iter().all(|&v| v >= 0.0 && v.is_finite()));
        prop_assert_eq!(s.posterior_variance[0], 0.0);
        for t in 0..n {
            prop_assert!(s.posterior_log_variance_clipped[t].is_finite());
            prop_assert!(s.posterior_mean_coef1[t].is_finite() && s.posterior_mean_coef2[t].is_finite());
            let snr = s.snr(t);
            prop_assert!(snr.is_finite() && snr >= 0.0);
            // The posterior variance never exceeds β_t (Ho et al. 2020, §3.2: β̃_t ≤ β_t).
            prop_assert!(s.posterior_variance[t] <= s.betas[t] * (1.0 + 1e-12));
        }
    }

    #[test]
    fn respaced_timesteps_are_a_descending_subset(t in 1usize..2000, frac in 0.0f64..1.0, spacing in spacing()) {
        let n = 1 + ((t - 1) as f64 * frac) as usize;
        let steps = respace_timesteps(t, n, spacing).unwrap();
        prop_assert_eq!(steps.len(), n);
        for w in steps.windows(2) {
            prop_assert!(w[1] < w[0], "not strictly descending: {:?}", w);
        }
        prop_assert!(steps.iter().all(|&s| s < t));
        match spacing {
            TimestepSpacing::Leading => prop_assert_eq!(*steps.last().unwrap(), 0),
            TimestepSpacing::Trailing => prop_assert_eq!(steps[0], t - 1),
            TimestepSpacing::Linspace if n > 1 => {
                prop_assert_eq!((steps[0], *steps.last().unwrap()), (t - 1, 0));
            }
            TimestepSpacing::Linspace => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn samplers_visit_their_schedule_in_order(t in 1usize..120, frac in 0.0f64..1.0, spacing in spacing(), eta in prop_oneof![Just(0.0), Just(0.7)]) {
        let diffusion = GaussianDiffusion::new(DiffusionConfig {
            num_train_timesteps: t,
            timestep_spacing: spacing,
            ..Default::default()
        }).unwrap();
        let x = Tensor::<4>::zeros([1, 1, 1, 1], &device());
        let mut rng = ChaCha8Rng::seed_from_u64(0);

        let recorder = Recorder(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        sample_ddpm(&recorder, &diffusion, x.clone(), t, &mut rng, &mut |i, total| calls.push((i, total))).unwrap();
        let visited = recorder.0.into_inner().unwrap();
        prop_assert_eq!(visited, (0..t).rev().collect::<Vec<_>>());
        prop_assert_eq!(calls, (1..=t).map(|i| (i, t)).collect::<Vec<_>>());

        let n = 1 + ((t - 1) as f64 * frac) as usize;
        let recorder = Recorder(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        sample_ddpm(&recorder, &diffusion, x.clone(), n, &mut rng, &mut |i, total| calls.push((i, total))).unwrap();
        let visited = recorder.0.into_inner().unwrap();
        prop_assert_eq!(&visited, &respace_timesteps(t, n, spacing).unwrap());
        prop_assert_eq!(calls, (1..=n).map(|i| (i, n)).collect::<Vec<_>>());

        let recorder = Recorder(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        sample_ddim(&recorder, &diffusion, x, n, eta, &mut rng, &mut |i, total| calls.push((i, total))).unwrap();
        let visited = recorder.0.into_inner().unwrap();
        prop_assert_eq!(&visited, &respace_timesteps(t, n, spacing).unwrap());
        for w in visited.windows(2) {
            prop_assert!(w[1] < w[0]);
        }
        prop_assert_eq!(calls, (1..=n).map(|i| (i, n)).collect::<Vec<_>>());
    }
}
