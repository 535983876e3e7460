//! Inpainting with an unconditional [`crate::Denoiser`]: generate the missing region of an image
//! so that it agrees with the pixels that are known, without retraining (Lugmayr et al. 2022,
//! "RePaint"). Every reverse step produces the unknown region from the model and replaces the
//! known region by a fresh sample of q(x_s | x₀) at the step's new timestep s, so the model always
//! sees an x_s whose known part is exactly what the forward process would give.
//!
//! [`inpaint_ddim`] does that replacement over DDIM steps (fast, but the two regions are only
//! made consistent through the model's next prediction, which can leave visible seams);
//! [`repaint`] does it over ancestral steps and adds RePaint's resampling: it repeatedly goes
//! back up the chain by renoising and comes down again, giving the model more steps to
//! harmonise the generated region with the known one.
//!
//! # Mask convention
//!
//! `known` is the image x₀ in [−1, 1] of shape `[B, C, H, W]`; only its known region matters.
//! `mask` is `[B or 1, C or 1, H, W]` (broadcast over the batch and/or channels) with values in
//! [0, 1]: **1 marks a known pixel to keep, 0 the region to generate**, and values in between
//! blend, x ← m · x_known + (1 − m) · x_generated, as in the paper's m ⊙ x^known + (1 − m) ⊙
//! x^unknown. The result holds `known` exactly where m = 1.

use burn::tensor::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ddim::ddim_over_with;
use super::{check_eta, respaced_ddpm_step, timestep_tensor};
use crate::{Denoiser, DiffusionError, GaussianDiffusion, noise::randn};

/// The known image and its mask (expanded to the image's shape), checked once.
struct KnownRegion {
    /// x₀ of the known region, `[B, C, H, W]`.
    known: Tensor<4>,
    /// m, `[B, C, H, W]`.
    mask: Tensor<4>,
    /// 1 − m, `[B, C, H, W]`.
    unknown: Tensor<4>,
}

impl KnownRegion {
    /// Checks that `mask` broadcasts onto `known` and holds values in [0, 1].
    ///
    /// # Shapes
    ///
    /// - `known`: `[B, C, H, W]`
    /// - `mask`: `[B or 1, C or 1, H, W]`
    fn new(known: Tensor<4>, mask: Tensor<4>) -> Result<Self, DiffusionError> {
        let dims = known.dims();
        let [b, c, h, w] = dims;
        if dims.contains(&0) {
            return Err(DiffusionError::argument(
                "known",
                format!("must not be empty, got shape {dims:?}"),
            ));
        }
        let mask_dims = mask.dims();
        let [mb, mc, mh, mw] = mask_dims;
        if !((mb == b || mb == 1) && (mc == c || mc == 1) && mh == h && mw == w) {
            return Err(DiffusionError::argument(
                "mask",
                format!(
                    "must have shape [{b} or 1, {c} or 1, {h}, {w}] to broadcast onto known {dims:?}, got {mask_dims:?}"
                ),
            ));
        }
        let data = mask.clone().into_data();
        if let Some(bad) = data.iter::<f32>().find(|v| !(0.0..=1.0).contains(v)) {
            return Err(DiffusionError::argument(
                "mask",
                format!("values must be in [0, 1] (1 = known pixel, 0 = to generate), got {bad}"),
            ));
        }
        let mask = mask.expand(dims);
        let unknown = mask.clone().neg().add_scalar(1.0);
        Ok(Self {
            known,
            mask,
            unknown,
        })
    }

    /// m · `known_part` + (1 − m) · `x`.
    ///
    /// # Shapes
    ///
    /// - `known_part`, `x`: `[B, C, H, W]`
    /// - returns `[B, C, H, W]`
    fn blend(&self, known_part: Tensor<4>, x: Tensor<4>) -> Tensor<4> {
        // Lugmayr et al. 2022, eq. 10: x_{t−1} = m ⊙ x^known_{t−1} + (1 − m) ⊙ x^unknown_{t−1}
        self.mask.clone() * known_part + self.unknown.clone() * x
    }

    /// `x` at timestep `t` with its known region replaced by a fresh sample of q(x_t | x₀).
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, C, H, W]`
    /// - returns `[B, C, H, W]`
    fn replace_at(
        &self,
        diffusion: &GaussianDiffusion,
        x: Tensor<4>,
        t: usize,
        rng: &mut impl Rng,
    ) -> Tensor<4> {
        let dims = x.dims();
        let noise = randn(rng, dims, &x.device());
        // Lugmayr et al. 2022, eq. 8: x^known_t ~ N(√ᾱ_t x₀, (1 − ᾱ_t) I)
        let known_t = diffusion.q_sample(self.known.clone(), &vec![t; dims[0]], noise);
        self.blend(known_t, x)
    }

    /// `x` with the known pixels pasted in exactly (the clean end of the chain).
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, C, H, W]`
    /// - returns `[B, C, H, W]`
    fn paste(&self, x: Tensor<4>) -> Tensor<4> {
        self.blend(self.known.clone(), x)
    }
}

