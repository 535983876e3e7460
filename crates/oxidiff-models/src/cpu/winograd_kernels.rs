//! 3×3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2×2, 3×3).
//!
//! Why: these convolutions carry most of the UNet's FLOPs, and the im2col GEMM already runs near
//! the cores' peak, so the remaining gain is in doing fewer multiplications. F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes each 2×2
//! output tile from a 4×4 input tile with 16 multiplications per (output, input) channel pair
//! instead of 36: 2.25× fewer. The result is the same convolution; only the rounding differs
//! (the transforms use the exact constants 0, ±½, ±1), and the tests compare it with the direct
//! definition and with burn's convolution.
//!
//! The work per group of images: transform every 4×4 input tile (`V = Bᵀ d B`) into 16 planes
//! `V[ξ][C_in, tiles]`, transform the weights once (`U = G g Gᵀ`) into `U[ξ][C_out, C_in]`, run
//! the 16 products `M[ξ] = U[ξ] · V[ξ]` through the GEMM, and fold each tile's 16 values back
//! into its 2×2 outputs (`Y = Aᵀ M A`). The input gradient of such a convolution is the same
//! convolution of the output gradient with the weights transposed over channels and rotated by
//! 180°, so it reuses the forward path.
//!
//! Layouts as in [`super::conv_kernels`]: contiguous row-major `[B, C, H, W]` images and
//! `[C_out, C_in, 3, 3]` weights.

use rayon::prelude::*;

use super::conv_kernels::{ConvGeometry, transpose_into};
use super::matmul::{Mat, matmul};

/// Tile positions ξ = 4·row + column of the 4×4 transformed tile.
const XI: usize = 16;

/// Tiles per GEMM: enough columns for the GEMM to run at full speed on small images, few enough
/// that one group's transformed planes stay within the caches.
const TARGET_TILES: usize = 256;

/// Whether `g` is a convolution this module computes.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kernel == 3 && g.stride == 1 && g.padding == 1 && g.height > 0 && g.width > 0
}

/// `U[ξ][co][ci] = (G g Gᵀ)[ξ]` for every 3×3 filter `g = weight[co][ci]`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn transform_weights(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; XI * c_out * c_in];
    let pair = c_out * c_in;
    for (p, g) in weight.chunks_exact(9).enumerate() {
        // t = G·g: 4 rows × 3 columns.
        let mut t = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            t[0][c] = g0;
            t[1][c] = 0.5 * (g0 + g1 + g2);
            t[2][c] = 0.5 * (g0 - g1 + g2);
            t[3][c] = g2;
        }
        for (r, row) in t.iter().enumerate() {
            let [a, b, c] = *row;
            let out = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (col, v) in out.into_iter().enumerate() {
                u[(4 * r + col) * pair + p] = v;
            }
        }
    }
    u
}

/// `dst[t] = f(a[t], b[t])`: written with iterators so that it compiles to vector code.
#[inline(always)]
fn map2(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x, y);
    }
}

/// `dst[t] = f(a[t], b[t], c[t])`.
#[inline(always)]
fn map3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (((d, &x), &y), &z) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = f(x, y, z);
    }
}

/// Splits one image row into its even and odd columns shifted by `shift` (0 or 1) places:
/// `first[(i + shift) / 2]` gets the columns where `i + shift` is even, `second` the others.
/// Both are zeroed first, so positions no column reaches read as padding.
fn deinterleave(row: &[f32], shift: usize, first: &mut [f32], second: &mut [f32]) {
    first.fill(0.0);
    second.fill(0.0);
    let pairs = row.chunks_exact(2);
    let remainder = pairs.remainder();
    if shift == 0 {
        for (t, pair) in pairs.enumerate() {
            first[t] = pair[0];
            second[t] = pair[1];
        }
        if let [last] = remainder {
            first[row.len() / 2] = *last;
        }
    } else {
        for (t, pair) in pairs.enumerate() {
            second[t] = pair[0];
            first[t + 1] = pair[1];
        }
        if let [last] = remainder {
            second[row.len() / 2] = *last;
        }
    }
}

