//! Scaled dot-product attention, softmax(Q Kᵀ / √d) V (Vaswani et al. 2017, eq. 1), and its
//! backward pass, one (image, head) block at a time.
//!
//! Why: through burn's operations one 16×16 attention block of the `small` UNet took ≈60 ms
//! forward + backward at batch 16 for ≈15 ms worth of GEMM: the transposed views (Kᵀ, the token
//! layout) are packed element by element, and softmax and its gradient are five tensor passes
//! each. Here every product is a GEMM on `[N, d]` / `[N, M]` blocks and the softmax is one pass
//! per row; the probabilities are kept for the backward pass.
//!
//! Queries and keys may differ in number (cross-attention to text states: N image tokens, M
//! text tokens). `q` and the output (N tokens), `k` and `v` (M tokens) are row-major f32 in an
//! [`AttentionLayout`]: heads-major `[B, H, T, d]`, or tokens-major `[B, T, H·d]` as the
//! projections make them, so that no head has to be transposed out and back; the probabilities
//! are `[B·H, N, M]`.

use rayon::prelude::*;

use super::buffer::{par_chunks_zeroed, zeroed};
use super::math::{dot, exp_approx, lane_max, lane_sum};
use super::matmul::{Mat, matmul, matmul_strided};
use super::simd::multiversion;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionGeometry {
    /// B: images.
    pub images: usize,
    /// H: heads.
    pub heads: usize,
    /// N, the number of queries.
    pub tokens: usize,
    /// M, the number of keys (and values): N for self-attention.
    pub key_tokens: usize,
    /// d, the width of one head.
    pub head_dim: usize,
}

impl AttentionGeometry {
    fn blocks(&self) -> usize {
        self.images * self.heads
    }

    fn q_len(&self) -> usize {
        self.blocks() * self.tokens * self.head_dim
    }

    fn kv_len(&self) -> usize {
        self.blocks() * self.key_tokens * self.head_dim
    }

    fn score_block(&self) -> usize {
        self.tokens * self.key_tokens
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Where the (image, head) blocks of one tensor and their rows sit: element (b, h, t, j) at
/// b·`image` + h·`head` + t·`row` + j.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionLayout {
    pub image: usize,
    pub head: usize,
    pub row: usize,
}

impl AttentionLayout {
    /// `[B, H, T, d]` contiguous, for `tokens` T.
    pub fn heads_major(g: &AttentionGeometry, tokens: usize) -> Self {
        Self {
            image: g.heads * tokens * g.head_dim,
            head: tokens * g.head_dim,
            row: g.head_dim,
        }
    }

    /// `[B, T, H·d]` contiguous, for `tokens` T: each token's row holds every head in turn.
    pub fn tokens_major(g: &AttentionGeometry, tokens: usize) -> Self {
        Self {
            image: tokens * g.heads * g.head_dim,
            head: g.head_dim,
            row: g.heads * g.head_dim,
        }
    }

    fn offset(&self, g: &AttentionGeometry, block: usize) -> usize {
        (block / g.heads) * self.image + (block % g.heads) * self.head
    }
}

/// The layouts of one call: of `q` and the output, and of `k` and `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionLayouts {
    pub q: AttentionLayout,
    pub kv: AttentionLayout,
}

/// Output of [`attention_forward`].
pub struct AttentionForward {
    /// softmax(Q Kᵀ / √d + bias) V, in `q`'s layout.
    pub output: Vec<f32>,
    /// softmax(Q Kᵀ / √d + bias), `[B·H, N, M]`, kept for the backward pass.
    pub probs: Vec<f32>,
}

fn check(name: &str, buffer: &[f32], expected: usize) {
    assert_eq!(buffer.len(), expected, "{name}: wrong buffer length");
}

/// A buffer that parallel tasks write disjoint (image, head) blocks of.
#[derive(Clone, Copy)]
struct BlockWriter(*mut f32);

