//! diffusers' `AutoencoderKL` directory: `config.json` (diffusers' keys) and
//! `diffusion_pytorch_model.safetensors` (diffusers' tensor names, PyTorch layouts: linear
//! weights `[out, in]`, GroupNorm `weight`/`bias`), read and written through burn-store's
//! PyTorch adapters (the shared `diffusers_io` module). What `save_pretrained` wrote loads
//! here, and what is written here loads with `AutoencoderKL.from_pretrained`.

use std::path::Path;

use burn::store::KeyRemapper;
use burn::tensor::Device;

use super::{AutoencoderKL, AutoencoderKLConfig};
use crate::ModelError;
pub use crate::diffusers_io::{CONFIG_JSON, WEIGHTS_FILE};
use crate::diffusers_io::{load_weights, pytorch_leaf, read_config, save_model};

/// Loads an `AutoencoderKL` directory onto `device`.
///
/// # Errors
/// A missing or unreadable file, a config that is not an `AutoencoderKL`'s or cannot be built,
/// weights with missing, extra or mis-shaped tensors (the first few named).
pub fn load_diffusers_autoencoder(
    dir: &Path,
    device: &Device,
) -> Result<(AutoencoderKLConfig, AutoencoderKL), ModelError> {
    let (config_path, text) = read_config(dir)?;
    let config: AutoencoderKLConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&config_path, format!("not an AutoencoderKL config: {e}")))?;
    config.validate()?;
    let mut vae = config.init(device);
    // The modules carry diffusers' names already: nothing to rename.
    load_weights(&mut vae, dir, KeyRemapper::new(), pytorch_leaf)?;
    Ok((config, vae))
}

/// Writes `vae` and its config as an `AutoencoderKL` directory (created if needed), each file
/// atomically.
pub fn save_diffusers_autoencoder(
    dir: &Path,
    config: &AutoencoderKLConfig,
    vae: &AutoencoderKL,
) -> Result<(), ModelError> {
    let mut json = serde_json::to_value(config).expect("the config serialises");
    let object = json.as_object_mut().expect("a struct is an object");
    // What diffusers' from_pretrained reads to pick the class; the rest are its defaults.
    object.insert("_class_name".into(), "AutoencoderKL".into());
    object.insert("act_fn".into(), "silu".into());
    save_model(dir, &json, vae, KeyRemapper::new())
}
