//! Whole runs in diffusers' format, out and back in: a pixel run exported as a `DDPMPipeline`
//! directory (a class-conditional one without `model_index.json`) and a latent run as
//! `unet/` + `scheduler/` + `vae/`, read back through `load_for_sampling` to the run's own UNet
//! outputs and samples; an autoencoder run as an `AutoencoderKL` directory; `model.init_from`
//! starting a fresh run from exactly the exported weights; the refusals, each naming its key
//! or file. Pipelines saved by diffusers itself are read in tests/diffusers_import.rs.
//!
//! Loading the exports with the real diffusers needs python, which CI has not, so it is a step
//! by hand: with `OXIDIFF_EXPORT_DIR` set, the pixel and latent tests keep their exports
//! there, each with oxidiff's DDIM run from a fixed x_T (`oxidiff_ddim.safetensors`: x_T, x_0,
//! and the decoded images of the latent one), for diffusers to load and repeat:
//!
//! ```text
//! rm -rf /tmp/oxidiff_export && OXIDIFF_EXPORT_DIR=/tmp/oxidiff_export cargo test --workspace --features oxidiff-train/wgpu --test export
//! /opt/refenv/bin/python tools/reference/pipeline_check.py --check-export /tmp/oxidiff_export
//! ```
//!
//! which printed (2026-12-02; progress bars and diffusers' warnings left out):
//!
//! ```text
//! /tmp/oxidiff_export/latent: DDIM 10 steps, max |diffusers - oxidiff| = 0.000153 (|x_0| max 371)
//! /tmp/oxidiff_export/latent: decoded images, max |diffusers - oxidiff| = 4.77e-07
//! /tmp/oxidiff_export/pixel: DDPMPipeline.from_pretrained ran, images (2, 8, 8, 1) in [0.00, 1.00]
//! /tmp/oxidiff_export/pixel: DDIM 10 steps, max |diffusers - oxidiff| = 3.58e-07 (|x_0| max 1)
//! ```
//!
//! The script's tolerance is 1e-4 on the largest absolute difference, of x_0 relative to its
//! largest value where that exceeds 1 (the latent run's untrained UNet makes unclipped latents
//! in the hundreds: x̂₀ divides by √ᾱ_T ≈ 0.006 at the first step; 0.000153 at 371 is 4e-7 of
//! it): ten DDIM steps of float32 UNets, whose single forward passes agree with diffusers' to
//! ~1e-5 (oxidiff-models' tests/unet2d.rs), on schedules computed in float64 here and float32
//! there. Within oxidiff the exported weights are the same bits as the run's: an export read
//! back, and `init_from`, are checked to 1e-6 or exactly.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_diffusion::randn;
use oxidiff_models::vae::load_diffusers_autoencoder;
use oxidiff_models::{DIFFUSERS_VERSION, UNet};
use oxidiff_train::{
    EXPORT_RECORD, ExportKind, Exported, LoadedModel, RunConfig, Trainer, export_run, generate,
    load_for_sampling,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use common::{
    DDIM_STEPS, SCHEDULER_KEYS, autoencoder_run, copy_dir, ddim, max_abs_diff, sampling_fields,
    serial, tiny_config, values, write_images, write_safetensors,
};

/// Where an export goes: under `OXIDIFF_EXPORT_DIR` when it is set (for the python check,
/// emptied first), else in `tmp`.
fn export_dir(tmp: &Path, name: &str) -> PathBuf {
    match std::env::var_os("OXIDIFF_EXPORT_DIR") {
        Some(root) => {
            let dir = PathBuf::from(root).join(name);
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
        None => tmp.join(name),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The UNet's outputs on fixed inputs: 3 images of its shape at t = 0, 17.5, 999.
fn unet_outputs(model: &UNet, shape: (usize, usize), device: &Device) -> Vec<f32> {
    let (side, channels) = shape;
    let x = randn(
        &mut ChaCha8Rng::seed_from_u64(5),
        [3, channels, side, side],
        device,
    );
    let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 17.5, 999.0], [3]), device);
    values(model.forward(x, t, None))
}

/// `(side, channels)` of what the UNet of `loaded` takes.
fn unet_shape(loaded: &LoadedModel) -> (usize, usize) {
    let unet = loaded.config.unet().unwrap();
    (unet.image_size, unet.in_channels)
}

/// With `OXIDIFF_EXPORT_DIR` set: oxidiff's DDIM from a fixed x_T on the export at `dir`,
/// for `pipeline_check.py --check-export`.
fn write_parity_data(loaded: &LoadedModel, dir: &Path, device: &Device) {
    if std::env::var_os("OXIDIFF_EXPORT_DIR").is_none() {
        return;
    }
    let (side, channels) = unet_shape(loaded);
    let x_t = randn(
        &mut ChaCha8Rng::seed_from_u64(21),
        [2, channels, side, side],
        device,
    );
    let x_0 = ddim(loaded, x_t.clone());
    let mut tensors = vec![
        ("x_T", x_t.dims(), values(x_t)),
        ("x_0", x_0.dims(), values(x_0.clone())),
    ];
    if loaded.latent.is_some() {
        let images = loaded.to_images(x_0);
        tensors.push(("images", images.dims(), values(images)));
    }
    let metadata = HashMap::from([("steps".to_string(), DDIM_STEPS.to_string())]);
    write_safetensors(&dir.join("oxidiff_ddim.safetensors"), &tensors, metadata);
}

/// A tiny pixel run of `steps` steps on 16 images in `tmp/data`.
fn pixel_run(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let data = tmp.join("data");
    write_images(&data, 16);
    let run = tmp.join(name);
    let mut all = vec!["train.steps=3", "train.batch_size=8"];
    all.extend(extra);
    let mut trainer = Trainer::new(tiny_config(&data, &all), &run, &Device::flex()).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    run
}

#[test]
fn a_pixel_run_exports_as_a_ddpm_pipeline_that_samples_like_the_run() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let run = pixel_run(tmp.path(), "run", &[]);
    let out = export_dir(tmp.path(), "pixel");
    let exported = export_run(&run, true, &out).unwrap();
    assert_eq!(exported.kind, ExportKind::DdpmPipeline);
    assert_eq!((exported.step, exported.weights.as_str()), (3, "ema"));
    let record: Exported = serde_json::from_value(read_json(&out.join(EXPORT_RECORD))).unwrap();
    assert_eq!(record, exported);

    assert_eq!(
        read_json(&out.join("model_index.json")),
        json!({
            "_class_name": "DDPMPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"],
        })
    );
    let scheduler = read_json(&out.join("scheduler/scheduler_config.json"));
    let mut keys: Vec<&str> = scheduler
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = SCHEDULER_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    // The run's [diffusion] defaults, in diffusers' names.
    for (key, value) in [
        ("_class_name", json!("DDPMScheduler")),
        ("_diffusers_version", json!(DIFFUSERS_VERSION)),
        ("num_train_timesteps", json!(1000)),
        ("beta_start", json!(1e-4)),
        ("beta_end", json!(0.02)),
        ("beta_schedule", json!("linear")),
        ("trained_betas", Value::Null),
        ("variance_type", json!("fixed_small")),
        ("clip_sample", json!(true)),
        ("prediction_type", json!("epsilon")),
        ("thresholding", json!(false)),
        ("clip_sample_range", json!(1.0)),
        ("timestep_spacing", json!("trailing")),
        ("steps_offset", json!(0)),
        ("rescale_betas_zero_snr", json!(false)),
    ] {
        assert_eq!(scheduler[key], value, "{key}");
    }
    assert_eq!(
        read_json(&out.join("unet/config.json"))["_class_name"],
        "UNet2DModel"
    );

    // Read back: the same network, schedule and samples as the run's own.
    let ours = load_for_sampling(&run, true, &device).unwrap();
    let theirs = load_for_sampling(&out, true, &device).unwrap();
    assert_eq!(theirs.config.unet().unwrap(), ours.config.unet().unwrap());
    assert_eq!(
        sampling_fields(&theirs.diffusion.config),
        sampling_fields(&ours.diffusion.config)
    );
    assert!(theirs.latent.is_none() && theirs.standardization.is_none());
    let shape = unet_shape(&ours);
    let reference = unet_outputs(&ours.model, shape, &device);
    let diff = max_abs_diff(&unet_outputs(&theirs.model, shape, &device), &reference);
    assert!(diff <= 1e-6, "UNet outputs differ by {diff}");
    let sample = |loaded: &LoadedModel| {
        let images = generate(
            &loaded.model,
            &loaded.diffusion,
            &ours.config.sample,
            [2, 1, 8, 8],
            3,
            &device,
            &mut |_, _| {},
        )
        .unwrap();
        values(images)
    };
    let diff = max_abs_diff(&sample(&theirs), &sample(&ours));
    assert!(diff <= 1e-6, "DDIM samples differ by {diff}");

    // The bare UNet directory finds its schedule in the sibling scheduler/.
    let bare = load_for_sampling(&out.join("unet"), true, &device).unwrap();
    assert_eq!(
        max_abs_diff(&unet_outputs(&bare.model, shape, &device), &reference),
        0.0
    );
    assert_eq!(bare.checkpoint, out.join("unet"));

    // The online weights, and an earlier export replaced whole.
    let online = tmp.path().join("online");
    export_run(&run, true, &online).unwrap();
    let exported = export_run(&run, false, &online).unwrap();
    assert_eq!(exported.weights, "online");
    let theirs_online = load_for_sampling(&online, true, &device).unwrap();
    let ours_online = load_for_sampling(&run, false, &device).unwrap();
    assert_eq!(
        max_abs_diff(
            &unet_outputs(&theirs_online.model, shape, &device),
            &unet_outputs(&ours_online.model, shape, &device)
        ),
        0.0
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    write_parity_data(&theirs, &out, &device);
}

