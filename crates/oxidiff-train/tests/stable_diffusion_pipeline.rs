//! diffusers' `StableDiffusionPipeline` directories (`model_index.json`, `unet/` a
//! `UNet2DConditionModel`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) both ways:
//! a tiny random pipeline saved by the real diffusers (fixtures/tiny_sd_pipeline, written by
//! `/opt/refenv/bin/python tools/reference/sd_pipeline_check.py` with the pipeline's own guided
//! DDIM run) samples here as it does there; a latent text-to-image run exports as one that
//! oxidiff reads back and samples exactly like the run; a pipeline whose parts disagree is
//! refused. On the diffusers fixture (2026-12-02, diffusers 0.42.1, transformers 5.24): latents
//! 3.6e-5 at |x_0| 37, decoded images 1.6e-6. With Stable Diffusion 1.5's own scheduler config
//! (a PNDMScheduler) in place of its DDIMScheduler, the same script's PNDM run
//! (fixtures/tiny_sd_pipeline_pndm) samples here with `pndm`.
//!
//! diffusers' side needs python, which CI has not: with `OXIDIFF_EXPORT_DIR` set the test
//! keeps its export there with oxidiff's guided DDIM run from a fixed x_T
//! (`oxidiff_sd.safetensors`: x_T, the final latents x_0 and the decoded images; the prompt,
//! negative prompt, guidance scale and steps in its metadata), and
//!
//! ```text
//! rm -rf /tmp/oxidiff_sd && OXIDIFF_EXPORT_DIR=/tmp/oxidiff_sd cargo test --workspace --features oxidiff-train/wgpu --test stable_diffusion_pipeline
//! /opt/refenv/bin/python tools/reference/sd_pipeline_check.py --check-export /tmp/oxidiff_sd
//! ```
//!
//! runs `StableDiffusionPipeline.from_pretrained` on it with a `DDIMScheduler` and the same
//! latents, prompt and steps, and prints the largest differences; on 2026-12-02 (diffusers
//! 0.42.1, transformers 5.24, torch 2.15; warnings left out):
//!
//! ```text
//! /tmp/oxidiff_sd/stable_diffusion: StableDiffusionPipeline, CLIPTextModel, DDIM 10 steps, guidance 3: max |diffusers - oxidiff| latents = 9.16e-05 (|x_0| max 370)
//! /tmp/oxidiff_sd/stable_diffusion: decoded images, max |diffusers - oxidiff| = 5.29e-07
//! ```
//!
//! (the untrained UNet's unclipped latents reach hundreds; 9.2e-5 at 370 is 2.5e-7 of them).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxidiff_diffusion::randn;
use oxidiff_models::text::{ClipTextConfig, ClipTextModel, TextTokenizer};
use oxidiff_train::{ExportKind, LoadedModel, SamplerKind, Trainer, export_run, load_for_sampling};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use common::{
    DDIM_STEPS, autoencoder_run, copy_dir, max_abs_diff, serial, tiny_config, values, write_images,
    write_safetensors,
};

const PROMPT: &str = "a vertical line";
const NEGATIVE: &str = "a horizontal line";
const GUIDANCE: f64 = 3.0;

/// The guided denoiser of `loaded` toward `prompt`, away from `negative`.
fn guided(
    loaded: &LoadedModel,
    (prompt, negative, guidance): (&str, &str, f64),
    device: &Device,
) -> impl oxidiff_diffusion::Denoiser {
    loaded
        .prompts_guidance(&[prompt.to_string()], negative, guidance, device)
        .unwrap()
        .expect("a text-to-image model")
}

