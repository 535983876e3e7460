//! Inpainting and denoising of the evaluated images, scored (see [`inpaint_score`] and
//! [`denoise_score`]).

use burn::tensor::Tensor;

use super::{EditOptions, EvalPhase, Features, Measuring};
use crate::TrainError;
use crate::eval::features::{features_of, sample_distance};
use crate::eval::tasks::{DenoiseScore, InpaintScore, denoise_score, inpaint_score};

/// The centre square of `real_images` inpainted with each of `editing.inpaint` and scored
/// (see [`inpaint_score`]), with FD-oxidiff of the filled images when `features` is given;
/// progress as [`EvalPhase::Inpainting`].
///
/// # Shapes
/// - `real_images`: `[N, C, S, S]`
///
/// # Errors
/// Bad steps or RePaint options; non-finite features.
pub(super) fn measure_inpainting(
    m: &Measuring,
    real_images: &Tensor<4>,
    features: Option<&Features>,
    editing: &EditOptions,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<Vec<InpaintScore>, TrainError> {
    let mut scores = Vec::with_capacity(editing.inpaint.len());
    for (k, &method) in editing.inpaint.iter().enumerate() {
        let (mut score, filled) = inpaint_score(
            m.loaded,
            real_images.clone(),
            method,
            editing.steps,
            m.c.seed,
        )?;
        if let Some(features) = features {
            let filled_features = features_of(&features.net, filled, m.c.batch);
            score.fd_oxidiff = Some(sample_distance(&features.real, &filled_features)?.fd_oxidiff);
        }
        scores.push(score);
        progress(EvalPhase::Inpainting, k + 1, editing.inpaint.len());
    }
    Ok(scores)
}

/// `real_images` with noise of each of `editing.denoise_sigmas` added, denoised and scored
/// (see [`denoise_score`]); progress as [`EvalPhase::Denoising`].
///
/// # Shapes
/// - `real_images`: `[N, C, S, S]`
///
/// # Errors
/// σ not positive or beyond the schedule, bad steps.
pub(super) fn measure_denoising(
    m: &Measuring,
    real_images: &Tensor<4>,
    editing: &EditOptions,
    progress: &mut dyn FnMut(EvalPhase, usize, usize),
) -> Result<Vec<DenoiseScore>, TrainError> {
    let sigmas = &editing.denoise_sigmas;
    let mut scores = Vec::with_capacity(sigmas.len());
    for (k, &sigma) in sigmas.iter().enumerate() {
        let score = denoise_score(
            m.loaded,
            real_images.clone(),
            sigma,
            editing.steps,
            m.c.seed,
        )?;
        scores.push(score);
        progress(EvalPhase::Denoising, k + 1, sigmas.len());
    }
    Ok(scores)
}