/// Scratch floats the transforms of one image need.
fn scratch_len(g: &ConvGeometry) -> usize {
    let (tiles_h, tiles_w) = (g.height.div_ceil(2), g.width.div_ceil(2));
    let input = 2 * (tiles_w + 1) + 8 * (tiles_h + 1) * tiles_w;
    let output = 10 * tiles_h * tiles_w;
    input.max(output)
}

/// Writes the 16 transformed planes of one image into `v` (`[16][C_in][tiles_total]`), at tile
/// columns `offset..offset + tiles_h·tiles_w`; `scratch` holds [`scratch_len`] floats.
///
/// `V = Bᵀ d B` is separable. The column half (`· B`) runs along each zero-padded input row,
/// split into even and odd columns (tile `t` reads padded columns 2t..2t+4: even[t], odd[t],
/// even[t+1], odd[t+1]), into planes `C_j` of one value per tile column, stored by row parity.
/// The row half (`Bᵀ ·`) then combines padded rows 2·th..2·th+4, which are rows th and th + 1
/// of the even- and odd-row planes: elementwise operations over the whole image at once.
fn transform_input(
    g: &ConvGeometry,
    image: &[f32],
    v: &mut [f32],
    tiles_total: usize,
    offset: usize,
    scratch: &mut [f32],
) {
    let (h, w) = (g.height, g.width);
    let (tiles_h, tiles_w) = (h.div_ceil(2), w.div_ceil(2));
    let (len, n) = (tiles_w + 1, tiles_h * tiles_w);
    let plane = (tiles_h + 1) * tiles_w;
    let plane_stride = g.c_in * tiles_total;
    let (even, rest) = scratch.split_at_mut(len);
    let (odd, rest) = rest.split_at_mut(len);
    let columns = &mut rest[..8 * plane];
    for c in 0..g.c_in {
        let channel = &image[c * h * w..][..h * w];
        // Padded row y is image row y − 1; padded column x is image column x − 1.
        for y in 0..2 * (tiles_h + 1) {
            match y.checked_sub(1).filter(|&i| i < h) {
                Some(ih) => deinterleave(&channel[ih * w..][..w], 1, even, odd),
                None => {
                    even.fill(0.0);
                    odd.fill(0.0);
                }
            }
            let (e0, e1, o0, o1) = (&even[..tiles_w], &even[1..], &odd[..tiles_w], &odd[1..]);
            let row = (y % 2) * 4 * plane + (y / 2) * tiles_w;
            let column = |j: usize| row + j * plane..row + j * plane + tiles_w;
            map2(&mut columns[column(0)], e0, e1, |a, b| a - b);
            map2(&mut columns[column(1)], o0, e1, |a, b| a + b);
            map2(&mut columns[column(2)], e1, o0, |a, b| a - b);
            map2(&mut columns[column(3)], o0, o1, |a, b| a - b);
        }
        let base = c * tiles_total + offset;
        for j in 0..4 {
            let even_rows = &columns[j * plane..][..plane];
            let odd_rows = &columns[(4 + j) * plane..][..plane];
            let (d0, d1) = (&even_rows[..n], &odd_rows[..n]);
            let (d2, d3) = (&even_rows[tiles_w..], &odd_rows[tiles_w..]);
            let dst =
                |a: usize| (4 * a + j) * plane_stride + base..(4 * a + j) * plane_stride + base + n;
            map2(&mut v[dst(0)], d0, d2, |a, b| a - b);
            map2(&mut v[dst(1)], d1, d2, |a, b| a + b);
            map2(&mut v[dst(2)], d2, d1, |a, b| a - b);
            map2(&mut v[dst(3)], d1, d3, |a, b| a - b);
        }
    }
}

