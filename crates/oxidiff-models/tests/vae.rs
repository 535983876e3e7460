//! Parity with diffusers' `AutoencoderKL`: a tiny random model saved by the real diffusers
//! (`tests/fixtures/tiny_vae/`, written by
//! `/opt/refenv/bin/python tools/reference/vae_golden.py` with torch 2.15, diffusers 0.42.1)
//! loads here, and encodes and decodes its stored inputs to diffusers' outputs; exported again,
//! it reads back to the same numbers.

mod common;

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use oxidiff_models::vae::{AutoencoderKL, load_diffusers_autoencoder, save_diffusers_autoencoder};

use common::TensorFile;

fn fixture() -> PathBuf {
    common::fixture("tiny_vae")
}

/// The named float32 tensor of `io.safetensors`.
fn stored(name: &str, device: &Device) -> Tensor<4> {
    TensorFile::read(&fixture().join("io.safetensors")).float(name, device)
}

fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar::<f32>()
}

/// encode → (mean, logvar), decode(mean), decode(mean + std·noise), against diffusers'.
fn assert_matches_diffusers(vae: &AutoencoderKL, device: &Device, what: &str) {
    let posterior = vae.encode(stored("x", device));
    let tolerance = 1e-4;
    for (name, got) in [
        ("mean", posterior.mean.clone()),
        ("logvar", posterior.logvar.clone()),
        ("decoded", vae.decode(posterior.mode())),
        (
            "sampled",
            vae.decode(posterior.sample(stored("noise", device))),
        ),
    ] {
        let diff = max_abs_diff(got, stored(name, device));
        assert!(
            diff <= tolerance,
            "{what}: {name} differs from diffusers' by {diff}"
        );
    }
}

#[test]
fn a_diffusers_autoencoder_loads_and_matches_its_outputs() {
    let device = Device::flex();
    let (config, vae) = load_diffusers_autoencoder(&fixture(), &device).unwrap();
    assert_eq!(config.block_out_channels, [8, 16]);
    assert_eq!(config.downsampling_factor(), 2);
    assert_matches_diffusers(&vae, &device, "loaded");

    // Exported and loaded again: the same network. OXIDIFF_EXPORT_DIR keeps the export for
    // `tools/reference/vae_golden.py --check DIR`, which loads it with diffusers.
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("OXIDIFF_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("exported"));
    save_diffusers_autoencoder(&out, &config, &vae).unwrap();
    let (again, reloaded) = load_diffusers_autoencoder(&out, &device).unwrap();
    assert_eq!(again, config);
    assert_matches_diffusers(&reloaded, &device, "exported and reloaded");
}

#[test]
fn a_directory_that_is_not_this_architecture_is_refused_naming_the_tensor() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vae");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap())
            .unwrap();
    // One more resnet per level than the weights have.
    config["layers_per_block"] = 2.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixture().join("diffusion_pytorch_model.safetensors"),
        dir.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let err = load_diffusers_autoencoder(&dir, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing `") && err.contains(".resnets.2."),
        "{err}"
    );

    config["layers_per_block"] = 1.into();
    config["block_out_channels"] = serde_json::json!([8, 10]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = load_diffusers_autoencoder(&dir, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("block_out_channels"), "{err}");

    std::fs::remove_file(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    config["block_out_channels"] = serde_json::json!([8, 16]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = load_diffusers_autoencoder(&dir, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");
}