/// Guided DDIM (η = 0) of `steps` from `x_t` toward `prompt`, away from `negative`.
fn ddim_with(
    loaded: &LoadedModel,
    x_t: burn::tensor::Tensor<4>,
    asked: (&str, &str, f64),
    steps: usize,
) -> Vec<f32> {
    let device = x_t.device();
    let guided = guided(loaded, asked, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x_0 = oxidiff_diffusion::sample::sample_ddim(
        &guided,
        &loaded.diffusion,
        x_t,
        steps,
        0.0,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap();
    values(x_0)
}

/// [`ddim_with`] this test's prompt, negative prompt and scale, [`DDIM_STEPS`] steps.
fn guided_ddim(loaded: &LoadedModel, x_t: burn::tensor::Tensor<4>) -> Vec<f32> {
    ddim_with(loaded, x_t, (PROMPT, NEGATIVE, GUIDANCE), DDIM_STEPS)
}

/// A guided run of the diffusers pipeline, from `sd_io.safetensors`: its initial latents, final
/// latents and decoded images, and what it was asked.
struct StoredRun {
    x_t: burn::tensor::Tensor<4>,
    x_0: burn::tensor::Tensor<4>,
    images: burn::tensor::Tensor<4>,
    prompt: String,
    negative: String,
    guidance: f64,
    steps: usize,
}

impl StoredRun {
    fn read(path: &Path, device: &Device) -> Self {
        let io = std::fs::read(path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&io).unwrap();
        let meta = header.metadata().clone().unwrap();
        let io = safetensors::SafeTensors::deserialize(&io).unwrap();
        let tensor = |name: &str| {
            let view = io.tensor(name).unwrap();
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let shape: [usize; 4] = view.shape().try_into().unwrap();
            burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(v, shape), device)
        };
        Self {
            x_t: tensor("x_T"),
            x_0: tensor("x_0"),
            images: tensor("images"),
            prompt: meta["prompt"].clone(),
            negative: meta["negative_prompt"].clone(),
            guidance: meta["guidance_scale"].parse().unwrap(),
            steps: meta["steps"].parse().unwrap(),
        }
    }

    fn asked(&self) -> (&str, &str, f64) {
        (&self.prompt, &self.negative, self.guidance)
    }

    /// Checks oxidiff's final latents `x_0` and the images `loaded` decodes from them against
    /// diffusers'.
    fn check(&self, loaded: &LoadedModel, x_0: Vec<f32>, what: &str) {
        let expected = values(self.x_0.clone());
        let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&x_0, &expected);
        eprintln!("{what} latents: max |oxidiff - diffusers| = {diff:.3e} (|x_0| max {scale:.3})");
        assert!(
            diff / scale < 1e-4,
            "{what}: latents differ by {diff} (|x_0| max {scale})"
        );
        let images = loaded.to_images(burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(x_0, self.x_0.dims()),
            &self.x_0.device(),
        ));
        let diff = max_abs_diff(
            &values(images.clamp(-1.0, 1.0)),
            &values(self.images.clone()),
        );
        eprintln!("{what} images: max |oxidiff - diffusers| = {diff:.3e}");
        assert!(diff < 1e-4, "{what}: decoded images differ by {diff}");
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn a_pipeline_saved_by_diffusers_samples_here_as_diffusers_samples_it() {
    let fixture = fixture("tiny_sd_pipeline");
    let device = Device::flex();
    let loaded = load_for_sampling(&fixture, true, &device).unwrap();
    let text = loaded.text.as_ref().expect("its text encoder");
    assert_eq!(
        text.context_length(),
        16,
        "tokenizer_config.json's model_max_length"
    );
    assert!(loaded.latent.is_some());
    assert_eq!(loaded.config.sample.sampler, SamplerKind::Ddim);
    let run = StoredRun::read(&fixture.join("sd_io.safetensors"), &device);
    let x_0 = ddim_with(&loaded, run.x_t.clone(), run.asked(), run.steps);
    run.check(&loaded, x_0, "DDIM");
}

/// Stable Diffusion 1.5's own scheduler config (PNDMScheduler: PLMS over leading timesteps
/// shifted by steps_offset 1, ending at ᾱ_0) in place of the fixture's DDIMScheduler: the
/// pipeline samples with `pndm` by default, as diffusers' pipeline steps its scheduler.
#[test]
fn stable_diffusion_1_5s_pndm_scheduler_samples_here_as_in_diffusers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sd");
    copy_dir(&fixture("tiny_sd_pipeline"), &dir);
    let pndm = fixture("tiny_sd_pipeline_pndm");
    std::fs::copy(
        pndm.join("scheduler_config.json"),
        dir.join("scheduler/scheduler_config.json"),
    )
    .unwrap();
    let device = Device::flex();
    let loaded = load_for_sampling(&dir, true, &device).unwrap();
    assert_eq!(loaded.config.sample.sampler, SamplerKind::Pndm);
    let d = &loaded.config.diffusion;
    assert_eq!(
        (d.steps_offset, d.set_alpha_to_one, d.clip_sample),
        (1, false, false)
    );
    let run = StoredRun::read(&pndm.join("sd_io.safetensors"), &device);
    let guided = guided(&loaded, run.asked(), &device);
    let x_0 = oxidiff_diffusion::sample::sample_pndm(
        &guided,
        &loaded.diffusion,
        run.x_t.clone(),
        run.steps,
        &mut |_, _| {},
    )
    .unwrap();
    run.check(&loaded, values(x_0), "PNDM");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Where the export goes: under `OXIDIFF_EXPORT_DIR` when set (emptied first), else in `tmp`.
fn export_dir(tmp: &Path) -> PathBuf {
    match std::env::var_os("OXIDIFF_EXPORT_DIR") {
        Some(root) => {
            let dir = PathBuf::from(root).join("stable_diffusion");
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
        None => tmp.join("export"),
    }
}

#[test]
fn a_latent_text_run_exports_as_a_stable_diffusion_pipeline_that_samples_like_the_run() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 16);
    for i in 0..16 {
        let caption = [
            "a vertical line",
            "a horizontal line",
            "a diagonal",
            "a thick diagonal",
        ];
        std::fs::write(data.join(format!("img-{i:02}.txt")), caption[i % 4]).unwrap();
    }
    let vae = tmp.path().join("vae");
    autoencoder_run(&data, &vae, 4, None);
    let encoder = tmp.path().join("clip");
    ClipTextModel::new(ClipTextConfig::small(), &Device::flex())
        .save(&encoder)
        .unwrap();
    TextTokenizer::clip()
        .unwrap()
        .save_pretrained(&encoder)
        .unwrap();
    let config = tiny_config(
        &data,
        &[
            "data.captions=\"sidecar\"",
            &format!("text.encoder=\"{}\"", encoder.display()),
            "text.max_length=10",
            &format!("latent.autoencoder=\"{}\"", vae.display()),
            "diffusion.clip_sample=false",
            "train.batch_size=8",
            "train.steps=4",
        ],
    );
    let device = Device::flex();
    let run = tmp.path().join("run");
    Trainer::new(config, &run, &device)
        .unwrap()
        .run(None, &mut |_| {})
        .unwrap();

    let out = export_dir(tmp.path());
    let exported = export_run(&run, true, &out).unwrap();
    assert_eq!(exported.kind, ExportKind::StableDiffusionPipeline);
    let index = read_json(&out.join("model_index.json"));
    assert_eq!(index["_class_name"], "StableDiffusionPipeline");
    assert_eq!(index["text_encoder"][1], "CLIPTextModel");
    assert_eq!(index["unet"][1], "UNet2DConditionModel");
    let unet = read_json(&out.join("unet/config.json"));
    assert_eq!(unet["_class_name"], "UNet2DConditionModel");
    assert_eq!(unet["cross_attention_dim"], 64);
    let tokenizer = read_json(&out.join("tokenizer/tokenizer_config.json"));
    assert_eq!(
        tokenizer["model_max_length"], 10,
        "the pipeline pads prompts to the run's context"
    );
    assert!(out.join("text_encoder/model.safetensors").is_file());

    // The export samples as the run does, from the same noise.
    let from_run = load_for_sampling(&run, true, &device).unwrap();
    let from_export = load_for_sampling(&out, true, &device).unwrap();
    assert!(from_export.text.is_some() && from_export.latent.is_some());
    let unet_config = from_run.config.unet().unwrap();
    let x_t = randn(
        &mut ChaCha8Rng::seed_from_u64(21),
        [
            2,
            unet_config.in_channels,
            unet_config.image_size,
            unet_config.image_size,
        ],
        &device,
    );
    let run_x0 = guided_ddim(&from_run, x_t.clone());
    let export_x0 = guided_ddim(&from_export, x_t.clone());
    assert!(
        max_abs_diff(&run_x0, &export_x0) < 1e-5,
        "{}",
        max_abs_diff(&run_x0, &export_x0)
    );

    if std::env::var_os("OXIDIFF_EXPORT_DIR").is_some() {
        let shape = x_t.dims();
        let x_0 = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(export_x0.clone(), shape),
            &device,
        );
        let images = from_export.to_images(x_0);
        let tensors = [
            ("x_T", shape, values(x_t)),
            ("x_0", shape, export_x0),
            ("images", images.dims(), values(images)),
        ];
        let metadata = HashMap::from([
            ("steps".to_string(), DDIM_STEPS.to_string()),
            ("prompt".to_string(), PROMPT.to_string()),
            ("negative_prompt".to_string(), NEGATIVE.to_string()),
            ("guidance_scale".to_string(), GUIDANCE.to_string()),
        ]);
        write_safetensors(&out.join("oxidiff_sd.safetensors"), &tensors, metadata);
    }

    // A pipeline whose UNet attends to states of another width is refused, naming both.
    let broken = tmp.path().join("broken");
    copy_dir(&out, &broken);
    let wider = tmp.path().join("wider");
    ClipTextModel::new(
        ClipTextConfig {
            hidden_size: 32,
            intermediate_size: 64,
            projection_dim: Some(32),
            ..ClipTextConfig::small()
        },
        &Device::flex(),
    )
    .save(&wider)
    .unwrap();
    std::fs::remove_dir_all(broken.join("text_encoder")).unwrap();
    copy_dir(&wider, &broken.join("text_encoder"));
    let err = load_for_sampling(&broken, true, &device)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("cross_attention_dim = 64") && err.contains("32 wide"),
        "{err}"
    );
}

