//! 2-D convolution on the CPU as one well-shaped GEMM per image (im2col), and its two gradients.
//!
//! Why not burn's built-in path: `flex` computes the input gradient as a transposed convolution
//! and the weight gradient as a convolution whose kernel is the whole output plane, which runs
//! the GEMM microkernel on thin, badly shaped operands. Here every product is
//! `[C_out, C_in·k²] × [C_in·k², H·W]` (or its transpose) for one image, with images spread over
//! the threads, which keeps each GEMM large and single-threaded.
//!
//! All buffers are contiguous row-major f32: `x` is `[B, C_in, H, W]`, `weight` is
//! `[C_out, C_in, k, k]` (so one row of it is one im2col row order `(c, kh, kw)`), the output
//! `[B, C_out, H_out, W_out]`. Square kernels, equal stride and padding on both axes, dilation 1,
//! one group: what the UNet uses. [`ConvGeometry::new`] rejects anything else.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::buffer::{sum_in_order, zeroed};
use super::math::lane_sum;
use super::matmul::{Mat, matmul};
use super::vectorised;
use super::winograd_kernels;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl ConvGeometry {
    /// `None` when the shapes do not describe a supported convolution.
    pub fn new(
        x_shape: [usize; 4],
        weight_shape: [usize; 4],
        stride: usize,
        padding: usize,
    ) -> Option<Self> {
        let [batch, c_in, height, width] = x_shape;
        let [c_out, w_in, k_h, k_w] = weight_shape;
        if w_in != c_in || k_h != k_w || stride == 0 || k_h == 0 {
            return None;
        }
        let kernel = k_h;
        let h_out = (height + 2 * padding).checked_sub(kernel)? / stride + 1;
        let w_out = (width + 2 * padding).checked_sub(kernel)? / stride + 1;
        Some(Self {
            batch,
            c_in,
            c_out,
            height,
            width,
            kernel,
            stride,
            padding,
            h_out,
            w_out,
        })
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn col_rows(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    pub fn out_plane(&self) -> usize {
        self.h_out * self.w_out
    }

    pub fn in_image(&self) -> usize {
        self.c_in * self.height * self.width
    }

    pub fn out_image(&self) -> usize {
        self.c_out * self.out_plane()
    }

    /// A 1×1 convolution without stride or padding is a plain matrix product: no im2col.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// The input column that output column `o` reads at kernel offset `k`, if inside the image.
    #[inline]
    fn source(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }

    /// Range of output columns whose input column at kernel offset `kw` is inside the image.
    fn valid_ow(&self, kw: usize) -> std::ops::Range<usize> {
        let (s, p) = (self.stride, self.padding);
        // ow·s + kw − p ≥ 0  ⇔  ow ≥ ⌈(p − kw)/s⌉;  ow·s + kw − p < W  ⇔  ow < ⌈(W + p − kw)/s⌉
        let start = p.saturating_sub(kw).div_ceil(s);
        let end = (self.width + p)
            .saturating_sub(kw)
            .div_ceil(s)
            .min(self.w_out);
        start.min(end)..end
    }
}

/// Fills `col` (`[C_in·k², H_out·W_out]`) from one image (`[C_in, H, W]`); padding reads as 0.
fn im2col(g: &ConvGeometry, image: &[f32], col: &mut [f32]) {
    let (k, plane) = (g.kernel, g.out_plane());
    for c in 0..g.c_in {
        let channel = &image[c * g.height * g.width..][..g.height * g.width];
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut col[((c * k + kh) * k + kw) * plane..][..plane];
                let valid = g.valid_ow(kw);
                for oh in 0..g.h_out {
                    let out_row = &mut row[oh * g.w_out..][..g.w_out];
                    let Some(ih) = g.source(oh, kh, g.height) else {
                        out_row.fill(0.0);
                        continue;
                    };
                    let in_row = &channel[ih * g.width..][..g.width];
                    out_row[..valid.start].fill(0.0);
                    out_row[valid.end..].fill(0.0);
                    if valid.is_empty() {
                        continue;
                    }
                    let first = valid.start * g.stride + kw - g.padding;
                    if g.stride == 1 {
                        out_row[valid.clone()].copy_from_slice(&in_row[first..first + valid.len()]);
                    } else {
                        for (j, ow) in valid.clone().enumerate() {
                            out_row[ow] = in_row[first + j * g.stride];
                        }
                    }
                }
            }
        }
    }
}