/// Folds the 16 product planes `m` (`[16][C_out][tiles_total]`) of one image back into its
/// output (`[C_out, H, W]`): `Y = Aᵀ M A` with `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`, plus bias.
/// Elementwise over all tiles of the image, then interleaved into the output rows; `scratch`
/// holds [`scratch_len`] floats.
fn transform_output(
    g: &ConvGeometry,
    m: &[f32],
    tiles_total: usize,
    offset: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (h, w) = (g.height, g.width);
    let (tiles_h, tiles_w) = (h.div_ceil(2), w.div_ceil(2));
    let n = tiles_h * tiles_w;
    let plane_stride = g.c_out * tiles_total;
    let (s, y) = scratch[..10 * n].split_at_mut(8 * n);
    let (y0, y1) = y.split_at_mut(n);
    for co in 0..g.c_out {
        let b = bias.map_or(0.0, |b| b[co]);
        let base = co * tiles_total + offset;
        let plane = |xi: usize| &m[xi * plane_stride + base..][..n];
        // s_{i,j} = (Aᵀ M)_{i,j}, stored at (2j + i)·n.
        for j in 0..4 {
            let (m0, m1, m2, m3) = (plane(j), plane(4 + j), plane(8 + j), plane(12 + j));
            let (s0, s1) = s[2 * j * n..][..2 * n].split_at_mut(n);
            map3(s0, m0, m1, m2, |a, b, c| a + b + c);
            map3(s1, m1, m2, m3, |a, b, c| a - b - c);
        }
        let channel = &mut out[co * h * w..][..h * w];
        for i in 0..2 {
            let col = |j: usize| &s[(2 * j + i) * n..][..n];
            map3(y0, col(0), col(1), col(2), |a, c, d| a + c + d + b);
            map3(y1, col(1), col(2), col(3), |a, c, d| a - c - d + b);
            for th in 0..tiles_h {
                let oh = 2 * th + i;
                if oh >= h {
                    continue;
                }
                let (r0, r1) = (
                    &y0[th * tiles_w..][..tiles_w],
                    &y1[th * tiles_w..][..tiles_w],
                );
                let out_row = &mut channel[oh * w..][..w];
                let mut pairs = out_row.chunks_exact_mut(2);
                for ((pair, &a), &c) in (&mut pairs).zip(r0).zip(r1) {
                    pair[0] = a;
                    pair[1] = c;
                }
                if let [last] = pairs.into_remainder() {
                    *last = r0[tiles_w - 1];
                }
            }
        }
    }
}

/// Forward convolution for a geometry where [`applies`] holds: `[B, C_out, H, W]`.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(
        applies(g),
        "winograd: not a 3×3, stride 1, padding 1 convolution"
    );
    assert_eq!(x.len(), g.batch * g.in_image(), "winograd: x length");
    assert_eq!(
        weight.len(),
        g.c_out * g.c_in * 9,
        "winograd: weight length"
    );
    let u = transform_weights(weight, g.c_out, g.c_in);
    let tiles_per_image = g.height.div_ceil(2) * g.width.div_ceil(2);
    let group = TARGET_TILES.div_ceil(tiles_per_image).max(1);
    let per_share = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut out = vec![0.0f32; g.batch * g.out_image()];
    out.par_chunks_mut(per_share * g.out_image())
        .zip(x.par_chunks(per_share * g.in_image()))
        .for_each(|(out_s, x_s)| {
            let images_in_share = x_s.len() / g.in_image();
            let max_tiles = group.min(images_in_share) * tiles_per_image;
            let mut v = vec![0.0f32; XI * g.c_in * max_tiles];
            let mut m = vec![0.0f32; XI * g.c_out * max_tiles];
            let mut scratch = vec![0.0f32; scratch_len(g)];
            for (out_g, x_g) in out_s
                .chunks_mut(group * g.out_image())
                .zip(x_s.chunks(group * g.in_image()))
            {
                let images = x_g.len() / g.in_image();
                let tiles = images * tiles_per_image;
                for (i, image) in x_g.chunks(g.in_image()).enumerate() {
                    transform_input(g, image, &mut v, tiles, i * tiles_per_image, &mut scratch);
                }
                for xi in 0..XI {
                    let u_xi = &u[xi * g.c_out * g.c_in..][..g.c_out * g.c_in];
                    let v_xi = &v[xi * g.c_in * tiles..][..g.c_in * tiles];
                    let m_xi = &mut m[xi * g.c_out * tiles..][..g.c_out * tiles];
                    // SAFETY: U[ξ] is [C_out, C_in] and V[ξ] [C_in, tiles], both row-major.
                    unsafe {
                        matmul(
                            g.c_out,
                            tiles,
                            g.c_in,
                            m_xi,
                            false,
                            Mat::rows(u_xi, g.c_in),
                            Mat::rows(v_xi, tiles),
                        );
                    }
                }
                for (i, out_b) in out_g.chunks_mut(g.out_image()).enumerate() {
                    let offset = i * tiles_per_image;
                    transform_output(g, &m, tiles, offset, bias, out_b, &mut scratch);
                }
            }
        });
    out
}

