//! The run configuration: the documented default, overrides and bad-config messages.

use oxidiff_train::{DEFAULT_CONFIG_TOML, RunConfig};

#[test]
fn documented_default_is_the_default() {
    let parsed = RunConfig::from_toml_str(DEFAULT_CONFIG_TOML, "default_config.toml", &[]).unwrap();
    assert_eq!(parsed, RunConfig::default());
    // The saved form parses back to the same config.
    let again = RunConfig::from_toml_str(&parsed.to_toml(), "saved", &[]).unwrap();
    assert_eq!(again, parsed);
}

#[test]
fn overrides_set_nested_keys() {
    let config = RunConfig::default_with(&[
        "seed=7".into(),
        "train.lr=3e-4".into(),
        "train.optimizer=sgd".into(),
        "model.preset=small".into(),
        "model.channel_mult=[1, 2, 2]".into(),
        "diffusion.min_snr_gamma=5.0".into(),
    ])
    .unwrap();
    assert_eq!(config.seed, 7);
    assert_eq!(config.train.lr, 3e-4);
    assert_eq!(config.train.optimizer, oxidiff_train::OptimizerKind::Sgd);
    assert_eq!(config.model.preset, oxidiff_models::Preset::Small);
    assert_eq!(config.diffusion.min_snr_gamma, Some(5.0));
}

#[test]
fn bad_configs_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("train.lrr=0.1", "lrr"),
        ("train.lr=\"fast\"", "train.lr"),
        ("train.lr=-0.001", "train.lr"),
        ("train.batch_size=0", "train.batch_size"),
        ("diffusion.num_train_timesteps=0", "num_train_timesteps"),
        (
            "diffusion.beta_schedule=\"zigzag\"",
            "diffusion.beta_schedule",
        ),
        ("model.preset=\"huge\"", "model.preset"),
        ("model.dropout=2.0", "model.dropout"),
        ("train.ema_decay=1.5", "train.ema_decay"),
        ("sample.steps=5000", "sample.steps"),
        ("bogus.key=1", "bogus"),
        ("data.source=folder", "data.path"),
    ];
    for (assignment, key) in cases {
        let err = RunConfig::default_with(&[assignment.to_string()]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(key),
            "`{assignment}` gave `{message}`, which does not name {key}"
        );
    }
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let err = RunConfig::from_toml_str("[train]\nlr = = 1\n", "run.toml", &[]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("run.toml") && message.contains("line 2"),
        "{message}"
    );
}

/// README's configuration reference is the documented default, word for word.
#[test]
fn readme_shows_the_default_config() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains(DEFAULT_CONFIG_TOML),
        "README.md's configuration reference differs from crates/oxidiff-train/src/default_config.toml"
    );
}

/// A data key is named once with its section (not `data.data.…`).
#[test]
fn a_bad_data_value_names_its_key_once() {
    for (set, key) in [
        ("data.validation_fraction=2", "data.validation_fraction"),
        ("data.source=\"folder\"", "data.path"),
    ] {
        let message = RunConfig::default_with(&[set.into()])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(key) && !message.contains("data.data."),
            "{set}: {message}"
        );
    }
}