#[test]
fn a_class_conditional_run_exports_its_unet_and_scheduler_without_a_pipeline_index() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let data = tmp.path().join("classes");
    write_images(&data.join("a"), 8);
    write_images(&data.join("b"), 8);
    let run = tmp.path().join("run");
    let config = tiny_config(
        &data,
        &["model.num_classes=2", "train.steps=2", "train.batch_size=8"],
    );
    let mut trainer = Trainer::new(config, &run, &device).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    drop(trainer);
    let out = tmp.path().join("exported");
    let exported = export_run(&run, true, &out).unwrap();
    assert_eq!(exported.kind, ExportKind::ClassConditional);
    assert!(
        exported.notes[0].contains("class_labels"),
        "{:?}",
        exported.notes
    );
    assert!(!out.join("model_index.json").exists());
    // Two classes and oxidiff's "no class" row.
    assert_eq!(
        read_json(&out.join("unet/config.json"))["num_class_embeds"],
        3
    );
    let ours = load_for_sampling(&run, true, &device).unwrap();
    let theirs = load_for_sampling(&out, true, &device).unwrap();
    assert_eq!(theirs.model.null_label(), Some(2));
    let shape = unet_shape(&ours);
    assert_eq!(
        max_abs_diff(
            &unet_outputs(&theirs.model, shape, &device),
            &unet_outputs(&ours.model, shape, &device)
        ),
        0.0
    );
}