/// Checks `num_steps` against the schedule, naming the argument as the inpainting functions do.
fn check_num_steps(diffusion: &GaussianDiffusion, num_steps: usize) -> Result<(), DiffusionError> {
    let total = diffusion.num_timesteps();
    if num_steps == 0 || num_steps > total {
        return Err(DiffusionError::argument(
            "num_steps",
            format!("must be in 1..={total} (the number of training timesteps), got {num_steps}"),
        ));
    }
    Ok(())
}

/// Inpainting by known-region replacement over DDIM steps (Lugmayr et al. 2022, §4.1, with
/// Song et al. 2021's update in place of the ancestral one): starting from noise, after each
/// step to timestep s the known region is replaced by q_sample(known, s, fresh noise), and after
/// the last step (s = clean) the known pixels are pasted in exactly. The start x at the first
/// timestep τ₁ gets the same replacement, so even a schedule that does not begin at T − 1 shows
/// the model a consistent known region.
///
/// Timesteps are those of [`super::sample_ddim`] (`config.timestep_spacing`). All noise — the
/// start, each replacement and, with `eta > 0`, each step's — comes from `rng` through
/// [`randn`]. `progress(i, num_steps)` is called after step i = 1..=num_steps. See the module
/// docs for the mask convention.
///
/// # Shapes
///
/// - `known`: `[B, C, H, W]`, x₀ in [−1, 1]
/// - `mask`: `[B or 1, C or 1, H, W]`, 1 = keep, 0 = generate
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `known` (empty), `mask` (shape or values),
/// `num_steps` (not in 1..=T) or `eta` (not in [0, 1]).
#[allow(clippy::too_many_arguments)]
pub fn inpaint_ddim(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    known: Tensor<4>,
    mask: Tensor<4>,
    num_steps: usize,
    eta: f64,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let region = KnownRegion::new(known, mask)?;
    check_num_steps(diffusion, num_steps)?;
    check_eta(eta)?;
    let timesteps = diffusion.inference_timesteps(num_steps)?;
    let x = randn(rng, region.known.dims(), &region.known.device());
    let x = region.replace_at(diffusion, x, timesteps[0], rng);
    Ok(ddim_over_with(
        denoiser,
        diffusion,
        x,
        &timesteps,
        eta,
        rng,
        |x, prev_t, rng| match prev_t {
            Some(s) => region.replace_at(diffusion, x, s, rng),
            None => region.paste(x),
        },
        progress,
    ))
}

/// RePaint's resampling options (Lugmayr et al. 2022, §4.2): the jump length j and the number
/// of resamplings r. `Default` is the paper's j = 10, r = 10 (with 250 respaced steps, about
/// 10× the model calls of plain ancestral sampling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RePaintOptions {
    /// j: how many respaced steps each resampling goes back up the chain. 1 renoises a single
    /// step (§4.2's plain resampling); larger jumps let the model revise more of the image.
    pub jump_length: usize,
    /// r: how many times each jump point is passed on the way down (r − 1 jumps back from it).
    /// 1 disables resampling (replacement only).
    pub resample_count: usize,
}

impl Default for RePaintOptions {
    fn default() -> Self {
        Self {
            jump_length: 10,
            resample_count: 10,
        }
    }
}

