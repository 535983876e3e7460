//! How well an autoencoder reconstructs images: PSNR and SSIM of the decoded posterior means,
//! KL per latent element and the latents' channel statistics — measured while it trains and
//! by `oxidiff eval`.

use burn::tensor::{Device, Tensor};
use oxidiff_data::Dataset;
use oxidiff_models::vae::AutoencoderKL;

use super::ReconstructionScores;
use super::ssim::ssim;
use crate::edit::psnr;
use crate::error::TrainError;

fn host(t: &Tensor<4>) -> Result<Vec<f32>, TrainError> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| TrainError::Eval {
            message: format!("cannot read the tensor back: {e:?}"),
        })
}

/// The scores of `vae` on images `indices` of `data` (`batch` at a time), and the
/// reconstructions (in [-1, 1]) when `keep` asks for them.
///
/// # Shapes
/// - each kept reconstruction: `[≤ batch, C, S, S]`, in the order of `indices`
pub fn reconstruction_scores(
    vae: &AutoencoderKL,
    data: &Dataset,
    indices: &[usize],
    batch: usize,
    keep: bool,
    device: &Device,
) -> Result<(ReconstructionScores, Vec<Tensor<4>>), TrainError> {
    let latent = vae.quant_conv.weight.val().dims()[0] / 2;
    let (mut psnr_sum, mut ssim_sum, mut kl_sum, mut elements) = (0.0, 0.0, 0.0, 0usize);
    let (mut sum, mut sum_sq, mut count) = (vec![0.0; latent], vec![0.0; latent], 0usize);
    let mut kept = Vec::new();
    for chunk in indices.chunks(batch.max(1)) {
        let x = data.batch(chunk, device)?;
        let posterior = vae.encode(x.clone());
        let mean = posterior.mode();
        let [b, c, h, w] = mean.dims();
        let reconstructed = vae.decode(mean.clone()).clamp(-1.0, 1.0);
        let (originals, rebuilt) = (host(&x)?, host(&reconstructed)?);
        let [_, channels, size, _] = x.dims();
        let per = channels * size * size;
        for k in 0..b {
            let one = |t: &Tensor<4>| t.clone().narrow(0, k, 1);
            psnr_sum += psnr(one(&x), one(&reconstructed), None);
            let span = k * per..(k + 1) * per;
            ssim_sum += ssim(&originals[span.clone()], &rebuilt[span], channels, size);
        }
        kl_sum += posterior.kl().sum().into_scalar::<f64>();
        elements += c * h * w * b;
        for (i, v) in host(&mean)?.iter().enumerate() {
            let channel = (i / (h * w)) % c;
            sum[channel] += f64::from(*v);
            sum_sq[channel] += f64::from(*v) * f64::from(*v);
        }
        count += b * h * w;
        if keep {
            kept.push(reconstructed);
        }
    }
    let n = indices.len().max(1) as f64;
    let count = count.max(1) as f64;
    let latent_mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let latent_std = sum_sq
        .iter()
        .zip(&latent_mean)
        .map(|(s, m)| (s / count - m * m).max(0.0).sqrt())
        .collect();
    let scores = ReconstructionScores {
        psnr: psnr_sum / n,
        ssim: ssim_sum / n,
        kl_per_element: kl_sum / elements.max(1) as f64,
        latent_mean,
        latent_std,
        images: indices.len(),
    };
    Ok((scores, kept))
}
