//! Drawing images from a trained model: the code behind `oxidiff sample` and the sample grids
//! written while training.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use oxidiff_diffusion::noise::randn;
use oxidiff_diffusion::{GaussianDiffusion, sample_ddim, sample_ddpm};
use oxidiff_models::UNet;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{self, CONFIG_FILE, EMA_FILE, MODEL_FILE};
use crate::config::{RunConfig, SampleConfig, SamplerKind};
use crate::error::TrainError;

/// A trained model ready to sample from.
pub struct LoadedModel {
    pub config: RunConfig,
    pub model: UNet,
    pub diffusion: GaussianDiffusion,
    pub checkpoint: PathBuf,
}

/// Loads a checkpoint (or a run directory's newest checkpoint) for sampling: the EMA weights
/// when `use_ema`, else the online weights.
pub fn load_for_sampling(
    path: &Path,
    use_ema: bool,
    device: &Device,
) -> Result<LoadedModel, TrainError> {
    let dir = checkpoint::resolve_checkpoint(path)?;
    let config = RunConfig::load(&dir.join(CONFIG_FILE), &[])?;
    let unet = config.model.resolve()?;
    let weights = if use_ema { EMA_FILE } else { MODEL_FILE };
    let model = checkpoint::load_weights(unet.init(device), &dir.join(weights))?;
    let diffusion = GaussianDiffusion::new(config.diffusion.clone())?;
    Ok(LoadedModel {
        config,
        model,
        diffusion,
        checkpoint: dir,
    })
}

/// Draws images of `shape` with the configured sampler, from noise seeded by `seed`.
///
/// # Shapes
/// - `shape`: `[N, C, S, S]`
/// - output: `[N, C, S, S]`, values clamped to [-1, 1]
pub fn generate(
    model: &UNet,
    diffusion: &GaussianDiffusion,
    sample: &SampleConfig,
    shape: [usize; 4],
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x_t = randn(&mut rng, shape, device);
    let images = match sample.sampler {
        SamplerKind::Ddpm => sample_ddpm(model, diffusion, x_t, &mut rng, progress),
        SamplerKind::Ddim => sample_ddim(
            model,
            diffusion,
            x_t,
            sample.steps,
            sample.eta,
            &mut rng,
            progress,
        )?,
    };
    Ok(images.clamp(-1.0, 1.0))
}

/// Writes images as a PNG grid (tiles upscaled so small images stay visible).
pub fn save_image_grid(path: &Path, images: Tensor<4>) -> Result<(), TrainError> {
    let [n, c, h, _] = images.dims();
    let data: Vec<f32> = images
        .into_data()
        .try_to_vec()
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read the samples back: {e:?}"),
        })?;
    let nrow = (n as f64).sqrt().ceil() as usize;
    let scale = (64 / h).max(1) as u32;
    oxidiff_data::save_grid(path, &data, n, c, h, nrow, scale)?;
    Ok(())
}
