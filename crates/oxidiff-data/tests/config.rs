use std::path::PathBuf;

use oxidiff_data::{ColorMode, DataConfig, DataError, DataSource, load_dataset};

fn key_of(e: &DataError) -> &str {
    match e {
        DataError::InvalidConfig { key, .. } => key,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn default_is_valid_digits() {
    let c = DataConfig::default();
    assert_eq!(c.source, DataSource::Digits);
    c.validate().unwrap();
}

#[test]
fn bad_values_name_their_key() {
    let folder_without_path = DataConfig {
        source: DataSource::Folder,
        ..Default::default()
    };
    let e = folder_without_path.validate().unwrap_err();
    assert_eq!(key_of(&e), "path");
    assert!(e.to_string().starts_with("data.path: "), "{e}");

    let digits_with_path = DataConfig {
        path: Some(PathBuf::from("/somewhere")),
        ..Default::default()
    };
    let e = digits_with_path.validate().unwrap_err();
    assert_eq!(key_of(&e), "path");
    assert!(e.to_string().contains("/somewhere"), "{e}");

    let e = DataConfig {
        image_size: Some(0),
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(key_of(&e), "image_size");

    let e = DataConfig {
        channels: Some(2),
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(key_of(&e), "channels");
    assert!(e.to_string().contains("is 2"), "{e}");
}

#[test]
fn overrides_must_agree_with_the_model() {
    let c = DataConfig {
        image_size: Some(16),
        ..Default::default()
    };
    let e = load_dataset(&c, 32, 1).unwrap_err();
    assert_eq!(key_of(&e), "image_size");
    assert!(
        e.to_string().contains("16") && e.to_string().contains("32"),
        "{e}"
    );
    load_dataset(&c, 16, 1).unwrap();

    let c = DataConfig {
        channels: Some(3),
        ..Default::default()
    };
    let e = load_dataset(&c, 8, 1).unwrap_err();
    assert_eq!(key_of(&e), "channels");

    let e = load_dataset(&DataConfig::default(), 8, 4).unwrap_err();
    assert_eq!(key_of(&e), "channels");
    let e = load_dataset(&DataConfig::default(), 0, 1).unwrap_err();
    assert_eq!(key_of(&e), "image_size");
}

#[test]
fn deserializes_with_kebab_case_values_and_rejects_unknown_keys() {
    let c: DataConfig =
        serde_json::from_str(r#"{"source": "folder", "path": "/data/cats", "channels": 3}"#)
            .unwrap();
    assert_eq!(c.source, DataSource::Folder);
    assert_eq!(c.path.as_deref(), Some(std::path::Path::new("/data/cats")));
    assert_eq!(c.channels, Some(3));
    assert_eq!(c.image_size, None);

    let c: DataConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, DataConfig::default());

    let e = serde_json::from_str::<DataConfig>(r#"{"sorce": "digits"}"#).unwrap_err();
    assert!(e.to_string().contains("sorce"), "{e}");
    assert!(serde_json::from_str::<DataConfig>(r#"{"source": "Folder"}"#).is_err());

    let m: ColorMode = serde_json::from_str(r#""grayscale""#).unwrap();
    assert_eq!(m, ColorMode::Grayscale);
    assert_eq!(ColorMode::Rgb.channels(), 3);
    assert_eq!(ColorMode::from_channels(1), Some(ColorMode::Grayscale));
    assert_eq!(ColorMode::from_channels(4), None);
}
