//! LayerNorm over the last axis (Ba et al. 2016) and its backward pass, over blocks of rows.
//!
//! Why: run on GroupNorm's kernel (every token an image of one group and one pixel), each row
//! was one parallel task and each of its values a "channel" with its own scalar loop, f64
//! conversions and partial sums; on the `latent-text` training step that backward alone was 7%
//! of all samples (bench/NOTES.md, 2026-12-04). Here a task takes a block of rows, each row's
//! loops run along the channels in vector lanes, and dγ, dβ are summed per block, then over
//! blocks in order (deterministic whatever the scheduling).
//!
//! Buffers are contiguous row-major f32: `x` is `[R, C]`, γ and β `[C]`. Row statistics are
//! accumulated in f64 lanes ([`lane_sum`]).

use rayon::prelude::*;

use super::buffer::zeroed;
use super::math::{dot, lane_sum};
use super::simd::multiversion;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// Sizes of one LayerNorm call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerNormGeometry {
    /// R: rows (tokens).
    pub rows: usize,
    /// C: the normalised axis.
    pub channels: usize,
}

/// Output of [`layer_norm_forward`]: the activations and the statistics the backward pass needs.
pub struct LayerNormForward {
    pub output: Vec<f32>,
    /// Mean of each row, `[R]`.
    pub mean: Vec<f32>,
    /// 1 / √(variance + ε) of each row, `[R]`.
    pub rstd: Vec<f32>,
}

multiversion! {
    /// One block of rows: writes y = γ (x − μ) rstd + β into `out` and each row's μ and rstd
    /// into `mean` and `rstd`.
    fn normalise_rows(
        xs: &[f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
    ) {
        let c = gamma.len();
        let n = c as f64;
        let rows = xs.chunks_exact(c).zip(out.chunks_exact_mut(c));
        for ((x, y), (mu, rs)) in rows.zip(mean.iter_mut().zip(rstd.iter_mut())) {
            *mu = (lane_sum(x, |v| v) / n) as f32;
            let var = lane_sum(x, |v| (v - *mu) * (v - *mu)) / n;
            *rs = (1.0 / (var + epsilon).sqrt()) as f32;
            for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                *o = g * ((v - *mu) * *rs) + b;
            }
        }
    }
}

/// y = γ (x − μ_r) / √(σ²_r + ε) + β over each row r.
pub fn layer_norm_forward(
    g: &LayerNormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> LayerNormForward {
    let c = g.channels;
    assert_eq!(x.len(), g.rows * c, "x: wrong buffer length");
    assert_eq!(gamma.len(), c, "gamma: wrong length");
    assert_eq!(beta.len(), c, "beta: wrong length");
    let mut output = zeroed(x.len());
    let (mut mean, mut rstd) = (vec![0.0f32; g.rows], vec![0.0f32; g.rows]);
    if c > 0 {
        output
            .par_chunks_mut(ROWS_PER_TASK * c)
            .zip(x.par_chunks(ROWS_PER_TASK * c))
            .zip(mean.par_chunks_mut(ROWS_PER_TASK))
            .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|(((out, xs), mean), rstd)| {
                normalise_rows(xs, gamma, beta, epsilon, out, mean, rstd);
            });
    }
    LayerNormForward { output, mean, rstd }
}

multiversion! {
    /// One block of rows of [`layer_norm_backward`]: writes dx into `dx`, and adds the block's
    /// Σ dL/dy·x̂ and Σ dL/dy into `dgamma` and `dbeta`. `dhat` holds C floats of scratch.
    fn backward_rows(
        xs: &[f32],
        grad: &[f32],
        gamma: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        dhat: &mut [f32],
    ) {
        let c = gamma.len();
        let n = c as f64;
        let rows = xs.chunks_exact(c).zip(grad.chunks_exact(c)).zip(dx.chunks_exact_mut(c));
        for (((x, dy), d), (&mean, &rstd)) in rows.zip(mean.iter().zip(rstd)) {
            // dŷ = γ·dL/dy; x̂ is recomputed from x, μ and rstd rather than stored.
            for ((h, &g), &dyv) in dhat.iter_mut().zip(gamma).zip(dy) {
                *h = g * dyv;
            }
            let s_dhat = lane_sum(dhat, |h| h);
            // Σ dŷ·x̂ = rstd·(Σ dŷ·x − μ·Σ dŷ), as GroupNorm's backward sums it.
            let s_dhat_xhat = f64::from(rstd) * (dot(dhat, x) - f64::from(mean) * s_dhat);
            let (m1, m2) = ((s_dhat / n) as f32, (s_dhat_xhat / n) as f32);
            for ((((o, &h), &v), &dyv), (dg, db)) in d
                .iter_mut()
                .zip(&*dhat)
                .zip(x)
                .zip(dy)
                .zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
            {
                let xhat = (v - mean) * rstd;
                *o = rstd * (h - m1 - xhat * m2);
                *dg += dyv * xhat;
                *db += dyv;
            }
        }
    }
}

