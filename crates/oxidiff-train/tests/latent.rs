//! Latent diffusion's second stage: a diffusion run naming an autoencoder (an oxidiff run or a
//! diffusers directory) trains its UNet on the scaled latents, caches them keyed by the
//! autoencoder and the images, decodes its samples, and refuses bad combinations before any
//! work.

mod common;

use std::path::Path;

use burn::tensor::Device;
use oxidiff_models::vae::{AutoencoderKLConfig, save_diffusers_autoencoder};
use oxidiff_train::{LatentRecord, RunConfig, RunEnd, Trainer, generate, load_for_sampling};

use common::{autoencoder_run, serial, tiny_config, write_images};

fn latent_config(data: &Path, autoencoder: &Path, extra: &[&str]) -> RunConfig {
    let mut all = vec![
        format!("latent.autoencoder=\"{}\"", autoencoder.display()),
        "diffusion.clip_sample=false".into(),
        "data.validation_fraction=0.25".into(),
        "train.batch_size=8".into(),
        "train.steps=6".into(),
        "train.sample_every=6".into(),
        "train.checkpoint_every=3".into(),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    tiny_config(data, &all)
}

fn read_record(run: &Path) -> LatentRecord {
    serde_json::from_str(&std::fs::read_to_string(run.join("latent.json")).unwrap()).unwrap()
}

#[test]
fn a_latent_run_trains_on_scaled_latents_caches_them_and_decodes_its_samples() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 32);
    let vae_run = tmp.path().join("vae");
    autoencoder_run(&data, &vae_run, 4, None);
    let device = Device::flex();

    let run = tmp.path().join("ldm");
    let config = latent_config(&data, &vae_run, &[]);
    let unet = config.unet().unwrap();
    assert_eq!(
        (unet.image_size, unet.in_channels),
        (4, 2),
        "the latents' shape"
    );
    let mut trainer = Trainer::new(config.clone(), &run, &device).unwrap();
    let (space, made) = trainer.task.latents().expect("a latent run");
    assert_eq!(made.encoded, 32, "every image encoded once");
    assert_eq!(made.record.latent_shape, [2, 4, 4]);
    assert!(
        made.record.scaling_from.starts_with("1/σ of 24"),
        "{made:?}"
    );
    // scale_by_std: the training latents the UNet sees have unit σ.
    let seen = trainer.data.dataset.cached().unwrap();
    let n = seen.len() as f64;
    let mean = seen.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = seen
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    assert!(
        (var.sqrt() - 1.0).abs() < 1e-4,
        "σ of the scaled latents {}",
        var.sqrt()
    );
    assert_eq!(space.scaling_factor, made.record.scaling_factor);
    assert_eq!(trainer.data.dataset.size, 4);
    assert_eq!(trainer.data.validation.len(), 8);
    assert_eq!(trainer.run(Some(3), &mut |_| {}).unwrap(), RunEnd::Paused);
    assert!(run.join("latents.safetensors").is_file());
    drop(trainer);

    // Resumed: the latents come from the cache, the factor from latent.json.
    let before = read_record(&run);
    let mut trainer = Trainer::resume(&run, &[], &device).unwrap();
    let (_, made) = trainer.task.latents().unwrap();
    assert_eq!(made.encoded, 0, "read back from the cache: {made:?}");
    assert_eq!(made.record, before);
    assert_eq!(trainer.run(None, &mut |_| {}).unwrap(), RunEnd::Finished);
    // The grid holds decoded 8×8 images: 4 samples in one row of 8×8 tiles (with padding),
    // not 4×4 latents.
    let grid = image::open(run.join("samples/step-0000006.png")).unwrap();
    assert!(
        grid.width() >= 4 * 8 && grid.height() >= 8,
        "{:?}",
        (grid.width(), grid.height())
    );

    // Sampling decodes with the run's autoencoder and factor.
    let loaded = load_for_sampling(&run, true, &device).unwrap();
    assert_eq!(loaded.image_shape().unwrap(), (8, 1));
    let latents = generate(
        &loaded.model,
        &loaded.diffusion,
        &loaded.config.sample,
        [2, 2, 4, 4],
        7,
        &device,
        &mut |_, _| {},
    )
    .unwrap();
    let images = loaded.to_images(latents);
    assert_eq!(images.dims(), [2, 1, 8, 8]);
    let values: Vec<f32> = images.into_data().convert::<f32>().try_to_vec().unwrap();
    assert!(
        values
            .iter()
            .all(|v| v.is_finite() && (-1.0..=1.0).contains(v))
    );

    // Inpainting fills the latents and keeps the given pixels; denoising works by strength, a
    // σ of pixel noise is refused.
    let image = burn::tensor::Tensor::<4>::random(
        [1, 1, 8, 8],
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let known: Vec<f32> = (0..64).map(|i| if i % 8 < 4 { 1.0 } else { 0.0 }).collect();
    let known = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(known, [1, 1, 8, 8]),
        &device,
    );
    let filled = oxidiff_train::inpaint(
        &loaded,
        image.clone(),
        known.clone(),
        3,
        oxidiff_train::InpaintMethod::Replacement,
        None,
        1,
    )
    .unwrap();
    assert_eq!(filled.dims(), [1, 1, 8, 8]);
    let kept = ((filled.clone() - image.clone()) * known)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(kept, 0.0, "the known pixels are the given ones");
    let denoised = oxidiff_train::denoise(
        &loaded,
        image.clone(),
        oxidiff_train::DenoiseMethod::Strength(0.3),
        3,
        None,
        1,
    )
    .unwrap();
    assert_eq!(denoised.dims(), [1, 1, 8, 8]);
    let err = oxidiff_train::denoise(
        &loaded,
        image,
        oxidiff_train::DenoiseMethod::Sigma255(10.0),
        3,
        None,
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("strength"), "{err}");

    // Other images make the cache stale: it is refused and the images encoded again.
    write_images(&data, 33);
    let mut other = config.clone();
    other.data.validation_list = None;
    let run2 = tmp.path().join("ldm2");
    std::fs::create_dir_all(&run2).unwrap();
    std::fs::copy(
        run.join("latents.safetensors"),
        run2.join("latents.safetensors"),
    )
    .unwrap();
    let trainer = Trainer::new(other, &run2, &device).unwrap();
    let (_, made) = trainer.task.latents().unwrap();
    assert_eq!(made.encoded, 33);
    assert_eq!(made.stale_cache.as_deref(), Some("made from other images"));
}

