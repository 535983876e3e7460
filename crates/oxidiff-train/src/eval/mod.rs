//! Evaluation of a trained model on held-out images: negative log-likelihood in bits/dim from
//! the variational bound, ε-MSE per band of timesteps, (see [`FeatureNet`]) the sample
//! distance FD-oxidiff, and a text-to-image model's prompt following ([`PromptFollowing`]).
//!
//! Every number here is a function of the weights and the images alone: noise and timesteps
//! come from generators seeded per image, so two checkpoints evaluated on the same images see
//! the same x_t and their numbers can be compared directly.

mod checkpoint;
mod features;
mod frechet;
mod log;
mod reconstruction;
mod ssim;
mod tasks;

pub use checkpoint::{
    AutoencoderEvalResult, ClassFollowing, DistanceOptions, EditOptions, EvalOptions, EvalPhase,
    EvalResult, EvalSplit, ImageSelection, NllOptions, PromptFollowing, PromptFollowingOptions,
    evaluate_autoencoder, evaluate_checkpoint, is_autoencoder,
};
pub use features::{
    FEATURE_DIM, FeatureNet, FeatureNetConfig, FeatureTask, PR_NEIGHBOURS, SampleDistance,
    classifier_accuracy, classify, features_of, sample_distance, train_feature_net,
};
pub use frechet::{FeatureStats, PrecisionRecall, StatsError, frechet_distance, precision_recall};
pub(crate) use log::append_eval;
pub use log::{EvalRecord, ReconstructionScores, read_eval};
pub use reconstruction::reconstruction_scores;
pub use ssim::ssim;
pub use tasks::{DenoiseScore, InpaintScore, centre_square_mask, denoise_score, inpaint_score};

use burn::tensor::{Device, Tensor, TensorData};
use oxidiff_data::{Augment, Dataset};
use oxidiff_diffusion::{Denoiser, GaussianDiffusion, randn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Number of timestep bands the held-out MSE is reported in.
pub const BANDS: usize = 4;

/// Keeps evaluation draws apart from the other streams derived from one seed.
const EVAL_STREAM: u64 = 0x5EED_E7A1_0000_0003;

/// ε-MSE of held-out images in four equal bands of t (low t = little noise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandMse {
    /// `[BANDS]`: the half-open range [start, end) of each band.
    pub bands: Vec<(usize, usize)>,
    /// `[BANDS]`: mean over images and pixels of (ε̂ − ε)², one t per image per band.
    pub mse: Vec<f64>,
    pub images: usize,
}

/// Negative log-likelihood of held-out images from the bound, bits per dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NllReport {
    /// Mean over images of the whole bound.
    pub bpd: f64,
    /// Standard error of that mean (sample standard deviation / √n).
    pub bpd_stderr: f64,
    /// Means of the parts: L_T, L_0 and Σ L_{t−1}.
    pub prior: f64,
    pub decoder: f64,
    pub diffusion: f64,
    pub images: usize,
    /// 1 = every KL term; k = every k-th term counted k times (see
    /// `oxidiff_diffusion::bound_timesteps`).
    pub stride: usize,
}

/// The bands of `num_timesteps`: four equal ranges, the last taking the remainder.
pub fn bands(num_timesteps: usize) -> Vec<(usize, usize)> {
    let width = num_timesteps / BANDS;
    (0..BANDS)
        .map(|b| {
            let end = if b + 1 == BANDS {
                num_timesteps
            } else {
                (b + 1) * width
            };
            (b * width, end.max(b * width + 1).min(num_timesteps.max(1)))
        })
        .collect()
}

/// A generator for image `image` (its position in the evaluated list) and purpose `which`:
/// the same draws whatever the batch size.
fn image_rng(seed: u64, image: usize, which: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed ^ EVAL_STREAM ^ (image as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ which << 56,
    )
}

/// The images at `indices` (centre crops, no augmentation) as one tensor.
fn images(data: &Dataset, indices: &[usize], device: &Device) -> Result<Tensor<4>, TrainError> {
    Ok(data
        .assemble(indices, Augment::default(), |_| None)?
        .to_tensor(device))
}