impl RePaintOptions {
    /// Checks both values.
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidArgument`] naming `jump_length` or `resample_count` when it is 0.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        if self.jump_length == 0 {
            return Err(DiffusionError::argument(
                "jump_length",
                "must be at least 1 (the number of steps each resampling goes back), got 0",
            ));
        }
        if self.resample_count == 0 {
            return Err(DiffusionError::argument(
                "resample_count",
                "must be at least 1 (1 = no resampling), got 0",
            ));
        }
        Ok(())
    }
}

/// RePaint's visit order over a chain of `num_steps` respaced steps, as moves between levels:
/// level 0 is the clean image, level k ≥ 1 the k-th respaced timestep counted from the clean end
/// (level `num_steps` is the start, pure noise at the highest timestep). A move (k, k − 1) is one
/// reverse (denoising) step; a move (k, k + j) renoises j levels back up with q(x_{k+j} | x_k).
///
/// The order is the reference implementation's `get_schedule_jump` (Lugmayr et al. 2022,
/// appendix, without its nested second and third jump schedules): going down one level at a
/// time, on arriving at a jump point — levels 1, j + 1, 2j + 1, … whose jump target k + j is at
/// most `num_steps` — it jumps back j levels, r − 1 times per jump point, then carries on
/// downwards. It ends with the move (1, 0). With `jump_length >= num_steps` or
/// `resample_count = 1` it is the plain descent n → n − 1 → … → 0.
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `num_steps`, `jump_length` or `resample_count`
/// when it is 0.
pub fn repaint_schedule(
    num_steps: usize,
    jump_length: usize,
    resample_count: usize,
) -> Result<Vec<(usize, usize)>, DiffusionError> {
    if num_steps == 0 {
        return Err(DiffusionError::argument(
            "num_steps",
            "must be at least 1, got 0",
        ));
    }
    RePaintOptions {
        jump_length,
        resample_count,
    }
    .validate()?;
    let (n, j) = (num_steps, jump_length);
    // RePaint `get_schedule_jump`: jumps[t] = r − 1 for t in range(0, n − j, j), t = level − 1
    let mut jumps_left: Vec<usize> = (0..=n)
        .map(|level| {
            let is_jump_point = level >= 1 && (level - 1) % j == 0 && level - 1 + j < n;
            if is_jump_point { resample_count - 1 } else { 0 }
        })
        .collect();
    let mut moves = Vec::new();
    let mut level = n;
    while level > 0 {
        moves.push((level, level - 1));
        level -= 1;
        if jumps_left[level] > 0 {
            jumps_left[level] -= 1;
            moves.push((level, level + j));
            level += j;
        }
    }
    Ok(moves)
}

/// RePaint (Lugmayr et al. 2022, Algorithm 1 with the jump schedule of their appendix):
/// ancestral sampling on `num_steps` respaced timesteps (`config.timestep_spacing`; the paper
/// uses 250 of 1000) in which the known region is replaced by a fresh q(x_s | x₀) sample after
/// every reverse step to timestep s (and pasted exactly at the clean end), and which follows
/// [`repaint_schedule`]: at each jump point it renoises the whole image `jump_length` steps back
/// up, x_b = √(ᾱ_b/ᾱ_a) x_a + √(1 − ᾱ_b/ᾱ_a) ε (the composition of the one-step
/// x_{k+1} = √(1 − β'_{k+1}) x_k + √β'_{k+1} ε over the jump), and denoises down again,
/// `resample_count` times in all.
///
/// Each reverse step is the posterior step of the respaced chain with the model's variance
/// (fixed per `config.ddpm_variance`, or learned). Respacing forms each step's β from the ᾱ of
/// the two visited timesteps, β' = 1 − ᾱ_τ/ᾱ_τ' (Nichol & Dhariwal 2021, §4; ᾱ = 1 at the clean
/// end), and uses it in place of β_t in the posterior mean and variance. All noise comes from
/// `rng` through [`randn`]. `progress(i, total)` is called after each model evaluation, with
/// `total` the number of reverse moves of the schedule (`num_steps` plus `jump_length` per jump).
/// See the module docs for the mask convention.
///
/// # Shapes
///
/// - `known`: `[B, C, H, W]`, x₀ in [−1, 1]
/// - `mask`: `[B or 1, C or 1, H, W]`, 1 = keep, 0 = generate
/// - returns `[B, C, H, W]`
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `known` (empty), `mask` (shape or values),
/// `num_steps` (not in 1..=T), `jump_length` or `resample_count` (0).
#[allow(clippy::too_many_arguments)]
pub fn repaint(
    denoiser: &impl Denoiser,
    diffusion: &GaussianDiffusion,
    known: Tensor<4>,
    mask: Tensor<4>,
    num_steps: usize,
    options: RePaintOptions,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, DiffusionError> {
    let region = KnownRegion::new(known, mask)?;
    check_num_steps(diffusion, num_steps)?;
    let moves = repaint_schedule(num_steps, options.jump_length, options.resample_count)?;
    let mut ascending = diffusion.inference_timesteps(num_steps)?;
    ascending.reverse();
    // level k ≥ 1 is training timestep ascending[k − 1]; level 0 is the clean image
    let timestep_of = |level: usize| level.checked_sub(1).map(|i| ascending[i]);
    let alpha_cumprod_of =
        |level: usize| timestep_of(level).map_or(1.0, |t| diffusion.schedule.alphas_cumprod[t]);
    let total = moves.iter().filter(|(from, to)| to < from).count();

    let dims = region.known.dims();
    let device = region.known.device();
    let x = randn(rng, dims, &device);
    let mut x = region.replace_at(diffusion, x, ascending[num_steps - 1], rng);
    let mut done = 0;
    for &(from, to) in &moves {
        if to < from {
            let t = ascending[from - 1];
            let prev_t = timestep_of(to);
            let model_output = denoiser.denoise(x.clone(), timestep_tensor(t, dims[0], &device));
            let noise = prev_t.map(|_| randn(rng, dims, &device));
            x = respaced_ddpm_step(diffusion, model_output, t, prev_t, x, noise);
            x = match prev_t {
                Some(s) => region.replace_at(diffusion, x, s, rng),
                None => region.paste(x),
            };
            done += 1;
            progress(done, total);
        } else {
            // ᾱ_b/ᾱ_a = ∏ over the jump of (1 − β'), a > 0 below the top level so ᾱ_a > 0
            let ratio = alpha_cumprod_of(to) / alpha_cumprod_of(from);
            let noise = randn(rng, dims, &device);
            // Lugmayr et al. 2022, §4.2 (Ho et al. 2020, eq. 2 composed): x_b = √(ᾱ_b/ᾱ_a) x_a + √(1 − ᾱ_b/ᾱ_a) ε
            x = x.mul_scalar(ratio.sqrt() as f32) + noise.mul_scalar((1.0 - ratio).sqrt() as f32);
        }
    }
    Ok(x)
}
