//! GroupNorm (Wu & He 2018), optionally followed by SiLU, in one pass over each group, and its
//! backward pass.
//!
//! Why: burn composes GroupNorm from about ten tensor operations (mean, subtract, square, mean,
//! add ε, square root, divide, scale, shift) and SiLU from two more, each a full pass over the
//! activation with its own allocation and autodiff node. Here one group is read twice (statistics,
//! then normalise + affine + activation), and the backward pass keeps only the input, the group
//! means and the reciprocal standard deviations.
//!
//! Buffers are contiguous row-major f32, `x` is `[B, C, H·W]`; channels `[g·C/G, (g+1)·C/G)` form
//! group g. Statistics are accumulated in f64.

use rayon::prelude::*;

use super::buffer::zeroed;
use super::math::{dot, exp_approx, lane_sum};
use super::simd::multiversion;

/// Sizes of one GroupNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormGeometry {
    pub batch: usize,
    pub channels: usize,
    pub groups: usize,
    /// H·W.
    pub plane: usize,
}

impl GroupNormGeometry {
    pub fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// Elements of one (image, group) slice.
    fn group_len(&self) -> usize {
        self.channels_per_group() * self.plane
    }
}

/// The logistic sigmoid 1 / (1 + e^{-v}).
#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-v))
}

/// Output of [`group_norm_forward`]: the activations and the statistics the backward pass needs.
pub struct GroupNormForward {
    pub output: Vec<f32>,
    /// Mean of each (image, group), `[B·G]`.
    pub mean: Vec<f32>,
    /// 1 / √(variance + ε) of each (image, group), `[B·G]`.
    pub rstd: Vec<f32>,
}

multiversion! {
    /// One (image, group) slice of [`group_norm_forward`]: `xs` and `out` hold its channels
    /// (`plane` values each), `gamma` and `beta` theirs. Returns (mean, rstd).
    fn normalise_group(
        xs: &[f32],
        gamma: &[f32],
        beta: &[f32],
        plane: usize,
        epsilon: f64,
        silu: bool,
        out: &mut [f32],
    ) -> (f32, f32) {
        let n = xs.len() as f64;
        let mean = lane_sum(xs, |v| v) / n;
        let mean_f32 = mean as f32;
        let var = lane_sum(xs, |v| (v - mean_f32) * (v - mean_f32)) / n;
        let rstd = 1.0 / (var + epsilon).sqrt();
        let (mean, rstd) = (mean as f32, rstd as f32);
        for (i, (out_c, x_c)) in out.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
            // y = a·x + b with a = γ·rstd, b = β − μ·a: one multiply-add per element.
            let a = gamma[i] * rstd;
            let b = beta[i] - mean * a;
            if silu {
                for (o, &v) in out_c.iter_mut().zip(x_c) {
                    let y = a * v + b;
                    *o = y * sigmoid(y);
                }
            } else {
                for (o, &v) in out_c.iter_mut().zip(x_c) {
                    *o = a * v + b;
                }
            }
        }
        (mean, rstd)
    }
}

/// y = γ_c (x − μ_g) / √(σ²_g + ε) + β_c, then z = y·sigmoid(y) when `silu`.
pub fn group_norm_forward(
    g: &GroupNormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    silu: bool,
) -> GroupNormForward {
    assert_eq!(
        x.len(),
        g.batch * g.channels * g.plane,
        "x: wrong buffer length"
    );
    assert_eq!(gamma.len(), g.channels, "gamma: wrong length");
    assert_eq!(beta.len(), g.channels, "beta: wrong length");
    let (cpg, plane) = (g.channels_per_group(), g.plane);
    let mut output = zeroed(x.len());
    let stats: Vec<(f32, f32)> = output
        .par_chunks_mut(g.group_len())
        .zip(x.par_chunks(g.group_len()))
        .enumerate()
        .map(|(bg, (out, xs))| {
            let channels = (bg % g.groups) * cpg..(bg % g.groups + 1) * cpg;
            let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
            normalise_group(xs, gamma, beta, plane, epsilon, silu, out)
        })
        .collect();
    let (mean, rstd) = stats.into_iter().unzip();
    GroupNormForward { output, mean, rstd }
}

