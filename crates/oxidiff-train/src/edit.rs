//! Putting a trained model to work on a given image: inpainting and denoising, the library
//! side of `oxidiff inpaint` and `oxidiff denoise`.
//!
//! Mask files follow the convention of image editors and diffusers' inpainting pipelines:
//! **white = the region to generate, black = pixels to keep**; grey levels blend. The samplers
//! themselves take the opposite (`1 = known`), which [`read_mask`] converts to.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_data::read_image_exact;
use oxidiff_diffusion::sample::{
    RePaintOptions, denoise_known_sigma, inpaint_ddim, largest_sigma, repaint, sdedit,
    timestep_for_sigma,
};
use oxidiff_diffusion::{Denoiser, GaussianDiffusion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::TrainError;
use crate::generate::{LoadedModel, Prompt};

/// An image file at the model's size, in the model's space (standardised like its training
/// data).
///
/// # Shapes
/// - returns `[1, C, S, S]`
///
/// # Errors
/// The file cannot be decoded or is not the model's size (both named in the message).
pub fn read_model_image(
    loaded: &LoadedModel,
    path: &Path,
    device: &Device,
) -> Result<Tensor<4>, TrainError> {
    let (size, channels) = loaded.image_shape()?;
    let mut pixels = read_image_exact(path, size, channels, &loaded.config.data.decode_options())?;
    if let Some(stats) = &loaded.standardization {
        stats.apply(&mut pixels, size * size);
    }
    Ok(Tensor::from_data(
        TensorData::new(pixels, [1, channels, size, size]),
        device,
    ))
}

/// A mask file (white = generate, black = keep) at the model's size, as the samplers' known
/// mask: 1 where the image is kept.
///
/// # Shapes
/// - returns `[1, 1, S, S]`, values in [0, 1]
///
/// # Errors
/// The file cannot be decoded or is not the model's size.
pub fn read_mask(
    loaded: &LoadedModel,
    path: &Path,
    device: &Device,
) -> Result<Tensor<4>, TrainError> {
    let size = loaded.image_shape()?.0;
    let luma = read_image_exact(path, size, 1, &loaded.config.data.decode_options())?;
    // Luma in [-1, 1] → "generate" in [0, 1] → "known" = 1 − generate.
    let known: Vec<f32> = luma.iter().map(|v| 1.0 - (v + 1.0) * 0.5).collect();
    Ok(Tensor::from_data(
        TensorData::new(known, [1, 1, size, size]),
        device,
    ))
}

/// Peak signal-to-noise ratio in dB between two images in [-1, 1] pixel space, over the pixels
/// where `weight` is 1 (all pixels without one): 10·log10(peak² / MSE) with the peak-to-peak
/// range 2.
///
/// # Shapes
/// - `a`, `b`: `[B, C, H, W]`; `weight`: broadcastable to them
pub fn psnr(a: Tensor<4>, b: Tensor<4>, weight: Option<Tensor<4>>) -> f64 {
    let sq = (a - b).square();
    let (sum, count) = match weight {
        Some(w) => {
            let w = w.expand(sq.dims());
            (
                (sq * w.clone()).sum().into_scalar::<f64>(),
                w.sum().into_scalar::<f64>(),
            )
        }
        None => {
            let n = sq.dims().iter().product::<usize>() as f64;
            (sq.sum().into_scalar::<f64>(), n)
        }
    };
    let mse = sum / count.max(1e-12);
    10.0 * (4.0 / mse.max(1e-20)).log10()
}

/// How the masked region is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InpaintMethod {
    /// DDIM (η = 0) with the kept region replaced by its noised original at every step.
    Replacement,
    /// RePaint's resampling (Lugmayr et al. 2022) on respaced ancestral steps.
    RePaint(RePaintOptions),
}

/// Fills the region where `known` is 0 of `image` with `steps` sampling steps, seeded by `seed`.
///
/// A latent run fills the latents: the known region is the image's own latents (re-encoded),
/// a latent cell counting as known as far as all its pixels are (the least known value of
/// its f×f block); the decoded result keeps the given pixels where the mask keeps them.
///
/// # Shapes
/// - `image`: `[1, C, S, S]` in the model's space; `known`: `[1, 1, S, S]`; returns `[1, C, S, S]`
///
/// # Errors
/// Bad arguments (steps, RePaint options, shapes), each named.
pub fn inpaint(
    loaded: &LoadedModel,
    image: Tensor<4>,
    known: Tensor<4>,
    steps: usize,
    method: InpaintMethod,
    prompt: Option<&Prompt>,
    seed: u64,
) -> Result<Tensor<4>, TrainError> {
    let model = loaded.denoiser(prompt, &image.device())?;
    let edit = Edit {
        model: &*model,
        diffusion: &loaded.diffusion,
        steps,
        method,
        seed,
    };
    let Some(space) = &loaded.latent else {
        return edit.inpaint(image, known);
    };
    let latents = space.encode(image.clone());
    let [_, _, side, _] = latents.dims();
    let known_latent = min_pool(known.clone(), side)?;
    let filled = edit.inpaint(latents, known_latent)?;
    let decoded = space.decode(filled);
    Ok(image * known.clone() + decoded * (known.neg() + 1.0))
}

