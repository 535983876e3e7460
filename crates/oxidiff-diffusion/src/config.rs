//! The `[diffusion]` section of a run config: noise schedule, parameterisation, sampler options
//! and loss weighting.

use serde::{Deserialize, Serialize};

use crate::DiffusionError;

crate::named_enum! {
    /// How β_t grows with t.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum BetaSchedule {
        /// β_t evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020, §4).
        #[default]
        Linear = "linear",
        /// √β_t evenly spaced from √`beta_start` to √`beta_end`, then squared (the Stable Diffusion
        /// schedule; diffusers `scaled_linear`).
        ScaledLinear = "scaled-linear",
        /// ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β_t clipped at 0.999
        /// (Nichol & Dhariwal 2021, eq. 17; diffusers `squaredcos_cap_v2`). Ignores `beta_start`
        /// and `beta_end`.
        Cosine = "cosine",
        /// β_t = sigmoid(linspace(−6, 6, T)) · (`beta_end` − `beta_start`) + `beta_start`
        /// (diffusers `sigmoid`, from GeoDiff).
        Sigmoid = "sigmoid",
    }
}

crate::named_enum! {
    /// What the network is trained to output.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Prediction {
        /// The noise ε that was added (Ho et al. 2020).
        #[default]
        Epsilon = "epsilon",
        /// The clean sample x₀.
        Sample = "sample",
        /// The velocity v = √ᾱ_t ε − √(1−ᾱ_t) x₀ (Salimans & Ho 2022, §4).
        Velocity = "velocity",
    }
}

crate::named_enum! {
    /// The variance of the reverse step p(x_{t−1} | x_t) used by ancestral (DDPM) sampling.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DdpmVariance {
        /// σ²_t = β̃_t, the variance of the true posterior q(x_{t−1} | x_t, x₀) (Ho et al. 2020,
        /// §3.2).
        #[default]
        FixedSmall = "fixed-small",
        /// σ²_t = β_t, with the t = 0 entry set to β̃_1 as in improved-diffusion (that entry only
        /// matters for likelihoods: no noise is added at t = 0).
        FixedLarge = "fixed-large",
    }
}

crate::named_enum! {
    /// Whether the network also predicts the variance of the reverse step.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum VarianceType {
        /// σ²_t fixed by `ddpm_variance`; the network outputs C channels.
        #[default]
        Fixed = "fixed",
        /// The network outputs 2C channels: the mean target, then v ∈ [−1, 1] per pixel that
        /// interpolates log σ²_t between log β̃_t (v = −1) and log β_t (v = 1)
        /// (Nichol & Dhariwal 2021, eq. 15). Needs a loss that trains it: `hybrid` or `vlb`.
        Learned = "learned",
    }
}

crate::named_enum! {
    /// What the training loss measures.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum LossKind {
        /// L_simple: the MSE of the network's target (Ho et al. 2020, eq. 14), optionally
        /// min-SNR weighted.
        #[default]
        Simple = "simple",
        /// L_simple + λ·L_vlb with the mean frozen inside L_vlb, so the bound trains only the
        /// variance (Nichol & Dhariwal 2021, §3.1); needs `variance_type = "learned"`.
        Hybrid = "hybrid",
        /// The variational bound alone (Ho et al. 2020, eq. 5), in bits per dimension: trains mean
        /// and (when learned) variance for likelihood.
        Vlb = "vlb",
    }
}

crate::named_enum! {
    /// How a shorter inference schedule picks its timesteps out of the training ones; the same
    /// three strategies as diffusers' `timestep_spacing` (Lin et al. 2023, Table 2).
    ///
    /// The default is `Trailing`, not diffusers' DDIM default `Leading`: a sampler starts from pure
    /// noise, and only `Trailing` (and `Linspace`) start at t = T − 1 where x_t is pure noise. With
    /// `Leading` and few steps the first timestep is well below T − 1 (900 for 10 of 1000 steps),
    /// where a cosine schedule still keeps √ᾱ = 0.15 of the image, so the model is asked to denoise
    /// an x_t with no image in it; on Fashion-MNIST this cost DDIM at 10 steps a sample distance of
    /// 647 against 106 with `Trailing` (docs/samplers.md).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum TimestepSpacing {
        /// 0, k, 2k, … with k = T / n for n steps (integer division): never visits t = T − 1.
        Leading = "leading",
        /// round(T − i·T/n) − 1 for i = 0..n: starts at t = T − 1.
        #[default]
        Trailing = "trailing",
        /// round(linspace(0, T − 1, n)): both ends included.
        Linspace = "linspace",
    }
}

