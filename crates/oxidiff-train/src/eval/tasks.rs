//! How well a trained model inpaints and denoises held-out images: PSNR against the originals
//! (and, for inpainting, FD-oxidiff of the filled images), the measurements behind
//! `oxidiff eval --inpaint` and `--denoise-sigmas`.

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_diffusion::randn;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::edit::{DenoiseMethod, InpaintMethod, denoise, inpaint, psnr};
use crate::generate::LoadedModel;

/// Inpainting of a centred square covering half of each side (a quarter of the image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InpaintScore {
    /// `"replacement"` or `"repaint j=…, r=…"`.
    pub method: String,
    pub steps: usize,
    /// PSNR (dB, peak-to-peak 2 in [-1, 1]) over the generated square only.
    pub psnr_masked: f64,
    /// FD-oxidiff of the filled images against the originals, when a feature network is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_oxidiff: Option<f64>,
    pub images: usize,
}

/// Denoising of images with added Gaussian noise of a known σ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoiseScore {
    /// σ in 8-bit levels.
    pub sigma: f64,
    /// PSNR of the noisy input and of the denoised output against the clean image (dB).
    pub psnr_noisy: f64,
    pub psnr_denoised: f64,
    pub steps: usize,
    pub images: usize,
}

/// The known-pixel mask with a centred square of side S/2 to generate.
///
/// # Shapes
/// - returns `[1, 1, S, S]` (1 = known)
pub fn centre_square_mask(size: usize, device: &Device) -> Tensor<4> {
    let (lo, hi) = (size / 4, size / 4 + size / 2);
    let known: Vec<f32> = (0..size * size)
        .map(|i| {
            let (y, x) = (i / size, i % size);
            if (lo..hi).contains(&y) && (lo..hi).contains(&x) {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(known, [1, 1, size, size]), device)
}

/// Inpaints the centre square of every image of `images` with `method` and scores it.
///
/// # Shapes
/// - `images`: `[N, C, S, S]` in the model's space
///
/// # Errors
/// Bad steps or RePaint options.
pub fn inpaint_score(
    loaded: &LoadedModel,
    images: Tensor<4>,
    method: InpaintMethod,
    steps: usize,
    seed: u64,
) -> Result<(InpaintScore, Tensor<4>), TrainError> {
    let [n, _, size, _] = images.dims();
    let device = images.device();
    let known = centre_square_mask(size, &device);
    let filled = inpaint(
        loaded,
        images.clone(),
        known.clone(),
        steps,
        method,
        None,
        seed,
    )?
    .clamp(-1.0, 1.0);
    let generated = known.neg().add_scalar(1.0);
    let score = InpaintScore {
        method: match method {
            InpaintMethod::Replacement => "replacement".into(),
            InpaintMethod::RePaint(o) => {
                format!("repaint j={}, r={}", o.jump_length, o.resample_count)
            }
        },
        steps,
        psnr_masked: psnr(filled.clone(), images, Some(generated)),
        fd_oxidiff: None,
        images: n,
    };
    Ok((score, filled))
}

/// Adds Gaussian noise of `sigma` 8-bit levels to `images` (seeded), denoises them from the
/// matching timestep and scores input and output.
///
/// # Shapes
/// - `images`: `[N, C, S, S]` in [-1, 1]
///
/// # Errors
/// σ not positive or beyond the schedule, bad steps, a per-channel-standardised run.
pub fn denoise_score(
    loaded: &LoadedModel,
    images: Tensor<4>,
    sigma: f64,
    steps: usize,
    seed: u64,
) -> Result<DenoiseScore, TrainError> {
    let dims = images.dims();
    let device = images.device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ sigma.to_bits());
    let noise = randn(&mut rng, dims, &device).mul_scalar((sigma / 127.5) as f32);
    let noisy = images.clone() + noise;
    let clean = denoise(
        loaded,
        noisy.clone(),
        DenoiseMethod::Sigma255(sigma),
        steps,
        None,
        seed,
    )?
    .clamp(-1.0, 1.0);
    Ok(DenoiseScore {
        sigma,
        psnr_noisy: psnr(noisy.clamp(-1.0, 1.0), images.clone(), None),
        psnr_denoised: psnr(clean, images, None),
        steps,
        images: dims[0],
    })
}