/// ε-MSE of `model` on the images of `data` at `indices`, per band of t: for image k and band
/// b, one t uniform in the band and one ε, both from generators seeded by (`seed`, k, b).
///
/// # Errors
/// A streamed image that cannot be read (see [`Dataset::assemble`]).
pub fn band_mse(
    model: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    data: &Dataset,
    indices: &[usize],
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<BandMse, TrainError> {
    let bands = bands(diffusion.num_timesteps());
    let mut sums = vec![0.0f64; BANDS];
    for (chunk_no, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let x_start = images(data, chunk, device)?;
        let [n, c, h, w] = x_start.dims();
        let first = chunk_no * batch.max(1);
        for (b, &(lo, hi)) in bands.iter().enumerate() {
            let mut t = Vec::with_capacity(n);
            let mut noise = Vec::with_capacity(n);
            for k in 0..n {
                let mut rng = image_rng(seed, first + k, b as u64);
                t.push(rng.random_range(lo..hi));
                noise.push(randn(&mut rng, [1, c, h, w], device));
            }
            let noise = Tensor::cat(noise, 0);
            let x_t = diffusion.q_sample(x_start.clone(), &t, noise.clone());
            let t_tensor = Tensor::<1>::from_data(
                TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n]),
                device,
            );
            let (mean_part, _) = diffusion.split_output(model.denoise(x_t.clone(), t_tensor));
            let (_, eps_hat) = diffusion.predict_start_and_noise(mean_part, x_t, &t);
            let sq: f64 = (eps_hat - noise)
                .square()
                .mean_dims(&[1, 2, 3])
                .sum()
                .into_scalar::<f64>();
            sums[b] += sq;
        }
    }
    let count = indices.len().max(1) as f64;
    Ok(BandMse {
        bands,
        mse: sums.into_iter().map(|s| s / count).collect(),
        images: indices.len(),
    })
}

/// Bits/dim of `model` on the images of `data` at `indices`, from the bound with `stride`
/// (see [`NllReport::stride`]); noise per batch from a generator seeded by (`seed`, batch).
///
/// # Errors
/// A streamed image that cannot be read.
#[allow(clippy::too_many_arguments)]
pub fn nll(
    model: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    data: &Dataset,
    indices: &[usize],
    batch: usize,
    stride: usize,
    seed: u64,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NllReport, TrainError> {
    let mut totals = Vec::with_capacity(indices.len());
    let (mut prior, mut decoder, mut diffusion_sum) = (0.0, 0.0, 0.0);
    for (chunk_no, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let x_start = images(data, chunk, device)?;
        let mut rng = image_rng(seed, chunk_no, 1 << 7);
        let bpd = diffusion.bits_per_dim(model, x_start, stride.max(1), &mut rng);
        totals.extend_from_slice(&bpd.total);
        prior += bpd.prior.iter().sum::<f64>();
        decoder += bpd.decoder.iter().sum::<f64>();
        diffusion_sum += bpd.diffusion.iter().sum::<f64>();
        progress(totals.len(), indices.len());
    }
    let n = totals.len().max(1) as f64;
    let mean = totals.iter().sum::<f64>() / n;
    let var = if totals.len() > 1 {
        totals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Ok(NllReport {
        bpd: mean,
        bpd_stderr: (var / n).sqrt(),
        prior: prior / n,
        decoder: decoder / n,
        diffusion: diffusion_sum / n,
        images: totals.len(),
        stride: stride.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_partition_the_timesteps() {
        assert_eq!(
            bands(1000),
            vec![(0, 250), (250, 500), (500, 750), (750, 1000)]
        );
        assert_eq!(bands(10), vec![(0, 2), (2, 4), (4, 6), (6, 10)]);
        for (lo, hi) in bands(3) {
            assert!(lo < hi && hi <= 3, "{lo}..{hi}");
        }
    }
}
