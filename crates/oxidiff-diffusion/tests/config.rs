//! The `[diffusion]` config as it is read from a file: kebab-case enum values, defaults for
//! missing keys, unknown keys rejected.

use oxidiff_diffusion::{BetaSchedule, DdpmVariance, DiffusionConfig, Prediction, TimestepSpacing};

#[test]
fn empty_section_is_the_default() {
    let cfg: DiffusionConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, DiffusionConfig::default());
    assert_eq!(cfg.num_train_timesteps, 1000);
    assert_eq!((cfg.beta_start, cfg.beta_end), (1e-4, 0.02));
    assert!(cfg.clip_sample);
}

#[test]
fn enum_values_are_kebab_case() {
    let cfg: DiffusionConfig = serde_json::from_str(
        r#"{"beta_schedule": "scaled-linear", "prediction": "velocity",
            "ddpm_variance": "fixed-large", "timestep_spacing": "trailing",
            "min_snr_gamma": 5.0, "offset_noise": 0.1}"#,
    )
    .unwrap();
    assert_eq!(cfg.beta_schedule, BetaSchedule::ScaledLinear);
    assert_eq!(cfg.prediction, Prediction::Velocity);
    assert_eq!(cfg.ddpm_variance, DdpmVariance::FixedLarge);
    assert_eq!(cfg.timestep_spacing, TimestepSpacing::Trailing);
    assert_eq!(cfg.min_snr_gamma, Some(5.0));
    cfg.validate().unwrap();

    let names = |v: serde_json::Value| v.to_string();
    assert_eq!(
        names(serde_json::to_value(BetaSchedule::Cosine).unwrap()),
        r#""cosine""#
    );
    assert_eq!(
        names(serde_json::to_value(Prediction::Sample).unwrap()),
        r#""sample""#
    );
    assert_eq!(
        names(serde_json::to_value(DdpmVariance::FixedSmall).unwrap()),
        r#""fixed-small""#
    );
    assert_eq!(
        names(serde_json::to_value(TimestepSpacing::Linspace).unwrap()),
        r#""linspace""#
    );
}

#[test]
fn round_trips() {
    let cfg = DiffusionConfig {
        beta_schedule: BetaSchedule::Sigmoid,
        rescale_zero_terminal_snr: true,
        prediction: Prediction::Velocity,
        min_snr_gamma: Some(5.0),
        ..Default::default()
    };
    let text = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<DiffusionConfig>(&text).unwrap(), cfg);
}

#[test]
fn unknown_keys_and_values_are_rejected() {
    let err = serde_json::from_str::<DiffusionConfig>(r#"{"num_timesteps": 10}"#).unwrap_err();
    assert!(err.to_string().contains("num_timesteps"), "{err}");
    let err = serde_json::from_str::<DiffusionConfig>(r#"{"prediction": "v"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}