#[test]
fn a_latent_run_exports_its_unet_scheduler_and_vae_which_decode_like_the_run() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let data = tmp.path().join("data");
    write_images(&data, 16);
    let vae_run = tmp.path().join("vae");
    // A finished 8×8 → 4×4×2 autoencoder run (f = 2), trained a few steps.
    autoencoder_run(&data, &vae_run, 3, None);
    let run = tmp.path().join("ldm");
    let config = tiny_config(
        &data,
        &[
            &format!("latent.autoencoder=\"{}\"", vae_run.display()),
            "diffusion.clip_sample=false",
            "train.batch_size=8",
            "train.steps=3",
        ],
    );
    let mut trainer = Trainer::new(config, &run, &device).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let scaling_factor = trainer.task.latents().unwrap().1.record.scaling_factor;
    drop(trainer);

    let out = export_dir(tmp.path(), "latent");
    let exported = export_run(&run, true, &out).unwrap();
    assert_eq!(exported.kind, ExportKind::Latent);
    assert!(
        !out.join("model_index.json").exists(),
        "no diffusers pipeline takes a UNet2DModel with an AutoencoderKL"
    );
    let vae_json = read_json(&out.join("vae/config.json"));
    assert_eq!(vae_json["_class_name"], "AutoencoderKL");
    assert_eq!(vae_json["scaling_factor"].as_f64(), Some(scaling_factor));
    assert_eq!(vae_json["sample_size"], 8);
    assert_eq!(read_json(&out.join("unet/config.json"))["sample_size"], 4);
    assert_eq!(
        read_json(&out.join("scheduler/scheduler_config.json"))["clip_sample"],
        false
    );

    let ours = load_for_sampling(&run, true, &device).unwrap();
    let theirs = load_for_sampling(&out, true, &device).unwrap();
    assert_eq!(theirs.image_shape().unwrap(), (8, 1));
    assert_eq!(
        theirs.latent.as_ref().unwrap().scaling_factor,
        scaling_factor
    );
    let shape = unet_shape(&ours);
    assert_eq!(shape, (4, 2));
    let diff = max_abs_diff(
        &unet_outputs(&theirs.model, shape, &device),
        &unet_outputs(&ours.model, shape, &device),
    );
    assert!(diff <= 1e-6, "UNet outputs differ by {diff}");
    let decoded = |loaded: &LoadedModel| {
        let latents = generate(
            &loaded.model,
            &loaded.diffusion,
            &ours.config.sample,
            [2, 2, 4, 4],
            9,
            &device,
            &mut |_, _| {},
        )
        .unwrap();
        values(loaded.to_images(latents))
    };
    let (a, b) = (decoded(&theirs), decoded(&ours));
    assert_eq!(a.len(), 2 * 8 * 8);
    let diff = max_abs_diff(&a, &b);
    assert!(diff <= 1e-6, "decoded samples differ by {diff}");
    write_parity_data(&theirs, &out, &device);

    // The autoencoder run alone: an AutoencoderKL directory that decodes as the run does.
    let vae_out = tmp.path().join("vae-export");
    let exported = export_run(&vae_run, true, &vae_out).unwrap();
    assert_eq!(exported.kind, ExportKind::Autoencoder);
    assert!(
        !exported.notes.is_empty(),
        "says where scaling_factor is from"
    );
    let config_json = read_json(&vae_out.join("config.json"));
    assert_eq!(config_json["_class_name"], "AutoencoderKL");
    assert_eq!(config_json["sample_size"], 8);
    let (_, vae) = load_diffusers_autoencoder(&vae_out, &device).unwrap();
    let z = randn(&mut ChaCha8Rng::seed_from_u64(8), [2, 2, 4, 4], &device);
    let diff = max_abs_diff(
        &values(vae.decode(z.clone())),
        &values(ours.latent.as_ref().unwrap().vae.decode(z)),
    );
    assert!(diff <= 1e-6, "decoders differ by {diff}");
    let err = load_for_sampling(&vae_out, true, &device)
        .err()
        .expect("an autoencoder does not sample")
        .to_string();
    assert!(err.contains("AutoencoderKL"), "{err}");
}

