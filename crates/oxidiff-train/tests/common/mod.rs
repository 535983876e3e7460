#![allow(dead_code)]

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_diffusion::randn;
use oxidiff_train::{AutoencoderTask, RunConfig, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Dropout draws from the backend's process-wide generator, which the trainer reseeds every
/// step; tests that train in parallel threads would interleave those draws, so they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `n` distinct 8×8 grayscale PNGs (simple shapes) into `dir`.
pub fn write_images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::GrayImage::from_fn(8, 8, |x, y| {
            let on = match i % 4 {
                0 => x == (i as u32 % 8),
                1 => y == (i as u32 % 8),
                2 => (x + y) % 8 == i as u32 % 8,
                _ => x.abs_diff(y) <= (i as u32 % 3),
            };
            image::Luma([if on { 255 } else { 0 }])
        });
        img.save(dir.join(format!("img-{i:02}.png"))).unwrap();
    }
}

/// What each of `write_images`' four shapes is, as a caption.
pub const SHAPES: [&str; 4] = [
    "a vertical line",
    "a horizontal line",
    "a thin diagonal",
    "a thick diagonal",
];

/// `n` images with kohya-style sidecar captions, all but the last one captioned.
pub fn captioned_images(dir: &Path, n: usize) {
    write_images(dir, n);
    for i in 0..n - 1 {
        let caption = format!("{}, number {i}", SHAPES[i % 4]);
        std::fs::write(dir.join(format!("img-{i:02}.txt")), caption).unwrap();
    }
}

/// A very small run on the images in `data_dir`, holding no images out unless `extra` says so
/// (the tests of a few images were written before runs held 5% out by default).
pub fn tiny_config(data_dir: &Path, extra: &[&str]) -> RunConfig {
    let mut overrides: Vec<String> = vec![
        "data.source=folder".into(),
        "data.validation_fraction=0".into(),
        format!("data.path=\"{}\"", data_dir.display()),
        "model.model_channels=16".into(),
        "model.norm_groups=4".into(),
        "train.batch_size=16".into(),
        "train.warmup_steps=5".into(),
        "train.checkpoint_every=1000".into(),
        "train.sample_every=1000".into(),
        "sample.num=4".into(),
        "sample.steps=5".into(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::default_with(&overrides).unwrap()
}

/// The overrides of a tiny autoencoder of 8×8 grayscale images: f = 2, 2 latent channels.
pub const TINY_AUTOENCODER: [&str; 6] = [
    "task=\"autoencoder\"",
    "autoencoder.image_size=8",
    "autoencoder.in_channels=1",
    "autoencoder.block_out_channels=[8, 16]",
    "autoencoder.norm_num_groups=4",
    "autoencoder.latent_channels=2",
];

/// A [`tiny_config`] of the [`TINY_AUTOENCODER`] at batch 8, with `extra` on top.
pub fn tiny_autoencoder_config(data_dir: &Path, extra: &[&str]) -> RunConfig {
    let mut all: Vec<&str> = TINY_AUTOENCODER.to_vec();
    all.push("train.batch_size=8");
    all.extend(extra);
    tiny_config(data_dir, &all)
}

/// A [`tiny_autoencoder_config`] run of `steps` steps on `data_dir` in `run`, stopped after
/// `stop_after` of them when given (then unfinished).
pub fn autoencoder_run(data_dir: &Path, run: &Path, steps: u64, stop_after: Option<u64>) {
    let config = tiny_autoencoder_config(data_dir, &[&format!("train.steps={steps}")]);
    let mut trainer = Trainer::<AutoencoderTask>::fresh(config, run, &Device::flex()).unwrap();
    trainer.run(stop_after, &mut |_| {}).unwrap();
}

/// The ε-MSE over all dataset images at fixed timesteps and fixed noise, evaluated on the CPU
/// (the weights are copied over from whatever device trained them), so that two evaluations
/// differ only through the weights.
pub fn fixed_eval_loss(trainer: &Trainer) -> f64 {
    let device = Device::flex();
    let model = trainer
        .task
        .unet
        .init(&device)
        .load_record(trainer.state.model.valid().into_record());
    let n = trainer.data.dataset.len();
    let indices: Vec<usize> = (0..n).collect();
    let x0 = trainer.data.dataset.batch(&indices, &device).unwrap();
    let [_, c, h, w] = x0.dims();
    let noise = randn(&mut ChaCha8Rng::seed_from_u64(1234), [n, c, h, w], &device);
    let t: Vec<usize> = (0..n).map(|i| 50 + i * 900 / n).collect();
    let x_t = trainer
        .task
        .diffusion
        .q_sample(x0.clone(), &t, noise.clone());
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let timesteps = Tensor::<1>::from_data(TensorData::new(tf, [n]), &device);
    let out = model.forward(x_t, timesteps, None);
    trainer
        .task
        .diffusion
        .training_loss(out, x0, noise, &t)
        .into_scalar::<f64>()
}

/// The values of `x`, as float32.
pub fn values(x: Tensor<4>) -> Vec<f32> {
    x.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// The largest absolute difference between `a` and `b` (of one length).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The diffusers names of every `DDPMScheduler.__init__` key, and the two `save_pretrained`
/// adds.
pub const SCHEDULER_KEYS: [&str; 17] = [
    "_class_name",
    "_diffusers_version",
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "variance_type",
    "clip_sample",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "clip_sample_range",
    "sample_max_value",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
];

/// The `[diffusion]` fields a scheduler carries (the rest only shape a training loss).
pub fn sampling_fields(c: &oxidiff_diffusion::DiffusionConfig) -> impl PartialEq + std::fmt::Debug {
    (
        c.num_train_timesteps,
        c.beta_schedule,
        c.beta_start,
        c.beta_end,
        c.rescale_zero_terminal_snr,
        c.prediction,
        c.variance_type,
        match c.variance_type {
            oxidiff_diffusion::VarianceType::Fixed => Some(c.ddpm_variance),
            oxidiff_diffusion::VarianceType::Learned => None,
        },
        c.timestep_spacing,
        (c.steps_offset, c.set_alpha_to_one),
        c.clip_sample,
    )
}

/// The steps of [`ddim`], as diffusers' side of the parity checks runs them too.
pub const DDIM_STEPS: usize = 10;

/// DDIM from `x_t` over [`DDIM_STEPS`] steps (η = 0).
pub fn ddim(loaded: &oxidiff_train::LoadedModel, x_t: Tensor<4>) -> Tensor<4> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    oxidiff_diffusion::sample::sample_ddim(
        &loaded.model,
        &loaded.diffusion,
        x_t,
        DDIM_STEPS,
        0.0,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap()
}

/// Writes float32 tensors (name, shape, values) and string metadata as a safetensors file, for
/// the reference scripts' `--check-export` runs.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, [usize; 4], Vec<f32>)],
    metadata: std::collections::HashMap<String, String>,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), b)| {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), b)
            .unwrap();
        (*name, view)
    });
    let file = safetensors::serialize(views, Some(metadata)).unwrap();
    std::fs::write(path, file).unwrap();
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