/// Adds `col` (`[C_in·k², H_out·W_out]`) back into one image gradient (`[C_in, H, W]`): the
/// adjoint of [`im2col`].
fn col2im_add(g: &ConvGeometry, col: &[f32], image: &mut [f32]) {
    let (k, plane) = (g.kernel, g.out_plane());
    for c in 0..g.c_in {
        let channel = &mut image[c * g.height * g.width..][..g.height * g.width];
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[((c * k + kh) * k + kw) * plane..][..plane];
                let valid = g.valid_ow(kw);
                if valid.is_empty() {
                    continue;
                }
                for oh in 0..g.h_out {
                    let Some(ih) = g.source(oh, kh, g.height) else {
                        continue;
                    };
                    let out_row = &row[oh * g.w_out..][..g.w_out];
                    let in_row = &mut channel[ih * g.width..][..g.width];
                    let first = valid.start * g.stride + kw - g.padding;
                    for (j, ow) in valid.clone().enumerate() {
                        in_row[first + j * g.stride] += out_row[ow];
                    }
                }
            }
        }
    }
}

/// Images per thread: the batch is cut into one contiguous share per thread, so that each
/// thread allocates its scratch buffers once and the result does not depend on scheduling.
fn images_per_share(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// Calls `f(scratch, out_b, in_b)` for every image: `out` and `input` are cut into images of
/// `out_image` and `in_image` elements, the batch into one contiguous share per thread, and each
/// thread gets one zeroed scratch buffer of `scratch_len` for all its images.
fn for_each_image<F>(
    out: &mut [f32],
    out_image: usize,
    input: &[f32],
    in_image: usize,
    scratch_len: usize,
    f: F,
) where
    F: Fn(&mut [f32], &mut [f32], &[f32]) + Sync,
{
    let per = images_per_share(out.len() / out_image.max(1));
    out.par_chunks_mut(per * out_image)
        .zip(input.par_chunks(per * in_image))
        .for_each(|(out_s, in_s)| {
            let mut scratch = vec![0.0f32; scratch_len];
            for (out_b, in_b) in out_s.chunks_mut(out_image).zip(in_s.chunks(in_image)) {
                f(&mut scratch, out_b, in_b);
            }
        });
}

fn check_len(name: &str, buffer: &[f32], expected: usize) {
    assert_eq!(buffer.len(), expected, "{name}: wrong buffer length");
}

/// Forward convolution: returns `[B, C_out, H_out, W_out]`.
///
/// 3×3 convolutions with stride 1 and padding 1 take the Winograd path (2.25× fewer
/// multiplications), unless `OXIDIFF_WINOGRAD=0`; every other one the im2col GEMM.
pub fn conv2d_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    if winograd_enabled() && winograd_kernels::applies(g) {
        return winograd_kernels::forward(winograd_kernels::tile_for(g), g, x, weight, bias);
    }
    im2col_forward(g, x, weight, bias)
}

/// Whether 3×3 convolutions use Winograd's algorithm (the default) or `OXIDIFF_WINOGRAD=0`
/// sends them through im2col, to measure the difference.
fn winograd_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("OXIDIFF_WINOGRAD").map_or(true, |v| v != "0"))
}

/// [`conv2d_forward`] through im2col and one GEMM per image, for any supported geometry.
pub(crate) fn im2col_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    check_len("x", x, g.batch * g.in_image());
    check_len("weight", weight, g.c_out * g.col_rows());
    if let Some(bias) = bias {
        check_len("bias", bias, g.c_out);
    }
    let (plane, rows) = (g.out_plane(), g.col_rows());
    let mut out = zeroed(g.batch * g.out_image());
    let col_len = if g.is_pointwise() { 0 } else { rows * plane };
    for_each_image(
        &mut out,
        g.out_image(),
        x,
        g.in_image(),
        col_len,
        |col, out_b, x_b| {
            if let Some(bias) = bias {
                for (row, &b) in out_b.chunks_mut(plane).zip(bias) {
                    row.fill(b);
                }
            }
            let rhs = if g.is_pointwise() {
                x_b
            } else {
                im2col(g, x_b, col);
                &col[..]
            };
            // SAFETY: weight is [C_out, rows] and rhs [rows, plane], checked above.
            unsafe {
                matmul(
                    g.c_out,
                    plane,
                    rows,
                    out_b,
                    bias.is_some(),
                    Mat::rows(weight, rows),
                    Mat::rows(rhs, plane),
                );
            }
        },
    );
    out
}

/// Gradient with respect to the input: `[B, C_in, H, W]`, from `grad` = dL/d(output). Takes the
/// Winograd path where [`conv2d_forward`] does.
pub fn conv2d_x_backward(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    if winograd_enabled() && winograd_kernels::applies(g) {
        return winograd_kernels::x_backward(winograd_kernels::tile_for(g), g, weight, grad);
    }
    im2col_x_backward(g, weight, grad)
}

