//! Scaled dot-product attention, softmax(Q Kᵀ / √d) V (Vaswani et al. 2017, eq. 1), and its
//! backward pass, one (image, head) block at a time.
//!
//! Why: through burn's operations one 16×16 attention block of the `small` UNet took ≈60 ms
//! forward + backward at batch 16 for ≈15 ms worth of GEMM: the transposed views (Kᵀ, the token
//! layout) are packed element by element, and softmax and its gradient are five tensor passes
//! each. Here every product is a GEMM on contiguous `[N, d]` / `[N, N]` blocks and the softmax is
//! one pass per row; the probabilities are kept for the backward pass.
//!
//! Queries and keys may differ in number (cross-attention to text states: N image tokens, M
//! text tokens). Buffers are contiguous row-major f32: `q` and the output are `[BH, N, d]` (BH =
//! images × heads), `k` and `v` `[BH, M, d]`, the probabilities `[BH, N, M]`.

use rayon::prelude::*;

use super::math::{dot, exp_approx, lane_max, lane_sum};
use super::matmul::{Mat, matmul};
use super::vectorised;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionGeometry {
    /// Images × heads: the number of independent blocks.
    pub blocks: usize,
    /// N, the number of queries.
    pub tokens: usize,
    /// M, the number of keys (and values): N for self-attention.
    pub key_tokens: usize,
    /// d, the width of one head.
    pub head_dim: usize,
}

impl AttentionGeometry {
    fn q_block(&self) -> usize {
        self.tokens * self.head_dim
    }

    fn kv_block(&self) -> usize {
        self.key_tokens * self.head_dim
    }

    fn score_block(&self) -> usize {
        self.tokens * self.key_tokens
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Output of [`attention_forward`].
pub struct AttentionForward {
    /// softmax(Q Kᵀ / √d) V, `[BH, N, d]`.
    pub output: Vec<f32>,
    /// softmax(Q Kᵀ / √d), `[BH, N, M]`, kept for the backward pass.
    pub probs: Vec<f32>,
}

fn check(name: &str, buffer: &[f32], expected: usize) {
    assert_eq!(buffer.len(), expected, "{name}: wrong buffer length");
}

/// Forward pass over every (image, head) block.
pub fn attention_forward(
    g: &AttentionGeometry,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> AttentionForward {
    let (n, m, d) = (g.tokens, g.key_tokens, g.head_dim);
    check("q", q, g.blocks * g.q_block());
    check("k", k, g.blocks * g.kv_block());
    check("v", v, g.blocks * g.kv_block());
    let mut output = vec![0.0f32; g.blocks * g.q_block()];
    let mut probs = vec![0.0f32; g.blocks * g.score_block()];
    let scale = g.scale();
    output
        .par_chunks_mut(g.q_block())
        .zip(probs.par_chunks_mut(g.score_block()))
        .enumerate()
        .for_each(|(b, (out, p))| {
            let q_b = &q[b * g.q_block()..][..g.q_block()];
            let (k_b, v_b) = (
                &k[b * g.kv_block()..][..g.kv_block()],
                &v[b * g.kv_block()..][..g.kv_block()],
            );
            // SAFETY: q_b is [N, d], k_b [M, d]; p is [N, M].
            unsafe {
                matmul(
                    n,
                    m,
                    d,
                    p,
                    false,
                    Mat::rows(q_b, d),
                    Mat::transposed(k_b, d),
                )
            };
            // One pass each for the max, the exponentials and the sum, in vector lanes (a
            // running f32 sum beside the exponentials keeps the loop scalar).
            vectorised(|| {
                for row in p.chunks_mut(m) {
                    let max = lane_max(row);
                    for s in row.iter_mut() {
                        *s = exp_approx((*s - max) * scale);
                    }
                    let inv = (1.0 / lane_sum(row, |s| s)) as f32;
                    row.iter_mut().for_each(|s| *s *= inv);
                }
            });
            // SAFETY: p is [N, M], v_b [M, d], out [N, d].
            unsafe { matmul(n, d, m, out, false, Mat::rows(p, m), Mat::rows(v_b, d)) };
        });
    AttentionForward { output, probs }
}

/// Gradients `(dQ, dK, dV)` from `grad` = dL/d(output), with P the forward probabilities:
/// dV = Pᵀ dO; dP = dO Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √d; dQ = dS K; dK = dSᵀ Q.
pub fn attention_backward(
    g: &AttentionGeometry,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, m, d) = (g.tokens, g.key_tokens, g.head_dim);
    check("q", q, g.blocks * g.q_block());
    check("grad", grad, g.blocks * g.q_block());
    check("k", k, g.blocks * g.kv_block());
    check("v", v, g.blocks * g.kv_block());
    check("probs", probs, g.blocks * g.score_block());
    let mut dq = vec![0.0f32; g.blocks * g.q_block()];
    let mut dk = vec![0.0f32; g.blocks * g.kv_block()];
    let mut dv = vec![0.0f32; g.blocks * g.kv_block()];
    let scale = g.scale();
    dq.par_chunks_mut(g.q_block())
        .zip(dk.par_chunks_mut(g.kv_block()))
        .zip(dv.par_chunks_mut(g.kv_block()))
        .enumerate()
        .for_each(|(b, ((dq_b, dk_b), dv_b))| {
            let (q_len, kv_len) = (g.q_block(), g.kv_block());
            let (q_b, do_b) = (&q[b * q_len..][..q_len], &grad[b * q_len..][..q_len]);
            let (k_b, v_b) = (&k[b * kv_len..][..kv_len], &v[b * kv_len..][..kv_len]);
            let p = &probs[b * g.score_block()..][..g.score_block()];
            let mut ds = vec![0.0f32; g.score_block()];
            // SAFETY: every operand below is a contiguous [N, M], [N, d] or [M, d] block.
            unsafe {
                // dV [M, d] = Pᵀ [M, N] · dO [N, d]
                matmul(
                    m,
                    d,
                    n,
                    dv_b,
                    false,
                    Mat::transposed(p, m),
                    Mat::rows(do_b, d),
                );
                // dP [N, M] = dO [N, d] · Vᵀ [d, M]
                matmul(
                    n,
                    m,
                    d,
                    &mut ds,
                    false,
                    Mat::rows(do_b, d),
                    Mat::transposed(v_b, d),
                );
            }
            vectorised(|| {
                for (ds_row, p_row) in ds.chunks_mut(m).zip(p.chunks(m)) {
                    let dot = dot(ds_row, p_row) as f32;
                    for (s, &pv) in ds_row.iter_mut().zip(p_row) {
                        *s = pv * (*s - dot) * scale;
                    }
                }
            });
            // SAFETY: as above.
            unsafe {
                // dQ [N, d] = dS [N, M] · K [M, d]
                matmul(n, d, m, dq_b, false, Mat::rows(&ds, m), Mat::rows(k_b, d));
                // dK [M, d] = dSᵀ [M, N] · Q [N, d]
                matmul(
                    m,
                    d,
                    n,
                    dk_b,
                    false,
                    Mat::transposed(&ds, m),
                    Mat::rows(q_b, d),
                );
            }
        });
    (dq, dk, dv)
}