multiversion! {
    /// One (image, group) slice of [`group_norm_backward`], laid out as in [`normalise_group`]
    /// with `gs` its incoming gradient: writes dx into `dx_g` and returns each channel's
    /// (Σ dL/dy·x̂, Σ dL/dy).
    fn group_backward(
        xs: &[f32],
        gs: &[f32],
        gamma: &[f32],
        beta: &[f32],
        mu: f32,
        rs: f32,
        plane: usize,
        silu: bool,
        dx_g: &mut [f32],
    ) -> Vec<(f64, f64)> {
        let mut sums = Vec::with_capacity(gamma.len());
        // dL/dy is written into dx_g first, then turned into dx in place.
        let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f64, 0.0f64);
        for (i, ((dy_c, x_c), g_c)) in dx_g
            .chunks_mut(plane)
            .zip(xs.chunks(plane))
            .zip(gs.chunks(plane))
            .enumerate()
        {
            let (gam, bet) = (gamma[i], beta[i]);
            if silu {
                for ((dy, &v), &gr) in dy_c.iter_mut().zip(x_c).zip(g_c) {
                    let y = gam * ((v - mu) * rs) + bet;
                    let s = sigmoid(y);
                    *dy = gr * (s + y * s * (1.0 - s));
                }
            } else {
                dy_c.copy_from_slice(g_c);
            }
            let dy_c = &*dy_c;
            let s_dy = lane_sum(dy_c, |d| d);
            // Σ dy·x̂ = rstd·(Σ dy·x − μ·Σ dy)
            let s_dy_x = dot(dy_c, x_c);
            let s_dy_xhat = f64::from(rs) * (s_dy_x - f64::from(mu) * s_dy);
            sum_dxhat += f64::from(gam) * s_dy;
            sum_dxhat_xhat += f64::from(gam) * s_dy_xhat;
            sums.push((s_dy_xhat, s_dy));
        }
        let n = xs.len() as f64;
        let (m1, m2) = ((sum_dxhat / n) as f32, (sum_dxhat_xhat / n) as f32);
        for (i, (dx_c, x_c)) in dx_g.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
            let gam = gamma[i];
            for (d, &v) in dx_c.iter_mut().zip(x_c) {
                let xhat = (v - mu) * rs;
                *d = rs * (gam * *d - m1 - xhat * m2);
            }
        }
        sums
    }
}

/// Gradients of [`group_norm_forward`]: `(dx, dγ, dβ)` from `grad` = dL/d(output).
///
/// With x̂ = (x − μ)·rstd, y = γ x̂ + β and dŷ = γ·dL/dy (dL/dy = grad·(s + y·s·(1 − s)),
/// s = sigmoid(y), under SiLU):
/// dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)) over each group; dγ_c = Σ dL/dy·x̂, dβ_c = Σ dL/dy.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    g: &GroupNormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad: &[f32],
    silu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        g.batch * g.channels * g.plane,
        "x: wrong buffer length"
    );
    assert_eq!(grad.len(), x.len(), "grad: wrong buffer length");
    let (cpg, plane) = (g.channels_per_group(), g.plane);
    let mut dx = zeroed(x.len());
    // Per (image, channel): Σ dL/dy·x̂ and Σ dL/dy, reduced over images afterwards.
    let per_channel: Vec<Vec<(f64, f64)>> = dx
        .par_chunks_mut(g.group_len())
        .zip(
            x.par_chunks(g.group_len())
                .zip(grad.par_chunks(g.group_len())),
        )
        .enumerate()
        .map(|(bg, (dx_g, (xs, gs)))| {
            let channels = (bg % g.groups) * cpg..(bg % g.groups + 1) * cpg;
            let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
            group_backward(xs, gs, gamma, beta, mean[bg], rstd[bg], plane, silu, dx_g)
        })
        .collect();
    let mut dgamma = vec![0.0f64; g.channels];
    let mut dbeta = vec![0.0f64; g.channels];
    for (bg, sums) in per_channel.iter().enumerate() {
        let first_channel = (bg % g.groups) * cpg;
        for (i, &(s_dy_xhat, s_dy)) in sums.iter().enumerate() {
            dgamma[first_channel + i] += s_dy_xhat;
            dbeta[first_channel + i] += s_dy;
        }
    }
    let narrow = |v: Vec<f64>| v.into_iter().map(|e| e as f32).collect();
    (dx, narrow(dgamma), narrow(dbeta))
}