/// [`conv2d_x_backward`] through one GEMM per image and col2im, for any supported geometry.
pub(crate) fn im2col_x_backward(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    check_len("weight", weight, g.c_out * g.col_rows());
    check_len("grad", grad, g.batch * g.out_image());
    let (plane, rows) = (g.out_plane(), g.col_rows());
    let mut dx = zeroed(g.batch * g.in_image());
    let col_len = if g.is_pointwise() { 0 } else { rows * plane };
    for_each_image(
        &mut dx,
        g.in_image(),
        grad,
        g.out_image(),
        col_len,
        |dcol, dx_b, grad_b| {
            let wt = Mat::transposed(weight, rows);
            let grad_m = Mat::rows(grad_b, plane);
            // SAFETY: Wᵀ is [rows, C_out], grad_b [C_out, plane].
            unsafe {
                if g.is_pointwise() {
                    matmul(rows, plane, g.c_out, dx_b, false, wt, grad_m);
                } else {
                    matmul(rows, plane, g.c_out, dcol, false, wt, grad_m);
                }
            }
            if !g.is_pointwise() {
                col2im_add(g, dcol, dx_b);
            }
        },
    );
    dx
}

/// `dst[j·rows + i] = src[i·cols + j]`: the transpose of a row-major `[rows, cols]` matrix.
///
/// In 16×16 blocks copied through a fixed-size local array: both sides stay in cache, and the
/// fixed sizes let the compiler drop bounds checks and unroll (this runs on every image of
/// every Winograd convolution, so a plain two-loop transpose shows up in profiles).
pub(super) fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    vectorised(
        #[inline(always)]
        || transpose_blocks(src, rows, cols, dst),
    );
}

#[inline(always)]
fn transpose_blocks(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 16;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    let mut block = [[0.0f32; B]; B];
    for i0 in (0..rows).step_by(B) {
        let ib = B.min(rows - i0);
        for j0 in (0..cols).step_by(B) {
            let jb = B.min(cols - j0);
            if ib == B && jb == B {
                for (i, line) in block.iter_mut().enumerate() {
                    line.copy_from_slice(&src[(i0 + i) * cols + j0..][..B]);
                }
                for j in 0..B {
                    let out: &mut [f32; B] = (&mut dst[(j0 + j) * rows + i0..][..B])
                        .try_into()
                        .expect("a block row of B");
                    for (i, value) in out.iter_mut().enumerate() {
                        *value = block[i][j];
                    }
                }
            } else {
                for i in i0..i0 + ib {
                    for j in j0..j0 + jb {
                        dst[j * rows + i] = src[i * cols + j];
                    }
                }
            }
        }
    }
}

/// Gradient with respect to the weight: `[C_out, C_in, k, k]`, summed over the batch. Takes the
/// Winograd path where [`conv2d_forward`] does.
pub fn conv2d_weight_backward(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    if winograd_enabled() && winograd_kernels::applies(g) {
        return winograd_kernels::weight_backward(winograd_kernels::tile_for(g), g, x, grad);
    }
    im2col_weight_backward(g, x, grad)
}

/// [`conv2d_weight_backward`] through im2col, for any supported geometry.
///
/// dW = Σ_b grad_b · col_bᵀ. In NCHW both factors are contiguous along the summed pixel axis,
/// which the GEMM packs poorly (≈60 GFLOP/s at 32×32 here, against ≈170 for the forward
/// product). Transposing the small factor, grad_b (`C_out × H·W`), makes the product a
/// column-major `[C_out, C_in·k²]` one with a column-major left operand; it is accumulated as
/// dWᵀ and transposed once at the end.
///
/// Each thread accumulates the images of one contiguous share of the batch into its own buffer;
/// the shares are then added in order, so the result does not depend on scheduling.
pub(crate) fn im2col_weight_backward(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    check_len("x", x, g.batch * g.in_image());
    check_len("grad", grad, g.batch * g.out_image());
    let (plane, rows) = (g.out_plane(), g.col_rows());
    let per_share = images_per_share(g.batch);
    let col_len = if g.is_pointwise() { 0 } else { rows * plane };
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(per_share))
        .into_par_iter()
        .map(|share| {
            // dW in column-major order (dWᵀ row-major): element (c_out, r) at r·C_out + c_out.
            let mut dw_t = vec![0.0f32; g.c_out * rows];
            let mut col = vec![0.0f32; col_len];
            let mut grad_t = vec![0.0f32; g.out_image()];
            let images = share * per_share..((share + 1) * per_share).min(g.batch);
            for (i, b) in images.enumerate() {
                let x_b = &x[b * g.in_image()..][..g.in_image()];
                let grad_b = &grad[b * g.out_image()..][..g.out_image()];
                let col_b = if g.is_pointwise() {
                    x_b
                } else {
                    im2col(g, x_b, &mut col);
                    &col[..]
                };
                transpose_into(grad_b, g.c_out, plane, &mut grad_t);
                // dWᵀ [rows, C_out] row-major, which is dW column-major, = col_b · grad_bᵀ.
                // (matmul hands gemm the column-major form of this product, so its left operand
                // is grad_t, contiguous along C_out.)
                // SAFETY: col_b is [rows, plane], grad_t is [plane, C_out]; sizes checked above.
                unsafe {
                    matmul(
                        rows,
                        g.c_out,
                        plane,
                        &mut dw_t,
                        i > 0,
                        Mat::rows(col_b, plane),
                        Mat::rows(&grad_t, g.c_out),
                    );
                }
            }
            dw_t
        })
        .collect();
    let dw_t = sum_in_order(partials, g.c_out * rows);
    let mut dw = vec![0.0f32; g.c_out * rows];
    transpose_into(&dw_t, rows, g.c_out, &mut dw);
    dw
}