#[test]
fn a_diffusers_autoencoder_directory_is_a_first_stage_with_its_scaling_factor() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 16);
    let device = Device::flex();
    let vae_config = AutoencoderKLConfig {
        in_channels: 1,
        out_channels: 1,
        norm_num_groups: 4,
        sample_size: 8,
        scaling_factor: 0.5,
        ..AutoencoderKLConfig::new(vec![8, 16], 1, 3)
    };
    let vae_dir = tmp.path().join("vae-diffusers");
    save_diffusers_autoencoder(&vae_dir, &vae_config, &vae_config.init(&device)).unwrap();

    let run = tmp.path().join("ldm");
    let config = latent_config(&data, &vae_dir, &["train.steps=2", "train.sample_every=2"]);
    let mut trainer = Trainer::new(config, &run, &device).unwrap();
    let (space, made) = trainer.task.latents().unwrap();
    assert_eq!(space.scaling_factor, 0.5);
    assert_eq!(made.record.scaling_from, "the autoencoder's config.json");
    assert_eq!(made.record.latent_shape, [3, 4, 4]);
    trainer.run(None, &mut |_| {}).unwrap();

    // New weights in the directory: the run refuses to decode with them.
    let other = vae_config.init(&device);
    save_diffusers_autoencoder(&vae_dir, &vae_config, &other).unwrap();
    let err = load_for_sampling(&run, true, &device)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("latent.json") && err.contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn bad_combinations_are_refused_before_any_work_naming_the_key() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 16);
    let device = Device::flex();
    let vae_run = tmp.path().join("vae");
    autoencoder_run(&data, &vae_run, 4, Some(2));

    let refused = |config: Result<RunConfig, oxidiff_train::TrainError>, words: &[&str]| {
        let err = match config {
            Err(e) => e.to_string(),
            Ok(config) => {
                let run = tmp.path().join("never");
                let err = Trainer::new(config, &run, &device).err().expect("refused");
                assert!(!run.join("config.toml").exists(), "nothing written: {err}");
                err.to_string()
            }
        };
        for word in words {
            assert!(err.contains(word), "{word:?} in {err}");
        }
    };
    // An unfinished autoencoder run (step 2 of 4).
    refused(
        Ok(latent_config(&data, &vae_run, &[])),
        &["unfinished", "step 2 of 4", "--resume"],
    );
    // One of its checkpoints, named explicitly, is accepted.
    let checkpoint = vae_run.join("checkpoints/step-0000002");
    assert!(latent_config(&data, &checkpoint, &[]).unet().is_ok());
    let ok = |extra: &[&str]| {
        let mut all = vec![
            format!("latent.autoencoder=\"{}\"", checkpoint.display()),
            "diffusion.clip_sample=false".into(),
        ];
        all.extend(extra.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        RunConfig::default_with(&all.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    refused(
        ok(&["model.in_channels=3"]).and_then(|c| c.unet().map(|_| c)),
        &["model.in_channels", "2 latent channels"],
    );
    refused(
        ok(&["model.image_size=8", "data.image_size=8"]).and_then(|c| c.unet().map(|_| c)),
        &["model.image_size", "4×4"],
    );
    refused(
        ok(&["data.image_size=9"]).and_then(|c| c.unet().map(|_| c)),
        &["data.image_size", "cannot downsample"],
    );
    refused(
        ok(&["diffusion.clip_sample=true"]),
        &["diffusion.clip_sample"],
    );
    refused(ok(&["data.flip=true"]), &["data.flip"]);
    refused(ok(&["task=\"autoencoder\""]), &["latent.autoencoder"]);
    refused(
        ok(&[])
            .map(|mut c| {
                c.latent.autoencoder = Some(tmp.path().join("missing"));
                c
            })
            .and_then(|c| c.unet().map(|_| c)),
        &["latent.autoencoder", "missing", "no such directory"],
    );
    // A diffusion run is not an autoencoder.
    let diffusion_run = tmp.path().join("pixel");
    let mut trainer = Trainer::new(
        tiny_config(&data, &["train.steps=1", "train.batch_size=4"]),
        &diffusion_run,
        &device,
    )
    .unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    refused(
        ok(&[])
            .map(|mut c| {
                c.latent.autoencoder = Some(diffusion_run.clone());
                c
            })
            .and_then(|c| c.unet().map(|_| c)),
        &["is a diffusion run"],
    );
}