#[test]
fn init_from_starts_a_fresh_run_from_exactly_the_exported_weights() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let run = pixel_run(tmp.path(), "run", &[]);
    let out = tmp.path().join("exported");
    export_run(&run, true, &out).unwrap();
    let exported = load_for_sampling(&out, true, &device).unwrap();
    let shape = unet_shape(&exported);
    let reference = unet_outputs(&exported.model, shape, &device);
    let data = tmp.path().join("data");

    for (i, source) in [out.clone(), out.join("unet"), run.clone()]
        .iter()
        .enumerate()
    {
        let init = format!("model.init_from=\"{}\"", source.display());
        let config = tiny_config(&data, &["train.steps=2", "train.batch_size=8", &init]);
        let mut trainer = Trainer::new(config, &tmp.path().join(format!("fresh-{i}")), &device)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let online = trainer.state.model.valid();
        assert_eq!(
            max_abs_diff(&unet_outputs(&online, shape, &device), &reference),
            0.0,
            "{}",
            source.display()
        );
        assert_eq!(
            max_abs_diff(
                &unet_outputs(&trainer.state.ema.model, shape, &device),
                &reference
            ),
            0.0
        );
        // And it trains from there.
        trainer.run(None, &mut |_| {}).unwrap();
        assert_eq!(trainer.state.step, 2);
    }

    // Another architecture is refused before any work, naming the key and the file.
    let fresh = tmp.path().join("mismatch");
    for (source, file) in [(&out, "unet/config.json"), (&run, "config.toml")] {
        let init = format!("model.init_from=\"{}\"", source.display());
        let config = tiny_config(&data, &["model.model_channels=32", &init]);
        let err = Trainer::new(config, &fresh, &device)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("model.model_channels = 16") && err.contains(file),
            "{err}"
        );
        assert!(!fresh.exists(), "nothing is written");
    }
    let config = tiny_config(
        &data,
        &[
            "diffusion.variance_type=\"learned\"",
            "diffusion.loss=\"hybrid\"",
            &format!("model.init_from=\"{}\"", out.display()),
        ],
    );
    let err = Trainer::new(config, &fresh, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("diffusion.variance_type"), "{err}");
    let err = RunConfig::default_with(&[
        "task=\"autoencoder\"".into(),
        format!("model.init_from=\"{}\"", out.display()),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.init_from"), "{err}");
    let config = tiny_config(&data, &["model.init_from=\"/no/such/dir\""]);
    let err = Trainer::new(config, &fresh, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.init_from") && err.contains("/no/such/dir"),
        "{err}"
    );
}

#[test]
fn exports_and_loads_refuse_what_the_other_side_cannot_express() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();

    let standardized = pixel_run(
        tmp.path(),
        "per-channel",
        &[
            "data.standardize=\"per-channel\"",
            "diffusion.clip_sample=false",
        ],
    );
    let err = export_run(&standardized, true, &tmp.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.standardize = \"per-channel\"") && err.contains("x / 2 + 0.5"),
        "{err}"
    );
    assert!(!tmp.path().join("x").exists());

    let run = pixel_run(tmp.path(), "run", &[]);
    // A directory holding something else is not overwritten.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let err = export_run(&run, true, &busy).unwrap_err().to_string();
    assert!(
        err.contains("busy") && err.contains("not empty") && err.contains(EXPORT_RECORD),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );
    // Nor an earlier export someone added a file to.
    let out = tmp.path().join("exported");
    export_run(&run, true, &out).unwrap();
    std::fs::write(out.join("README.md"), "mine").unwrap();
    let err = export_run(&run, true, &out).unwrap_err().to_string();
    assert!(err.contains("README.md"), "{err}");
    std::fs::remove_file(out.join("README.md")).unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = export_run(&run, true, &file).unwrap_err().to_string();
    assert!(err.contains("is a file"), "{err}");

    // A UNet without its schedule.
    let lonely = tmp.path().join("lonely/unet-only");
    copy_dir(&out.join("unet"), &lonely);
    let err = load_for_sampling(&lonely, true, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("lonely/scheduler/scheduler_config.json") && err.contains("missing"),
        "{err}"
    );
    let partial = tmp.path().join("partial");
    copy_dir(&out, &partial);
    std::fs::remove_dir_all(partial.join("scheduler")).unwrap();
    let err = load_for_sampling(&partial, true, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("partial/scheduler/scheduler_config.json") && err.contains("missing"),
        "{err}"
    );
    // A schedule oxidiff cannot compute, named by key.
    let thresholded = tmp.path().join("thresholded");
    copy_dir(&out, &thresholded);
    let path = thresholded.join("scheduler/scheduler_config.json");
    let mut json = read_json(&path);
    json["thresholding"] = json!(true);
    std::fs::write(&path, json.to_string()).unwrap();
    let err = load_for_sampling(&thresholded, true, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("scheduler_config.json") && err.contains("thresholding = true"),
        "{err}"
    );
}