/// Gradient with respect to the bias: `[C_out]`, the output gradient summed over batch and plane.
pub fn conv2d_bias_backward(g: &ConvGeometry, grad: &[f32]) -> Vec<f32> {
    check_len("grad", grad, g.batch * g.out_image());
    let plane = g.out_plane();
    // One output channel per task, its planes summed in vector lanes and combined in f64.
    (0..g.c_out)
        .into_par_iter()
        .map(|c| {
            let planes = grad.chunks(g.out_image()).map(|b| &b[c * plane..][..plane]);
            vectorised(|| planes.map(|p| lane_sum(p, |v| v)).sum::<f64>()) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct seven-loop convolution, the definition the GEMM path must reproduce.
    fn naive_forward(g: &ConvGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; g.batch * g.out_image()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oh in 0..g.h_out {
                    for ow in 0..g.w_out {
                        let mut acc = f64::from(bias[co]);
                        for ci in 0..g.c_in {
                            for kh in 0..g.kernel {
                                for kw in 0..g.kernel {
                                    let (Some(ih), Some(iw)) =
                                        (g.source(oh, kh, g.height), g.source(ow, kw, g.width))
                                    else {
                                        continue;
                                    };
                                    let xv = x[((b * g.c_in + ci) * g.height + ih) * g.width + iw];
                                    let wv =
                                        w[((co * g.c_in + ci) * g.kernel + kh) * g.kernel + kw];
                                    acc += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((b * g.c_out + co) * g.h_out + oh) * g.w_out + ow] = acc as f32;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn im2col_and_col2im_are_adjoint() {
        // <im2col(x), c> = <x, col2im(c)> for every geometry the UNet uses (and odd sizes).
        for (k, s, p, h, w) in [
            (3, 1, 1, 5, 7),
            (3, 2, 1, 8, 8),
            (3, 2, 1, 7, 5),
            (1, 1, 0, 4, 3),
        ] {
            let g = ConvGeometry::new([1, 2, h, w], [3, 2, k, k], s, p).unwrap();
            let x = values(g.in_image(), 1);
            let c = values(g.col_rows() * g.out_plane(), 2);
            let mut col = vec![0.0; c.len()];
            im2col(&g, &x, &mut col);
            let mut back = vec![0.0; x.len()];
            col2im_add(&g, &c, &mut back);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| f64::from(a * b)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4,
                "k{k} s{s} p{p} {h}x{w}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn forward_matches_the_direct_convolution() {
        for (k, s, p, h, w) in [
            (3, 1, 1, 6, 5),
            (3, 2, 1, 8, 8),
            (3, 2, 1, 7, 7),
            (1, 1, 0, 4, 4),
        ] {
            let g = ConvGeometry::new([3, 4, h, w], [5, 4, k, k], s, p).unwrap();
            let x = values(g.batch * g.in_image(), 3);
            let wt = values(g.c_out * g.col_rows(), 4);
            let bias = values(g.c_out, 5);
            let fast = conv2d_forward(&g, &x, &wt, Some(&bias));
            let slow = naive_forward(&g, &x, &wt, &bias);
            let scale = slow.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            // The 3×3 stride-1 cases take Winograd F(4×4), whose transforms round at the 1e-6
            // level (relative to the largest output), a few times more than one GEMM.
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 2e-5 * scale, "k{k} s{s}: {a} vs {b}");
            }
        }
    }
}