// SAFETY: the tasks write disjoint elements (each its own (image, head) block of a layout).
unsafe impl Send for BlockWriter {}
// SAFETY: as above.
unsafe impl Sync for BlockWriter {}

impl BlockWriter {
    /// The start of `block` in `layout`.
    ///
    /// # Safety
    /// The offset must lie inside the buffer.
    unsafe fn at(self, g: &AttentionGeometry, layout: &AttentionLayout, block: usize) -> *mut f32 {
        // SAFETY: by the caller's contract.
        unsafe { self.0.add(layout.offset(g, block)) }
    }
}

/// Scores this far below their row's maximum get probability exactly 0. Why: a masked score
/// (−1e9) would otherwise come out of [`exp_approx`]'s clamp as e^−87 ≈ 1.6e-38, which the
/// normalisation makes subnormal, and every GEMM that reads a subnormal probability runs many
/// times slower (a causal mask made CLIP's attention 15× slower than unmasked). e^−80 ≈ 1.8e-35
/// stays normal after dividing by any row sum up to 10³ and is negligible beside the maximum's 1.
const NEGLIGIBLE: f32 = -80.0;

multiversion! {
    /// softmax(scale · s) of each row of `p` (rows of `m` scores), in place: one pass each for
    /// the max, the exponentials and the sum, in vector lanes (a running f32 sum beside the
    /// exponentials would keep the loop scalar).
    fn softmax_rows(p: &mut [f32], m: usize, scale: f32) {
        for row in p.chunks_mut(m) {
            let max = lane_max(row);
            for s in row.iter_mut() {
                let x = (*s - max) * scale;
                *s = if x < NEGLIGIBLE { 0.0 } else { exp_approx(x) };
            }
            let inv = (1.0 / lane_sum(row, |s| s)) as f32;
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }
}

multiversion! {
    /// s ← scale · s + bias over `p` and `bias` of the same shape: the scaled scores with an
    /// additive mask, ready for [`softmax_rows`] with scale 1.
    fn add_scaled(p: &mut [f32], bias: &[f32], scale: f32) {
        for (s, &b) in p.iter_mut().zip(bias) {
            *s = *s * scale + b;
        }
    }
}

multiversion! {
    /// dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, in place of dP (`ds`), rows of `m`.
    fn softmax_grad_rows(ds: &mut [f32], p: &[f32], m: usize, scale: f32) {
        for (ds_row, p_row) in ds.chunks_mut(m).zip(p.chunks(m)) {
            let dot = dot(ds_row, p_row) as f32;
            for (s, &pv) in ds_row.iter_mut().zip(p_row) {
                *s = pv * (*s - dot) * scale;
            }
        }
    }
}

/// Forward pass over every (image, head) block: softmax(Q Kᵀ / √d + bias) V, where `bias`
/// (an additive mask: causal, padding) is `[B, N, M]`, one block per image shared by its heads.
/// The bias is a constant: the backward pass gives it no gradient.
pub fn attention_forward(
    g: &AttentionGeometry,
    layouts: &AttentionLayouts,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
) -> AttentionForward {
    let (n, m, d) = (g.tokens, g.key_tokens, g.head_dim);
    let AttentionLayouts { q: lq, kv: lkv } = *layouts;
    check("q", q, g.q_len());
    check("k", k, g.kv_len());
    check("v", v, g.kv_len());
    if let Some(bias) = bias {
        check("bias", bias, g.images * g.score_block());
    }
    let mut output = zeroed(g.q_len());
    let scale = g.scale();
    let out = BlockWriter(output.as_mut_ptr());
    let probs = par_chunks_zeroed(g.blocks() * g.score_block(), g.score_block(), |b, p| {
        let q_b = &q[lq.offset(g, b)..];
        let (k_b, v_b) = (&k[lkv.offset(g, b)..], &v[lkv.offset(g, b)..]);
        // SAFETY: q_b is [N, d] under row stride lq.row, k_b [M, d] under lkv.row (the
        // layouts fit the buffers, checked above); p is [N, M].
        unsafe {
            matmul(
                n,
                m,
                d,
                p,
                false,
                Mat::rows(q_b, lq.row),
                Mat::transposed(k_b, lkv.row),
            )
        };
        match bias {
            Some(bias) => {
                let image = b / g.heads;
                add_scaled(
                    p,
                    &bias[image * g.score_block()..][..g.score_block()],
                    scale,
                );
                softmax_rows(p, m, 1.0);
            }
            None => softmax_rows(p, m, scale),
        }
        // SAFETY: p is [N, M], v_b [M, d]; the output block b ([N, d] under row stride
        // lq.row) is this task's alone.
        unsafe {
            matmul_strided(
                n,
                d,
                m,
                out.at(g, &lq, b),
                lq.row,
                false,
                Mat::rows(p, m),
                Mat::rows(v_b, lkv.row),
            )
        };
    });
    AttentionForward { output, probs }
}

/// Gradients `(dQ, dK, dV)` from `grad` = dL/d(output), with P the forward probabilities (with
/// or without a bias, which only entered through P):
/// dV = Pᵀ dO; dP = dO Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √d; dQ = dS K; dK = dSᵀ Q. `grad` and
/// dQ are in `q`'s layout, dK and dV in `k`'s.
pub fn attention_backward(
    g: &AttentionGeometry,
    layouts: &AttentionLayouts,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, m, d) = (g.tokens, g.key_tokens, g.head_dim);
    let AttentionLayouts { q: lq, kv: lkv } = *layouts;
    check("q", q, g.q_len());
    check("grad", grad, g.q_len());
    check("k", k, g.kv_len());
    check("v", v, g.kv_len());
    check("probs", probs, g.blocks() * g.score_block());
    let mut dq = zeroed(g.q_len());
    let mut dk = zeroed(g.kv_len());
    let mut dv = zeroed(g.kv_len());
    let scale = g.scale();
    let (dq_w, dk_w, dv_w) = (
        BlockWriter(dq.as_mut_ptr()),
        BlockWriter(dk.as_mut_ptr()),
        BlockWriter(dv.as_mut_ptr()),
    );
    (0..g.blocks()).into_par_iter().for_each(|b| {
        let (q_b, do_b) = (&q[lq.offset(g, b)..], &grad[lq.offset(g, b)..]);
        let (k_b, v_b) = (&k[lkv.offset(g, b)..], &v[lkv.offset(g, b)..]);
        let p = &probs[b * g.score_block()..][..g.score_block()];
        let mut ds = vec![0.0f32; g.score_block()];
        // SAFETY: q_b, do_b are [N, d] under lq.row, k_b, v_b [M, d] under lkv.row; p and ds
        // [N, M]; the blocks b of dq, dk, dv are this task's alone.
        unsafe {
            // dV [M, d] = Pᵀ [M, N] · dO [N, d]
            matmul_strided(
                m,
                d,
                n,
                dv_w.at(g, &lkv, b),
                lkv.row,
                false,
                Mat::transposed(p, m),
                Mat::rows(do_b, lq.row),
            );
            // dP [N, M] = dO [N, d] · Vᵀ [d, M]
            matmul(
                n,
                m,
                d,
                &mut ds,
                false,
                Mat::rows(do_b, lq.row),
                Mat::transposed(v_b, lkv.row),
            );
        }
        softmax_grad_rows(&mut ds, p, m, scale);
        // SAFETY: as above.
        unsafe {
            // dQ [N, d] = dS [N, M] · K [M, d]
            matmul_strided(
                n,
                d,
                m,
                dq_w.at(g, &lq, b),
                lq.row,
                false,
                Mat::rows(&ds, m),
                Mat::rows(k_b, lkv.row),
            );
            // dK [M, d] = dSᵀ [M, N] · Q [N, d]
            matmul_strided(
                m,
                d,
                n,
                dk_w.at(g, &lkv, b),
                lkv.row,
                false,
                Mat::transposed(&ds, m),
                Mat::rows(q_b, lq.row),
            );
        }
    });
    (dq, dk, dv)
}