#[test]
fn a_run_fine_tunes_a_stable_diffusion_pipeline_from_its_weights() {
    let _turn = serial();
    let fixture = fixture("tiny_sd_pipeline");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 8);
    for i in 0..8 {
        std::fs::write(data.join(format!("img-{i:02}.txt")), "a red cat").unwrap();
    }
    // The pipeline's parts: its text encoder, its autoencoder, its UNet's weights and
    // architecture, its scheduler's schedule.
    let architecture = [
        "model.model_channels=8",
        "model.channel_mult=[1, 2]",
        "model.num_res_blocks=1",
        "model.attention_resolutions=[4]",
        "model.num_heads=2",
        "model.norm_groups=4",
        "model.time_embed_dim=32",
        "diffusion.beta_schedule=\"scaled-linear\"",
        "diffusion.beta_start=0.00085",
        "diffusion.beta_end=0.012",
        "diffusion.clip_sample=false",
    ];
    let mut overrides: Vec<String> = vec![
        "data.captions=\"sidecar\"".into(),
        format!("text.encoder=\"{}\"", fixture.display()),
        format!("latent.autoencoder=\"{}\"", fixture.join("vae").display()),
        format!("model.init_from=\"{}\"", fixture.display()),
        "train.batch_size=4".into(),
        "train.steps=2".into(),
        "train.lr=1e-9".into(),
        "train.min_lr=0".into(),
        "train.warmup_steps=0".into(),
        "train.ema_decay=0".into(),
    ];
    overrides.extend(architecture.iter().map(|s| s.to_string()));
    let all: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let config = tiny_config(&data, &all);
    let device = Device::flex();
    let run = tmp.path().join("run");
    Trainer::new(config.clone(), &run, &device)
        .unwrap()
        .run(None, &mut |_| {})
        .unwrap();
    // Two steps at lr 1e-9 leave the pipeline's weights as they were: the run samples as
    // the pipeline does.
    let tuned = load_for_sampling(&run, false, &device).unwrap();
    let original = load_for_sampling(&fixture, true, &device).unwrap();
    let x_t = randn(&mut ChaCha8Rng::seed_from_u64(3), [1, 2, 4, 4], &device);
    let diff = max_abs_diff(
        &guided_ddim(&tuned, x_t.clone()),
        &guided_ddim(&original, x_t),
    );
    assert!(diff < 1e-3, "{diff}");

    // Another architecture is refused, naming the key.
    let mut wrong = overrides.clone();
    wrong.retain(|s| !s.starts_with("model.num_res_blocks"));
    wrong.push("model.num_res_blocks=2".into());
    let all: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let err = Trainer::new(tiny_config(&data, &all), &tmp.path().join("wrong"), &device)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("model.num_res_blocks = 1"), "{err}");
}