/// The `[diffusion]` section: everything that defines the forward process and how it is
/// reversed, independent of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    /// Number of training timesteps T.
    pub num_train_timesteps: usize,
    /// Shape of β_t.
    pub beta_schedule: BetaSchedule,
    /// β at t = 0 (linear, scaled-linear and sigmoid schedules).
    pub beta_start: f64,
    /// β at t = T − 1 (linear, scaled-linear and sigmoid schedules).
    pub beta_end: f64,
    /// Rescale the schedule so that ᾱ_{T−1} = 0 exactly (Lin et al. 2023, Algorithm 1). Needs
    /// `prediction` = `velocity` or `sample`: x₀ cannot be recovered from ε at zero SNR.
    pub rescale_zero_terminal_snr: bool,
    /// What the network outputs.
    pub prediction: Prediction,
    /// Reverse-step variance for ancestral sampling.
    pub ddpm_variance: DdpmVariance,
    /// Timestep spacing for samplers that skip steps (every sampler but full-length DDPM); a
    /// sampling-time choice, which `oxidiff sample --spacing` overrides.
    pub timestep_spacing: TimestepSpacing,
    /// Added to every `leading` timestep (diffusers' `steps_offset`, which shifts that spacing
    /// alone): Stable Diffusion 1.x's schedulers take 1, so 50 steps visit 981, 961, …, 1.
    pub steps_offset: usize,
    /// ᾱ after the last DDIM or PNDM step: 1 (a clean x₀), or ᾱ_0 when false (diffusers'
    /// `set_alpha_to_one`; Stable Diffusion 1.x's schedulers say false).
    pub set_alpha_to_one: bool,
    /// Clamp the predicted x₀ to [−1, 1] while sampling.
    pub clip_sample: bool,
    /// Min-SNR-γ loss weighting (Hang et al. 2023); `None` weights every timestep equally.
    pub min_snr_gamma: Option<f64>,
    /// Offset noise strength (Guttenberg 2023): training noise gets `offset_noise` · N(0, 1)
    /// added per (sample, channel).
    pub offset_noise: f64,
    /// Fixed or learned reverse-step variance.
    pub variance_type: VarianceType,
    /// `simple`, `hybrid` or `vlb`.
    pub loss: LossKind,
    /// λ of the hybrid loss (Nichol & Dhariwal 2021 use 0.001).
    pub vlb_weight: f64,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            rescale_zero_terminal_snr: false,
            prediction: Prediction::Epsilon,
            ddpm_variance: DdpmVariance::FixedSmall,
            timestep_spacing: TimestepSpacing::Trailing,
            steps_offset: 0,
            set_alpha_to_one: true,
            clip_sample: true,
            min_snr_gamma: None,
            offset_noise: 0.0,
            variance_type: VarianceType::Fixed,
            loss: LossKind::Simple,
            vlb_weight: 0.001,
        }
    }
}