/// The least value of each block of `mask` over a `side`×`side` grid.
///
/// # Shapes
/// - `mask`: `[1, 1, S, S]` with S a multiple of `side`; returns `[1, 1, side, side]`
fn min_pool(mask: Tensor<4>, side: usize) -> Result<Tensor<4>, TrainError> {
    let device = mask.device();
    let [_, _, size, _] = mask.dims();
    let values: Vec<f32> = mask
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| TrainError::Eval {
            message: format!("cannot read the mask back: {e:?}"),
        })?;
    let f = size / side.max(1);
    let mut pooled = vec![f32::INFINITY; side * side];
    for (i, v) in values.iter().enumerate() {
        let (y, x) = (i / size / f, (i % size) / f);
        let cell = &mut pooled[y * side + x];
        *cell = cell.min(*v);
    }
    Ok(Tensor::from_data(
        TensorData::new(pooled, [1, 1, side, side]),
        &device,
    ))
}

/// One inpainting as asked.
struct Edit<'a> {
    model: &'a dyn Denoiser,
    diffusion: &'a GaussianDiffusion,
    steps: usize,
    method: InpaintMethod,
    seed: u64,
}

impl Edit<'_> {
    /// [`inpaint`] on the UNet's own inputs (pixels, or a latent run's latents).
    fn inpaint(&self, image: Tensor<4>, known: Tensor<4>) -> Result<Tensor<4>, TrainError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (model, diffusion, steps) = (&self.model, self.diffusion, self.steps);
        Ok(match self.method {
            InpaintMethod::Replacement => inpaint_ddim(
                model,
                diffusion,
                image,
                known,
                steps,
                0.0,
                &mut rng,
                &mut |_, _| {},
            )?,
            InpaintMethod::RePaint(options) => repaint(
                model,
                diffusion,
                image,
                known,
                steps,
                options,
                &mut rng,
                &mut |_, _| {},
            )?,
        })
    }
}

/// How much noise to take out of an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DenoiseMethod {
    /// SDEdit (Meng et al. 2022): noise to t = strength·(T − 1), then sample back.
    Strength(f64),
    /// The image carries Gaussian noise of this standard deviation in 8-bit levels (0–255):
    /// start the reverse process at the matching t.
    Sigma255(f64),
}

/// Denoises `image` with DDIM (η = 0) over `steps` steps, or fewer when the starting timestep
/// has fewer below it (a light noise level starts close to t = 0). A latent run denoises the
/// image's latents by a strength (a σ of pixel noise is no noise level of the latents) and
/// decodes them.
///
/// # Shapes
/// - `image`: `[1, C, S, S]` in the model's space; returns the same
///
/// # Errors
/// A strength outside (0, 1], a σ that is not positive or beyond the schedule, a σ for a
/// per-channel-standardised run (its scale is not 8-bit levels), bad step counts.
pub fn denoise(
    loaded: &LoadedModel,
    image: Tensor<4>,
    method: DenoiseMethod,
    steps: usize,
    prompt: Option<&Prompt>,
    seed: u64,
) -> Result<Tensor<4>, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = loaded.denoiser(prompt, &image.device())?;
    let (model, diffusion) = (&model, &loaded.diffusion);
    if loaded.latent.is_some() && matches!(method, DenoiseMethod::Sigma255(_)) {
        return Err(TrainError::Eval {
            message: "a noise σ in 8-bit levels is a level of pixel noise, which a latent \
                      model never saw; denoise by a strength instead"
                .into(),
        });
    }
    let image = loaded.from_images(image);
    let denoised = match method {
        DenoiseMethod::Strength(s) => {
            // A light touch starts at a small t, which has fewer timesteps below it than asked.
            let t0 = (s.clamp(0.0, 1.0) * (diffusion.num_timesteps() - 1) as f64).round() as usize;
            let steps = steps.min(t0 + 1);
            sdedit(
                model,
                diffusion,
                image,
                s,
                steps,
                0.0,
                &mut rng,
                &mut |_, _| {},
            )?
        }
        DenoiseMethod::Sigma255(sigma) => {
            if loaded.standardization.is_some() {
                return Err(TrainError::Eval {
                    message: "a noise σ in 8-bit levels needs images scaled to [-1, 1]; this run \
                              standardised per channel, use a strength instead"
                        .into(),
                });
            }
            // 255 levels span the model's range of 2; the range is checked in the caller's
            // units, 8-bit levels.
            let largest = largest_sigma(diffusion) * 127.5;
            if !(sigma.is_finite() && sigma > 0.0 && sigma <= largest) {
                return Err(oxidiff_diffusion::DiffusionError::InvalidArgument {
                    name: "sigma".into(),
                    message: format!(
                        "{sigma} (8-bit levels): must be in (0, {largest:.1}], the noise levels \
                         this model's schedule reaches"
                    ),
                }
                .into());
            }
            let sigma = sigma / 127.5;
            let steps = steps.min(timestep_for_sigma(diffusion, sigma) + 1);
            denoise_known_sigma(
                model,
                diffusion,
                image,
                sigma,
                steps,
                0.0,
                &mut rng,
                &mut |_, _| {},
            )?
        }
    };
    Ok(loaded.to_images(denoised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error_over_all_pixels_or_a_region() {
        let device = Device::flex();
        let a = Tensor::<4>::zeros([1, 1, 2, 2], &device);
        // Off by 0.2 on the right column only: MSE 0.04 there, 0.02 overall.
        let b = Tensor::<4>::from_data(
            TensorData::new(vec![0.0, 0.2, 0.0, 0.2], [1, 1, 2, 2]),
            &device,
        );
        let right = Tensor::<4>::from_data(
            TensorData::new(vec![0.0, 1.0, 0.0, 1.0], [1, 1, 2, 2]),
            &device,
        );
        assert!((psnr(a.clone(), b.clone(), Some(right)) - 20.0).abs() < 1e-4);
        assert!((psnr(a, b, None) - 10.0 * (4.0f64 / 0.02).log10()).abs() < 1e-4);
    }
}