/// `dM[ξ] = (A dY Aᵀ)[ξ]` for every 2×2 tile of one image's output gradient (`[C_out, H, W]`),
/// into `dm` (`[16][C_out][tiles_total]`) at tile columns `offset..`: the adjoint of
/// [`transform_output`]'s `Y = Aᵀ M A`, with `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`. Outputs past
/// the image edge were discarded by the forward pass, so their gradient is zero. The gradient is
/// split into its four 2×2 phases, then transformed elementwise over all tiles; `scratch` holds
/// [`scratch_len`] floats.
fn transform_output_gradient(
    g: &ConvGeometry,
    grad: &[f32],
    dm: &mut [f32],
    tiles_total: usize,
    offset: usize,
    scratch: &mut [f32],
) {
    let (h, w) = (g.height, g.width);
    let (tiles_h, tiles_w) = (h.div_ceil(2), w.div_ceil(2));
    let n = tiles_h * tiles_w;
    let plane_stride = g.c_out * tiles_total;
    // phases[(2i + jj)·n + th·tiles_w + tw] = dY[2·th + i][2·tw + jj].
    let (phases, z) = scratch[..6 * n].split_at_mut(4 * n);
    let (z_even, z_odd) = z.split_at_mut(n);
    for co in 0..g.c_out {
        let channel = &grad[co * h * w..][..h * w];
        for i in 0..2 {
            let (even, odd) = phases[2 * i * n..][..2 * n].split_at_mut(n);
            for th in 0..tiles_h {
                let (e, o) = (
                    &mut even[th * tiles_w..][..tiles_w],
                    &mut odd[th * tiles_w..][..tiles_w],
                );
                match Some(2 * th + i).filter(|&oh| oh < h) {
                    Some(oh) => deinterleave(&channel[oh * w..][..w], 0, e, o),
                    None => {
                        e.fill(0.0);
                        o.fill(0.0);
                    }
                }
            }
        }
        let phase = |i: usize, jj: usize| &phases[(2 * i + jj) * n..][..n];
        let base = co * tiles_total + offset;
        for r in 0..4 {
            // z = (A dY)_r on the even and odd columns.
            for (jj, z) in [(0, &mut *z_even), (1, &mut *z_odd)] {
                let (y0, y1) = (phase(0, jj), phase(1, jj));
                match r {
                    0 => z.copy_from_slice(y0),
                    1 => map2(z, y0, y1, |a, b| a + b),
                    2 => map2(z, y0, y1, |a, b| a - b),
                    _ => map2(z, y1, y1, |_, b| -b),
                }
            }
            let (ze, zo) = (&*z_even, &*z_odd);
            let dst =
                |j: usize| (4 * r + j) * plane_stride + base..(4 * r + j) * plane_stride + base + n;
            dm[dst(0)].copy_from_slice(ze);
            map2(&mut dm[dst(1)], ze, zo, |a, b| a + b);
            map2(&mut dm[dst(2)], ze, zo, |a, b| a - b);
            map2(&mut dm[dst(3)], zo, zo, |_, b| -b);
        }
    }
}