impl DiffusionConfig {
    /// Checks every value once, so that nothing later can panic or produce NaN on a bad config.
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidConfig`] naming the first offending key (relative to the
    /// `[diffusion]` section) and the value given.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let t = self.num_train_timesteps;
        if t == 0 {
            return Err(DiffusionError::config(
                "num_train_timesteps",
                "must be at least 1, got 0",
            ));
        }
        let (start, end) = (self.beta_start, self.beta_end);
        if !(start.is_finite() && start > 0.0 && start < 1.0) {
            return Err(DiffusionError::config(
                "beta_start",
                format!("must be in (0, 1), got {start}"),
            ));
        }
        if !(end.is_finite() && end < 1.0) {
            return Err(DiffusionError::config(
                "beta_end",
                format!("must be below 1, got {end}"),
            ));
        }
        if end < start {
            return Err(DiffusionError::config(
                "beta_end",
                format!("must be at least beta_start ({start}), got {end}"),
            ));
        }
        if self.rescale_zero_terminal_snr {
            if t < 2 {
                return Err(DiffusionError::config(
                    "rescale_zero_terminal_snr",
                    format!(
                        "needs num_train_timesteps >= 2 (the rescale pins ᾱ at both ends), got {t}"
                    ),
                ));
            }
            if self.prediction == Prediction::Epsilon {
                // Lin et al. 2023, §3.2: at ᾱ = 0, x₀ = (x_t − √(1−ᾱ) ε)/√ᾱ is 0/0.
                return Err(DiffusionError::config(
                    "rescale_zero_terminal_snr",
                    "needs prediction = \"velocity\" or \"sample\": with \"epsilon\" the predicted x0 at zero terminal SNR divides by zero (Lin et al. 2023, section 3.2)",
                ));
            }
        }
        if let Some(gamma) = self.min_snr_gamma
            && !(gamma.is_finite() && gamma > 0.0)
        {
            return Err(DiffusionError::config(
                "min_snr_gamma",
                format!("must be a positive number, got {gamma}"),
            ));
        }
        match (self.variance_type, self.loss) {
            (VarianceType::Learned, LossKind::Simple) => {
                return Err(DiffusionError::config(
                    "variance_type",
                    "= \"learned\" needs loss = \"hybrid\" or \"vlb\": L_simple gives the variance channels no gradient",
                ));
            }
            (VarianceType::Fixed, LossKind::Hybrid) => {
                return Err(DiffusionError::config(
                    "loss",
                    "= \"hybrid\" needs variance_type = \"learned\": its bound term trains only the variance (the mean is frozen in it)",
                ));
            }
            _ => {}
        }
        let weight = self.vlb_weight;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(DiffusionError::config(
                "vlb_weight",
                format!("must be a positive number, got {weight}"),
            ));
        }
        if self.steps_offset >= t {
            return Err(DiffusionError::config(
                "steps_offset",
                format!(
                    "must be below num_train_timesteps ({t}): it shifts leading timesteps within them, got {}",
                    self.steps_offset
                ),
            ));
        }
        let offset = self.offset_noise;
        if !(offset.is_finite() && offset >= 0.0) {
            return Err(DiffusionError::config(
                "offset_noise",
                format!("must be a finite number >= 0, got {offset}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(cfg: &DiffusionConfig) -> String {
        match cfg.validate() {
            Err(DiffusionError::InvalidConfig { key, .. }) => key,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn default_is_valid() {
        DiffusionConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = DiffusionConfig::default();
        let cases: Vec<(DiffusionConfig, &str)> = vec![
            (
                DiffusionConfig {
                    num_train_timesteps: 0,
                    ..base.clone()
                },
                "num_train_timesteps",
            ),
            (
                DiffusionConfig {
                    beta_start: 0.0,
                    ..base.clone()
                },
                "beta_start",
            ),
            (
                DiffusionConfig {
                    beta_start: f64::NAN,
                    ..base.clone()
                },
                "beta_start",
            ),
            (
                DiffusionConfig {
                    beta_start: 1.0,
                    beta_end: 1.0,
                    ..base.clone()
                },
                "beta_start",
            ),
            (
                DiffusionConfig {
                    beta_end: 1e-5,
                    ..base.clone()
                },
                "beta_end",
            ),
            (
                DiffusionConfig {
                    beta_end: 1.0,
                    ..base.clone()
                },
                "beta_end",
            ),
            (
                DiffusionConfig {
                    min_snr_gamma: Some(0.0),
                    ..base.clone()
                },
                "min_snr_gamma",
            ),
            (
                DiffusionConfig {
                    min_snr_gamma: Some(f64::INFINITY),
                    ..base.clone()
                },
                "min_snr_gamma",
            ),
            (
                DiffusionConfig {
                    offset_noise: -0.1,
                    ..base.clone()
                },
                "offset_noise",
            ),
            (
                DiffusionConfig {
                    offset_noise: f64::NAN,
                    ..base.clone()
                },
                "offset_noise",
            ),
            (
                DiffusionConfig {
                    rescale_zero_terminal_snr: true,
                    ..base.clone()
                },
                "rescale_zero_terminal_snr",
            ),
            (
                DiffusionConfig {
                    steps_offset: 1000,
                    ..base.clone()
                },
                "steps_offset",
            ),
            (
                DiffusionConfig {
                    rescale_zero_terminal_snr: true,
                    prediction: Prediction::Velocity,
                    num_train_timesteps: 1,
                    ..base.clone()
                },
                "rescale_zero_terminal_snr",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(key_of(&cfg), key, "{cfg:?}");
        }
    }

    #[test]
    fn error_message_names_key_and_value() {
        let cfg = DiffusionConfig {
            num_train_timesteps: 0,
            ..Default::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err(),
            DiffusionError::InvalidConfig {
                key: "num_train_timesteps".into(),
                message: "must be at least 1, got 0".into()
            }
        );
        let cfg = DiffusionConfig {
            beta_end: 2.0,
            ..Default::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "beta_end: must be below 1, got 2"
        );
    }
}
