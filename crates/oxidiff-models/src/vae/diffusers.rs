//! diffusers' `AutoencoderKL` directory: `config.json` (diffusers' keys) and
//! `diffusion_pytorch_model.safetensors` (diffusers' tensor names, PyTorch layouts: linear
//! weights `[out, in]`, GroupNorm `weight`/`bias`), read and written through burn-store's
//! PyTorch adapters. What `save_pretrained` wrote loads here, and what is written here loads
//! with `AutoencoderKL.from_pretrained`.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Device;

use super::{AutoencoderKL, AutoencoderKLConfig};
use crate::ModelError;

pub const CONFIG_JSON: &str = "config.json";
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Loads an `AutoencoderKL` directory onto `device`.
///
/// # Errors
/// A missing or unreadable file, a config that is not an `AutoencoderKL`'s or cannot be built,
/// weights with missing, extra or mis-shaped tensors (the first few named).
pub fn load_diffusers_autoencoder(
    dir: &Path,
    device: &Device,
) -> Result<(AutoencoderKLConfig, AutoencoderKL), ModelError> {
    let config_path = dir.join(CONFIG_JSON);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| ModelError::file(&config_path, e.to_string()))?;
    let config: AutoencoderKLConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&config_path, format!("not an AutoencoderKL config: {e}")))?;
    config.validate()?;
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(ModelError::file(
            &weights,
            "missing (diffusers' weight file)",
        ));
    }
    let mut vae = config.init(device);
    let mut store = SafetensorsStore::from_file(&weights)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    let result = vae
        .load_from(&mut store)
        .map_err(|e| ModelError::file(&weights, format!("unreadable: {e}")))?;
    let mut problems: Vec<String> = Vec::new();
    problems.extend(result.errors.iter().take(3).map(|e| format!("{e:?}")));
    problems.extend(
        result
            .missing
            .iter()
            .take(3)
            .map(|(p, _)| format!("missing `{p}`")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .take(3)
            .map(|p| format!("unexpected `{p}`")),
    );
    if !problems.is_empty() {
        let counts = format!(
            "{} missing, {} unexpected, {} unusable",
            result.missing.len(),
            result.unused.len(),
            result.errors.len()
        );
        return Err(ModelError::file(
            &weights,
            format!(
                "does not match config.json's architecture ({counts}): {}",
                problems.join("; ")
            ),
        ));
    }
    Ok((config, vae))
}

/// Writes `vae` and its config as an `AutoencoderKL` directory (created if needed).
pub fn save_diffusers_autoencoder(
    dir: &Path,
    config: &AutoencoderKLConfig,
    vae: &AutoencoderKL,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::file(dir, e.to_string()))?;
    let mut json = serde_json::to_value(config).expect("the config serialises");
    let object = json.as_object_mut().expect("a struct is an object");
    // What diffusers' from_pretrained reads to pick the class; the rest are its defaults.
    object.insert("_class_name".into(), "AutoencoderKL".into());
    object.insert("act_fn".into(), "silu".into());
    let config_path = dir.join(CONFIG_JSON);
    let text = serde_json::to_string_pretty(&json).expect("JSON serialises");
    std::fs::write(&config_path, text)
        .map_err(|e| ModelError::file(&config_path, e.to_string()))?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut store = SafetensorsStore::from_file(&weights).with_to_adapter(BurnToPyTorchAdapter);
    vae.save_into(&mut store)
        .map_err(|e| ModelError::file(&weights, format!("cannot write: {e}")))
}