/// `dW = Gᵀ dU G` per filter: the adjoint of [`transform_weights`], from `du_t`
/// (`[16][C_in][C_out]`, each dU[ξ] transposed) to `[C_out, C_in, 3, 3]`.
fn transform_weight_gradient(du_t: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let pair = c_out * c_in;
    let mut dw = vec![0.0f32; pair * 9];
    for (p, out) in dw.chunks_exact_mut(9).enumerate() {
        let (co, ci) = (p / c_in, p % c_in);
        let u = |r: usize, c: usize| du_t[(4 * r + c) * pair + ci * c_out + co];
        // q = Gᵀ·dU: 3 rows × 4 columns, with Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]].
        let column = |c: usize| {
            let (u0, u1, u2, u3) = (u(0, c), u(1, c), u(2, c), u(3, c));
            [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
        };
        let q_columns = [column(0), column(1), column(2), column(3)];
        for r in 0..3 {
            let [q0, q1, q2, q3] = q_columns.map(|col| col[r]);
            out[3 * r] = q0 + 0.5 * (q1 + q2);
            out[3 * r + 1] = 0.5 * (q1 - q2);
            out[3 * r + 2] = 0.5 * (q1 + q2) + q3;
        }
    }
    dw
}

/// Weight gradient for a geometry where [`applies`] holds: `[C_out, C_in, 3, 3]`, summed over
/// the batch. The forward pass is linear in `U = G g Gᵀ`, so `dU[ξ] = Σ_tiles dM[ξ] · V[ξ]ᵀ`
/// (16 GEMMs with the tiles as the summed axis) and `dW = Gᵀ dU G`.
///
/// Each thread sums one contiguous share of the batch; the shares are added in order, so the
/// result does not depend on scheduling.
pub fn weight_backward(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "winograd: not a 3×3, stride 1, padding 1 convolution"
    );
    assert_eq!(x.len(), g.batch * g.in_image(), "winograd: x length");
    assert_eq!(grad.len(), g.batch * g.out_image(), "winograd: grad length");
    let tiles_per_image = g.height.div_ceil(2) * g.width.div_ceil(2);
    let group = TARGET_TILES.div_ceil(tiles_per_image).max(1);
    let per_share = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let pair = g.c_out * g.c_in;
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_share * g.in_image())
        .zip(grad.par_chunks(per_share * g.out_image()))
        .map(|(x_s, grad_s)| {
            let images_in_share = x_s.len() / g.in_image();
            let max_tiles = group.min(images_in_share) * tiles_per_image;
            let mut v = vec![0.0f32; XI * g.c_in * max_tiles];
            let mut dm = vec![0.0f32; XI * g.c_out * max_tiles];
            // dU[ξ] transposed: element (co, ci) at ci·C_out + co.
            let mut du_t = vec![0.0f32; XI * pair];
            let mut dm_t = vec![0.0f32; g.c_out * max_tiles];
            let mut scratch = vec![0.0f32; scratch_len(g)];
            let groups = x_s
                .chunks(group * g.in_image())
                .zip(grad_s.chunks(group * g.out_image()));
            for (n, (x_g, grad_g)) in groups.enumerate() {
                let tiles = (x_g.len() / g.in_image()) * tiles_per_image;
                let images = x_g.chunks(g.in_image()).zip(grad_g.chunks(g.out_image()));
                for (i, (image, grad_b)) in images.enumerate() {
                    let offset = i * tiles_per_image;
                    transform_input(g, image, &mut v, tiles, offset, &mut scratch);
                    transform_output_gradient(g, grad_b, &mut dm, tiles, offset, &mut scratch);
                }
                for xi in 0..XI {
                    let dm_xi = &dm[xi * g.c_out * tiles..][..g.c_out * tiles];
                    let v_xi = &v[xi * g.c_in * tiles..][..g.c_in * tiles];
                    let du_xi = &mut du_t[xi * pair..][..pair];
                    // Both factors are contiguous along the summed tile axis, which the GEMM
                    // packs poorly; transposing the smaller one first (as the im2col weight
                    // gradient does) doubles its speed.
                    transpose_into(dm_xi, g.c_out, tiles, &mut dm_t);
                    // SAFETY: V[ξ] is [C_in, tiles] and dM[ξ]ᵀ [tiles, C_out].
                    unsafe {
                        matmul(
                            g.c_in,
                            g.c_out,
                            tiles,
                            du_xi,
                            n > 0,
                            Mat::rows(v_xi, tiles),
                            Mat::rows(&dm_t, g.c_out),
                        );
                    }
                }
            }
            du_t
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut du_t = partials.next().unwrap_or_else(|| vec![0.0; XI * pair]);
    for part in partials {
        for (a, b) in du_t.iter_mut().zip(&part) {
            *a += b;
        }
    }
    transform_weight_gradient(&du_t, g.c_out, g.c_in)
}

/// Input gradient for a geometry where [`applies`] holds: `[B, C_in, H, W]` from `grad`
/// (`[B, C_out, H, W]`). It is the forward convolution of `grad` with
/// `W'[ci][co][kh][kw] = W[co][ci][2 − kh][2 − kw]`.
pub fn x_backward(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "winograd: not a 3×3, stride 1, padding 1 convolution"
    );
    let mut flipped = vec![0.0f32; weight.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            let src = &weight[(co * g.c_in + ci) * 9..][..9];
            let dst = &mut flipped[(ci * g.c_out + co) * 9..][..9];
            for (k, value) in src.iter().enumerate() {
                dst[8 - k] = *value;
            }
        }
    }
    let transposed = ConvGeometry::new(
        [g.batch, g.c_out, g.height, g.width],
        [g.c_in, g.c_out, 3, 3],
        1,
        1,
    )
    .expect("a 3×3, stride 1, padding 1 geometry transposes to another");
    forward(&transposed, grad, &flipped, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv_kernels::{im2col_forward, im2col_weight_backward, im2col_x_backward};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn assert_close(fast: &[f32], reference: &[f32], what: &str) {
        let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in fast.iter().zip(reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale.max(1.0),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// Odd and even sizes (partial tiles at the right and bottom edges), a batch that does not
    /// divide into thread shares or tile groups, and the UNet's 8×8 shape.
    const CASES: [(usize, usize, usize, usize, usize); 5] = [
        (3, 4, 5, 6, 5),
        (1, 2, 3, 1, 1),
        (5, 3, 2, 7, 9),
        (2, 6, 4, 8, 8),
        (17, 3, 3, 8, 8),
    ];

    #[test]
    fn forward_matches_im2col() {
        for (b, c_in, c_out, h, w) in CASES {
            let g = ConvGeometry::new([b, c_in, h, w], [c_out, c_in, 3, 3], 1, 1).unwrap();
            let x = values(b * g.in_image(), 1);
            let weight = values(c_out * c_in * 9, 2);
            let bias = values(c_out, 3);
            let fast = forward(&g, &x, &weight, Some(&bias));
            let reference = im2col_forward(&g, &x, &weight, Some(&bias));
            assert_close(&fast, &reference, &format!("forward {b}x{c_in}x{h}x{w}"));
        }
    }

    #[test]
    fn input_gradient_matches_im2col() {
        for (b, c_in, c_out, h, w) in CASES {
            let g = ConvGeometry::new([b, c_in, h, w], [c_out, c_in, 3, 3], 1, 1).unwrap();
            let grad = values(b * g.out_image(), 4);
            let weight = values(c_out * c_in * 9, 5);
            let fast = x_backward(&g, &weight, &grad);
            let reference = im2col_x_backward(&g, &weight, &grad);
            assert_close(&fast, &reference, &format!("dx {b}x{c_in}x{h}x{w}"));
        }
    }

    #[test]
    fn weight_gradient_matches_im2col() {
        for (b, c_in, c_out, h, w) in CASES {
            let g = ConvGeometry::new([b, c_in, h, w], [c_out, c_in, 3, 3], 1, 1).unwrap();
            let x = values(b * g.in_image(), 6);
            let grad = values(b * g.out_image(), 7);
            let fast = weight_backward(&g, &x, &grad);
            let reference = im2col_weight_backward(&g, &x, &grad);
            assert_close(&fast, &reference, &format!("dW {b}x{c_in}x{h}x{w}"));
        }
    }

    #[test]
    fn other_geometries_are_not_claimed() {
        let strided = ConvGeometry::new([1, 2, 8, 8], [2, 2, 3, 3], 2, 1).unwrap();
        let pointwise = ConvGeometry::new([1, 2, 8, 8], [2, 2, 1, 1], 1, 0).unwrap();
        let unpadded = ConvGeometry::new([1, 2, 8, 8], [2, 2, 3, 3], 1, 0).unwrap();
        assert!(!applies(&strided) && !applies(&pointwise) && !applies(&unpadded));
    }
}
