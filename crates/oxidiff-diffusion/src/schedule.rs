//! The noise schedule β_t and every per-timestep coefficient derived from it, computed once in
//! f64 (the tensors only ever see the final f32 coefficient).

use crate::{BetaSchedule, DdpmVariance, DiffusionConfig, DiffusionError};

/// β_t and the quantities of Ho et al. (2020) and Nichol & Dhariwal (2021) derived from it, one
/// entry per training timestep t = 0..T.
///
/// With `rescale_zero_terminal_snr`, ᾱ_{T−1} = 0 exactly. Then `sqrt_recip_alphas_cumprod` and
/// `sqrt_recipm1_alphas_cumprod` are +∞ at T − 1; they are only used to recover x₀ from ε, which
/// [`DiffusionConfig::validate`] forbids at zero terminal SNR, and the rest of the crate uses the
/// finite forms (ε from x₀ divides by √(1−ᾱ) = 1 there). Every other column stays finite: the
/// divisions are by 1 − ᾱ_t, which is positive for every t because β_0 > 0.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// β_t.
    pub betas: Vec<f64>,
    /// α_t = 1 − β_t.
    pub alphas: Vec<f64>,
    /// ᾱ_t = ∏_{s≤t} α_s.
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alphas_cumprod_prev: Vec<f64>,
    /// √ᾱ_t.
    pub sqrt_alphas_cumprod: Vec<f64>,
    /// √(1 − ᾱ_t).
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    /// √(1/ᾱ_t) (+∞ where ᾱ_t = 0).
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    /// √(1/ᾱ_t − 1) (+∞ where ᾱ_t = 0).
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x₀); 0 at t = 0.
    pub posterior_variance: Vec<f64>,
    /// ln β̃_t with the t = 0 entry (ln 0) replaced by ln β̃_1, as improved-diffusion does; with
    /// T = 1 there is no β̃_1 and ln β_0 stands in.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x₀ in the posterior mean: β_t √ᾱ_{t−1} / (1 − ᾱ_t).
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in the posterior mean: (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t).
    pub posterior_mean_coef2: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule of `cfg` (validating `cfg` first).
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidConfig`] when `cfg` does not validate.
    pub fn new(cfg: &DiffusionConfig) -> Result<Self, DiffusionError> {
        cfg.validate()?;
        let mut betas = betas_for(cfg);
        if cfg.rescale_zero_terminal_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        Ok(Self::from_betas(betas))
    }

    fn from_betas(betas: Vec<f64>) -> Self {
        // Ho et al. 2020, §2 (before eq. 4): α_t = 1 − β_t
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        // Ho et al. 2020, §2 (before eq. 4): ᾱ_t = ∏_{s≤t} α_s
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..alphas_cumprod.len() - 1].iter().copied())
            .collect();
        let map = |v: &[f64], f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(x)).collect::<Vec<_>>();
        let sqrt_alphas_cumprod = map(&alphas_cumprod, &f64::sqrt);
        let sqrt_one_minus_alphas_cumprod = map(&alphas_cumprod, &|a| (1.0 - a).sqrt());
        let sqrt_recip_alphas_cumprod = map(&alphas_cumprod, &|a| (1.0 / a).sqrt());
        let sqrt_recipm1_alphas_cumprod = map(&alphas_cumprod, &|a| (1.0 / a - 1.0).sqrt());

        let n = betas.len();
        let mut posterior_variance = Vec::with_capacity(n);
        let mut posterior_mean_coef1 = Vec::with_capacity(n);
        let mut posterior_mean_coef2 = Vec::with_capacity(n);
        for t in 0..n {
            let (beta, ac, ac_prev) = (betas[t], alphas_cumprod[t], alphas_cumprod_prev[t]);
            // Ho et al. 2020, eq. 7: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t
            posterior_variance.push(beta * (1.0 - ac_prev) / (1.0 - ac));
            // Ho et al. 2020, eq. 7: μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) x₀ + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t
            posterior_mean_coef1.push(beta * ac_prev.sqrt() / (1.0 - ac));
            posterior_mean_coef2.push((1.0 - ac_prev) * alphas[t].sqrt() / (1.0 - ac));
        }
        // β̃_0 = 0 has no logarithm; improved-diffusion's clip uses β̃_1 in its place.
        let first = if n > 1 {
            posterior_variance[1]
        } else {
            betas[0]
        };
        let posterior_log_variance_clipped = std::iter::once(first)
            .chain(posterior_variance[1..].iter().copied())
            .map(f64::ln)
            .collect();

        Self {
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
            sqrt_alphas_cumprod,
            sqrt_one_minus_alphas_cumprod,
            sqrt_recip_alphas_cumprod,
            sqrt_recipm1_alphas_cumprod,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
        }
    }

    /// Number of training timesteps T.
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t); 0 at a zero terminal SNR, never NaN.
    ///
    /// # Panics
    ///
    /// If `t >= T`.
    pub fn snr(&self, t: usize) -> f64 {
        let ac = self.alphas_cumprod[t];
        // Kingma et al. 2021, eq. 2: SNR(t) = α_t² / σ_t² with α_t² = ᾱ_t, σ_t² = 1 − ᾱ_t
        ac / (1.0 - ac)
    }

    /// Variance σ²_t of the ancestral reverse step at `t` for the given [`DdpmVariance`].
    ///
    /// # Panics
    ///
    /// If `t >= T`.
    pub fn ddpm_variance(&self, variance: DdpmVariance, t: usize) -> f64 {
        match variance {
            DdpmVariance::FixedSmall => self.posterior_variance[t],
            // improved-diffusion: np.append(posterior_variance[1], betas[1:])
            DdpmVariance::FixedLarge if t == 0 && self.num_timesteps() > 1 => {
                self.posterior_variance[1]
            }
            DdpmVariance::FixedLarge => self.betas[t],
        }
    }
}

/// β_t of the configured schedule, before any zero-terminal-SNR rescale.
fn betas_for(cfg: &DiffusionConfig) -> Vec<f64> {
    let t = cfg.num_train_timesteps;
    let (start, end) = (cfg.beta_start, cfg.beta_end);
    match cfg.beta_schedule {
        // Ho et al. 2020, §4: β_t linear from β_1 to β_T
        BetaSchedule::Linear => linspace(start, end, t),
        // Rombach et al. 2022 (LDM config): β_t = linspace(√β_start, √β_end, T)²
        BetaSchedule::ScaledLinear => linspace(start.sqrt(), end.sqrt(), t)
            .into_iter()
            .map(|b| b * b)
            .collect(),
        BetaSchedule::Cosine => cosine_betas(t),
        // diffusers (GeoDiff): β = sigmoid(linspace(−6, 6, T)) · (end − start) + start
        BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t)
            .into_iter()
            .map(|x| 1.0 / (1.0 + (-x).exp()) * (end - start) + start)
            .collect(),
    }
}

/// Nichol & Dhariwal 2021 cosine schedule, discretised as diffusers' `betas_for_alpha_bar`.
fn cosine_betas(t: usize) -> Vec<f64> {
    const S: f64 = 0.008;
    const MAX_BETA: f64 = 0.999;
    // Nichol & Dhariwal 2021, eq. 17: f(t) = cos²((t/T + s)/(1 + s) · π/2)
    let alpha_bar = |u: f64| {
        ((u + S) / (1.0 + S) * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..t)
        .map(|i| {
            let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
            // Nichol & Dhariwal 2021, §3.2: β_t = min(1 − ᾱ_t/ᾱ_{t−1}, 0.999)
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(MAX_BETA)
        })
        .collect()
}

/// `n` evenly spaced values from `start` to `end` inclusive, as `torch.linspace` (the second
/// half counted back from `end`, so the last value is exactly `end`); `[start]` when n = 1.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                start + step * i as f64
            } else {
                end - step * (n - 1 - i) as f64
            }
        })
        .collect()
}

/// Shifts and scales √ᾱ so that √ᾱ_{T−1} = 0 while √ᾱ_0 is kept (Lin et al. 2023, Algorithm 1;
/// diffusers `rescale_zero_terminal_snr`). Needs T ≥ 2 (checked by validation).
fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut alphas_bar_sqrt: Vec<f64> = betas
        .iter()
        .scan(1.0, |acc, b| {
            *acc *= 1.0 - b;
            Some(acc.sqrt())
        })
        .collect();
    let first = alphas_bar_sqrt[0];
    let last = alphas_bar_sqrt[alphas_bar_sqrt.len() - 1];
    for a in &mut alphas_bar_sqrt {
        // Lin et al. 2023, Algorithm 1: √ᾱ ← (√ᾱ − √ᾱ_T) · √ᾱ_0 / (√ᾱ_0 − √ᾱ_T)
        *a = (*a - last) * first / (first - last);
    }
    let alphas_bar: Vec<f64> = alphas_bar_sqrt.iter().map(|a| a * a).collect();
    std::iter::once(alphas_bar[0])
        .chain(alphas_bar.windows(2).map(|w| w[1] / w[0]))
        // Lin et al. 2023, Algorithm 1: α_t = ᾱ_t / ᾱ_{t−1}, β_t = 1 − α_t
        .map(|alpha| 1.0 - alpha)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Prediction;

    #[test]
    fn linspace_matches_torch_endpoints() {
        assert_eq!(linspace(1.0, 2.0, 1), vec![1.0]);
        assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let v = linspace(1e-4, 0.02, 1000);
        assert_eq!((v[0], v[999]), (1e-4, 0.02));
    }

    #[test]
    fn zero_terminal_snr_is_exact_and_finite() {
        let cfg = DiffusionConfig {
            rescale_zero_terminal_snr: true,
            prediction: Prediction::Velocity,
            ..Default::default()
        };
        let s = NoiseSchedule::new(&cfg).unwrap();
        let last = s.num_timesteps() - 1;
        assert_eq!(s.alphas_cumprod[last], 0.0);
        assert_eq!(s.snr(last), 0.0);
        assert_eq!(s.betas[last], 1.0);
        for col in [
            &s.posterior_variance,
            &s.posterior_log_variance_clipped,
            &s.posterior_mean_coef1,
            &s.posterior_mean_coef2,
            &s.sqrt_one_minus_alphas_cumprod,
        ] {
            assert!(col.iter().all(|x| x.is_finite()));
        }
        // √ᾱ_0 is kept by the rescale.
        let plain = NoiseSchedule::new(&DiffusionConfig::default()).unwrap();
        assert!((s.alphas_cumprod[0] - plain.alphas_cumprod[0]).abs() < 1e-15);
    }

    #[test]
    fn single_step_schedule_is_finite() {
        let cfg = DiffusionConfig {
            num_train_timesteps: 1,
            ..Default::default()
        };
        let s = NoiseSchedule::new(&cfg).unwrap();
        assert_eq!(s.posterior_variance, vec![0.0]);
        assert!(s.posterior_log_variance_clipped[0].is_finite());
        assert!(s.ddpm_variance(DdpmVariance::FixedLarge, 0).is_finite());
    }

    #[test]
    fn fixed_large_first_entry_is_posterior_variance_1() {
        let s = NoiseSchedule::new(&DiffusionConfig::default()).unwrap();
        assert_eq!(
            s.ddpm_variance(DdpmVariance::FixedLarge, 0),
            s.posterior_variance[1]
        );
        assert_eq!(s.ddpm_variance(DdpmVariance::FixedLarge, 7), s.betas[7]);
        assert_eq!(
            s.ddpm_variance(DdpmVariance::FixedSmall, 7),
            s.posterior_variance[7]
        );
    }
}