/// Gradients of [`layer_norm_forward`]: `(dx, dγ, dβ)` from `grad` = dL/d(output).
///
/// With x̂ = (x − μ)·rstd and dŷ = γ·dL/dy: dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)) over each
/// row; dγ = Σ_r dL/dy·x̂, dβ = Σ_r dL/dy.
pub fn layer_norm_backward(
    g: &LayerNormGeometry,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = g.channels;
    assert_eq!(x.len(), g.rows * c, "x: wrong buffer length");
    assert_eq!(grad.len(), x.len(), "grad: wrong buffer length");
    assert_eq!(gamma.len(), c, "gamma: wrong length");
    assert_eq!(
        (mean.len(), rstd.len()),
        (g.rows, g.rows),
        "statistics: wrong length"
    );
    let mut dx = zeroed(x.len());
    if c == 0 {
        return (dx, Vec::new(), Vec::new());
    }
    // Per block: (Σ dL/dy·x̂, Σ dL/dy) over its rows, then summed over blocks in order.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS_PER_TASK * c)
        .zip(x.par_chunks(ROWS_PER_TASK * c))
        .zip(grad.par_chunks(ROWS_PER_TASK * c))
        .zip(mean.par_chunks(ROWS_PER_TASK))
        .zip(rstd.par_chunks(ROWS_PER_TASK))
        .map(|((((dx, xs), gs), mean), rstd)| {
            let (mut dgamma, mut dbeta, mut dhat) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
            backward_rows(
                xs,
                gs,
                gamma,
                mean,
                rstd,
                dx,
                &mut dgamma,
                &mut dbeta,
                &mut dhat,
            );
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for (pg, pb) in &partials {
        for ((total_g, total_b), (&vg, &vb)) in dgamma
            .iter_mut()
            .zip(dbeta.iter_mut())
            .zip(pg.iter().zip(pb))
        {
            *total_g += f64::from(vg);
            *total_b += f64::from(vb);
        }
    }
    let narrow = |v: Vec<f64>| v.into_iter().map(|e| e as f32).collect();
    (dx, narrow(dgamma), narrow(dbeta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backward pass against central differences of Σ w·y for a fixed random w.
    #[test]
    fn gradients_match_finite_differences() {
        let g = LayerNormGeometry {
            rows: ROWS_PER_TASK + 3,
            channels: 11,
        };
        let wave = |k: usize, f: f32| ((k as f32 * f).sin() * 2.0) + 0.5;
        let x: Vec<f32> = (0..g.rows * g.channels).map(|k| wave(k, 0.37)).collect();
        let w: Vec<f32> = (0..x.len()).map(|k| wave(k, 1.13)).collect();
        let gamma: Vec<f32> = (0..g.channels).map(|k| wave(k, 0.71)).collect();
        let beta: Vec<f32> = (0..g.channels).map(|k| wave(k, 0.29)).collect();
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let y = layer_norm_forward(&g, x, gamma, beta, 1e-5).output;
            y.iter().zip(&w).map(|(&a, &b)| f64::from(a * b)).sum()
        };
        let fwd = layer_norm_forward(&g, &x, &gamma, &beta, 1e-5);
        let (dx, dgamma, dbeta) = layer_norm_backward(&g, &x, &gamma, &fwd.mean, &fwd.rstd, &w);
        let h = 1e-2f32;
        let numeric = |values: &[f32], k: usize, at: &dyn Fn(&[f32]) -> f64| {
            let (mut plus, mut minus) = (values.to_vec(), values.to_vec());
            plus[k] += h;
            minus[k] -= h;
            (at(&plus) - at(&minus)) / (2.0 * f64::from(h))
        };
        let close = |a: f32, b: f64, what: &str| {
            assert!(
                (f64::from(a) - b).abs() < 2e-2 * (1.0 + b.abs()),
                "{what}: {a} vs {b}"
            );
        };
        for k in [0, 5, 11 * ROWS_PER_TASK + 4, x.len() - 1] {
            close(dx[k], numeric(&x, k, &|v| loss(v, &gamma, &beta)), "dx");
        }
        for k in 0..g.channels {
            close(
                dgamma[k],
                numeric(&gamma, k, &|v| loss(&x, v, &beta)),
                "dgamma",
            );
            close(
                dbeta[k],
                numeric(&beta, k, &|v| loss(&x, &gamma, v)),
                "dbeta",
            );
        }
    }
}
