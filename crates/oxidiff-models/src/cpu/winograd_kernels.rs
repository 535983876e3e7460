//! 3×3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(m×m, 3×3).
//!
//! Why: these convolutions carry most of the UNet's FLOPs, and the im2col GEMM already runs near
//! the cores' peak, so the remaining gain is in doing fewer multiplications. F(m×m, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes each m×m
//! output tile from an α×α input tile (α = m + 2) with α² multiplications per (output, input)
//! channel pair instead of 9m²: F(2×2) needs 16 instead of 36 (2.25× fewer), F(4×4) 36 instead
//! of 144 (4× fewer). The result is the same convolution; only the rounding differs, and the
//! tests compare both tile sizes with the im2col path and, through the layers, with burn.
//!
//! The work per group of images: transform every α×α input tile (`V = Bᵀ d B`) into α² planes
//! `V[ξ][C_in, tiles]`, transform the weights once (`U = G g Gᵀ`) into `U[ξ][C_out, C_in]`, run
//! the α² products `M[ξ] = U[ξ] · V[ξ]` through the GEMM, and fold each tile's α² values back
//! into its m×m outputs (`Y = Aᵀ M A`). The input gradient of such a convolution is the same
//! convolution of the output gradient with the weights transposed over channels and rotated by
//! 180°, so it reuses the forward path; the weight gradient is the adjoint of the same steps.
//!
//! The transforms run on channel vectors: each image is first transposed to pixel-major
//! `[H·W, C]`, so that every step of a tile's transform is an elementwise operation on a run of
//! C contiguous floats (vector code, whatever the tile size), and the transformed planes are
//! laid out `[ξ][tiles, C]`, which is also the layout in which the GEMM runs fastest.
//!
//! Layouts at the interface as in [`super::conv_kernels`]: contiguous row-major `[B, C, H, W]`
//! images and `[C_out, C_in, 3, 3]` weights.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::buffer::{sum_in_order, zeroed};
use super::conv_kernels::{ConvGeometry, transpose_into};
use super::matmul::{Mat, matmul};
use super::vectorised;

/// One Winograd algorithm F(m×m, 3×3): its output tile size and transform matrices (row-major).
#[derive(Debug)]
pub(crate) struct Tile {
    /// Output tile side m; the input tile side is α = m + 2.
    m: usize,
    /// Bᵀ, α × α.
    bt: &'static [f32],
    /// G, α × 3.
    g: &'static [f32],
    /// Aᵀ, m × α.
    at: &'static [f32],
}

/// F(2×2, 3×3): every constant is 0, ±½ or ±1, so the transforms add no rounding of their own.
pub(crate) const F2: Tile = Tile {
    m: 2,
    #[rustfmt::skip]
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// F(4×4, 3×3), with the points 0, ±1, ±2 and ∞ (Lavin & Gray's matrices): 4× fewer
/// multiplications, at the price of constants up to 8 and 1/24, i.e. a few times the rounding
/// error of F(2×2) (still ~1e-6 relative in f32, see the tests).
pub(crate) const F4: Tile = Tile {
    m: 4,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

impl Tile {
    fn alpha(&self) -> usize {
        self.m + 2
    }

    /// Transformed tile positions ξ = α·row + column.
    fn positions(&self) -> usize {
        self.alpha() * self.alpha()
    }
}

/// Tiles per GEMM: enough columns for the GEMM to run at full speed on small images, few enough
/// that one group's transformed planes stay within the caches.
const TARGET_TILES: usize = 256;

/// The algorithm [`super::conv_kernels`] uses for `g`: F(4×4) on images of 16×16 and more,
/// F(2×2) on smaller ones (an 8×8 image has only four 4×4 tiles, too few columns for the GEMM
/// to run at speed), or F(2×2) everywhere with `OXIDIFF_WINOGRAD=2` (`OXIDIFF_WINOGRAD=0`,
/// handled there, turns Winograd off).
pub(crate) fn tile_for(g: &ConvGeometry) -> &'static Tile {
    static ONLY_F2: OnceLock<bool> = OnceLock::new();
    let only_f2 =
        *ONLY_F2.get_or_init(|| std::env::var("OXIDIFF_WINOGRAD").is_ok_and(|v| v == "2"));
    if only_f2 || g.height.min(g.width) < 16 {
        &F2
    } else {
        &F4
    }
}

/// Whether `g` is a convolution this module computes.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    g.kernel == 3 && g.stride == 1 && g.padding == 1 && g.height > 0 && g.width > 0
}

/// `dst = Σ coef·src` over the terms with a non-zero coefficient (zero if none): one pass per
/// term over a channel vector, written with iterators so that each compiles to vector code.
#[inline(always)]
fn combine<'a>(dst: &mut [f32], terms: impl IntoIterator<Item = (f32, &'a [f32])>) {
    let mut first = true;
    for (coef, src) in terms {
        if coef == 0.0 {
            continue;
        }
        if first {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = coef * x;
            }
            first = false;
        } else {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d += coef * x;
            }
        }
    }
    if first {
        dst.fill(0.0);
    }
}

/// Tile grid of one image.
#[derive(Clone, Copy)]
struct Grid {
    tiles_h: usize,
    tiles_w: usize,
}

impl Grid {
    fn new(g: &ConvGeometry, tile: &Tile) -> Self {
        Self {
            tiles_h: g.height.div_ceil(tile.m),
            tiles_w: g.width.div_ceil(tile.m),
        }
    }

    fn tiles(&self) -> usize {
        self.tiles_h * self.tiles_w
    }
}

/// `Uᵀ[ξ][ci][co] = (G g Gᵀ)[ξ]` for every 3×3 filter `g = weight[co][ci]`: each U[ξ] stored
/// transposed, `[C_in, C_out]`, the right operand of the forward GEMM.
///
/// Computed plane by plane (`Uᵀ[a·α + b] = Σ_{r,c} G[a][r]·G[b][c]·g[r][c]` over whole
/// `[C_in, C_out]` planes of filter taps), so every pass streams through memory.
fn transform_weights(tile: &Tile, weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let alpha = tile.alpha();
    let pair = c_out * c_in;
    // by_ci[k][ci][co] = weight[co][ci][k], one tap per task (these transforms run every step,
    // so on the pool rather than the calling thread).
    let mut by_ci = zeroed(9 * pair);
    by_ci
        .par_chunks_mut(pair)
        .enumerate()
        .for_each(|(k, by_ci_k)| {
            // tap[co][ci] = weight[co][ci][k]
            let tap: Vec<f32> = weight.iter().skip(k).step_by(9).copied().collect();
            transpose_into(&tap, c_out, c_in, by_ci_k);
        });
    let mut u_t = zeroed(tile.positions() * pair);
    u_t.par_chunks_mut(pair).enumerate().for_each(|(xi, u_xi)| {
        let (a, b) = (xi / alpha, xi % alpha);
        let terms = (0..9).map(|k| {
            let coef = tile.g[3 * a + k / 3] * tile.g[3 * b + k % 3];
            (coef, &by_ci[k * pair..][..pair])
        });
        combine(u_xi, terms);
    });
    u_t
}

/// `dW = Gᵀ dU G` per filter: the adjoint of [`transform_weights`], from `du_t`
/// (`[α²][C_in][C_out]`, each dU[ξ] transposed) to `[C_out, C_in, 3, 3]`, plane by plane.
fn transform_weight_gradient(tile: &Tile, du_t: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let alpha = tile.alpha();
    let pair = c_out * c_in;
    // by_co[k][co][ci] = taps[k][ci][co] = Σ_ξ G[a][k/3]·G[b][k%3]·dUᵀ[ξ][ci][co], one tap per
    // task.
    let mut by_co = zeroed(9 * pair);
    by_co
        .par_chunks_mut(pair)
        .enumerate()
        .for_each(|(k, by_co_k)| {
            let terms = (0..alpha * alpha).map(|xi| {
                let (a, b) = (xi / alpha, xi % alpha);
                let coef = tile.g[3 * a + k / 3] * tile.g[3 * b + k % 3];
                (coef, &du_t[xi * pair..][..pair])
            });
            let mut taps_k = vec![0.0f32; pair];
            combine(&mut taps_k, terms);
            transpose_into(&taps_k, c_in, c_out, by_co_k);
        });
    // dw[co][ci][k] = by_co[k][co][ci], blocks of filters per task.
    const FILTERS_PER_TASK: usize = 1024;
    let mut dw = zeroed(9 * pair);
    dw.par_chunks_mut(9 * FILTERS_PER_TASK)
        .enumerate()
        .for_each(|(block, dw_block)| {
            let first = block * FILTERS_PER_TASK;
            for (f, filter) in dw_block.chunks_exact_mut(9).enumerate() {
                for (k, value) in filter.iter_mut().enumerate() {
                    *value = by_co[k * pair + first + f];
                }
            }
        });
    dw
}

/// `out[o·stride + k] = Σ_i coef[o][i]·inputs[i][k]` for `k < len` and every output row o: one
/// pass over the channel vectors for all outputs of one small matrix product. Runs in blocks of
/// 8 lanes on fixed-size arrays, which the compiler keeps in vector registers.
#[inline(always)]
fn mix<const IN: usize, const OUT: usize>(
    coef: &[[f32; IN]; OUT],
    inputs: [&[f32]; IN],
    out: &mut [f32],
    stride: usize,
    len: usize,
) {
    const L: usize = 8;
    let inputs = inputs.map(|input| &input[..len]);
    assert!(out.len() >= (OUT - 1) * stride + len);
    let blocks = len / L * L;
    for k in (0..blocks).step_by(L) {
        let d: [[f32; L]; IN] =
            std::array::from_fn(|i| inputs[i][k..k + L].try_into().expect("a block of L"));
        for (o, row) in coef.iter().enumerate() {
            let mut acc = [0.0f32; L];
            for (weight, lanes) in row.iter().zip(&d) {
                for (a, &x) in acc.iter_mut().zip(lanes) {
                    *a += weight * x;
                }
            }
            out[o * stride + k..][..L].copy_from_slice(&acc);
        }
    }
    for k in blocks..len {
        for (o, row) in coef.iter().enumerate() {
            out[o * stride + k] = row.iter().zip(&inputs).map(|(w, input)| w * input[k]).sum();
        }
    }
}

/// The `rows × cols` matrix `mat` (row-major) as fixed-size arrays, or its transpose.
fn matrix<const R: usize, const C: usize>(mat: &[f32], transpose: bool) -> [[f32; C]; R] {
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            if transpose {
                mat[c * R + r]
            } else {
                mat[r * C + c]
            }
        })
    })
}

/// `V[ξ][t] = (Bᵀ d B)[ξ]` for every tile of one pixel-major image (`[H·W, C]`), written as
/// channel vectors into `v` (`[α²][tiles_total][C]`) at tiles `offset..`. `zeros` is C zeros
/// (the padding) and `scratch` holds α²·C floats. `M` and `A` are the tile's m and α.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_input<const M: usize, const A: usize>(
    tile: &Tile,
    g: &ConvGeometry,
    image_hwc: &[f32],
    channels: usize,
    v: &mut [f32],
    tiles_total: usize,
    offset: usize,
    zeros: &[f32],
    scratch: &mut [f32],
) {
    assert_eq!((tile.m, tile.alpha()), (M, A));
    let bt: [[f32; A]; A] = matrix(tile.bt, false);
    let grid = Grid::new(g, tile);
    let c = channels;
    let pixel = |ih: Option<usize>, iw: Option<usize>| match (ih, iw) {
        (Some(ih), Some(iw)) if ih < g.height && iw < g.width => {
            &image_hwc[(ih * g.width + iw) * c..][..c]
        }
        _ => &zeros[..c],
    };
    let position_stride = tiles_total * c;
    for th in 0..grid.tiles_h {
        for tw in 0..grid.tiles_w {
            let t = offset + th * grid.tiles_w + tw;
            // Column half: e[r][b] = Σ_x Bᵀ[b][x] d[r][x], at (r·α + b)·C.
            for r in 0..A {
                let ih = (M * th + r).checked_sub(1);
                let d = std::array::from_fn(|x| pixel(ih, (M * tw + x).checked_sub(1)));
                mix(&bt, d, &mut scratch[r * A * c..], c, c);
            }
            // Row half: V[a][b] = Σ_r Bᵀ[a][r] e[r][b].
            for b in 0..A {
                let e = std::array::from_fn(|r| &scratch[(r * A + b) * c..][..c]);
                let out = &mut v[b * position_stride + t * c..];
                mix(&bt, e, out, A * position_stride, c);
            }
        }
    }
}

/// Transposes one `[C_in, H, W]` image to pixel-major in `hwc` and writes its transformed tiles
/// into `v` at tiles `offset..` ([`transform_input`], compiled for AVX2 where the CPU has it).
/// `buffers` = (`hwc`, `v`, `scratch`); `zeros` holds at least C_in zeros.
fn transform_image(
    tile: &Tile,
    g: &ConvGeometry,
    image: &[f32],
    (hwc, v, scratch): (&mut [f32], &mut [f32], &mut [f32]),
    tiles: usize,
    offset: usize,
    zeros: &[f32],
) {
    let (plane, c) = (g.height * g.width, g.c_in);
    let image_hwc = &mut hwc[..plane * c];
    transpose_into(image, c, plane, image_hwc);
    let image_hwc = &*image_hwc;
    vectorised(
        #[inline(always)]
        || match tile.m {
            2 => transform_input::<2, 4>(tile, g, image_hwc, c, v, tiles, offset, zeros, scratch),
            _ => transform_input::<4, 6>(tile, g, image_hwc, c, v, tiles, offset, zeros, scratch),
        },
    );
}

/// `Y = Aᵀ M A` (+ bias) for every tile of one image, from the product planes `m_planes`
/// (`[α²][tiles_total][C_out]`) into the pixel-major output `out_hwc` (`[H·W, C_out]`); outputs
/// past the image edge are dropped. `scratch` holds (m·α + m)·C_out floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_output<const M: usize, const A: usize>(
    tile: &Tile,
    g: &ConvGeometry,
    m_planes: &[f32],
    tiles_total: usize,
    offset: usize,
    bias: Option<&[f32]>,
    out_hwc: &mut [f32],
    scratch: &mut [f32],
) {
    assert_eq!((tile.m, tile.alpha()), (M, A));
    let at: [[f32; A]; M] = matrix(tile.at, false);
    let grid = Grid::new(g, tile);
    let c = g.c_out;
    let position_stride = tiles_total * c;
    let (s, row) = scratch.split_at_mut(M * A * c);
    for th in 0..grid.tiles_h {
        for tw in 0..grid.tiles_w {
            let t = offset + th * grid.tiles_w + tw;
            // s[i][b] = Σ_a Aᵀ[i][a] M[a][b], at (i·α + b)·C.
            for b in 0..A {
                let planes = std::array::from_fn(|a| {
                    &m_planes[(A * a + b) * position_stride + t * c..][..c]
                });
                mix(&at, planes, &mut s[b * c..], A * c, c);
            }
            // Y[i][j] = Σ_b Aᵀ[j][b] s[i][b] + bias: one output row of the tile at a time.
            for i in 0..M {
                let oh = M * th + i;
                if oh >= g.height {
                    break;
                }
                let si = std::array::from_fn(|b| &s[(i * A + b) * c..][..c]);
                let first = oh * g.width + M * tw;
                let inside = M.min(g.width - M * tw);
                let y = &mut row[..M * c];
                mix(&at, si, y, c, c);
                if let Some(bias) = bias {
                    for pixel in y.chunks_exact_mut(c) {
                        pixel
                            .iter_mut()
                            .zip(bias)
                            .for_each(|(value, b)| *value += b);
                    }
                }
                out_hwc[first * c..][..inside * c].copy_from_slice(&y[..inside * c]);
            }
        }
    }
}

/// Forward convolution for a geometry where [`applies`] holds: `[B, C_out, H, W]`.
pub(crate) fn forward(
    tile: &Tile,
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
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
    let (positions, alpha, plane) = (tile.positions(), tile.alpha(), g.out_plane());
    let u_t = transform_weights(tile, weight, g.c_out, g.c_in);
    let tiles_per_image = Grid::new(g, tile).tiles();
    let group = TARGET_TILES.div_ceil(tiles_per_image).max(1);
    let per_share = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut out = zeroed(g.batch * g.out_image());
    out.par_chunks_mut(per_share * g.out_image())
        .zip(x.par_chunks(per_share * g.in_image()))
        .for_each(|(out_s, x_s)| {
            let images_in_share = x_s.len() / g.in_image();
            let max_tiles = group.min(images_in_share) * tiles_per_image;
            let mut v = vec![0.0f32; positions * max_tiles * g.c_in];
            let mut m = vec![0.0f32; positions * max_tiles * g.c_out];
            let mut hwc = vec![0.0f32; plane * g.c_in.max(g.c_out)];
            let mut scratch = vec![0.0f32; alpha * alpha * g.c_in.max(g.c_out)];
            let zeros = vec![0.0f32; g.c_in.max(g.c_out)];
            for (out_g, x_g) in out_s
                .chunks_mut(group * g.out_image())
                .zip(x_s.chunks(group * g.in_image()))
            {
                let tiles = (x_g.len() / g.in_image()) * tiles_per_image;
                for (i, image) in x_g.chunks(g.in_image()).enumerate() {
                    let offset = i * tiles_per_image;
                    let buffers = (&mut hwc[..], &mut v[..], &mut scratch[..]);
                    transform_image(tile, g, image, buffers, tiles, offset, &zeros);
                }
                for xi in 0..positions {
                    let v_xi = &v[xi * tiles * g.c_in..][..tiles * g.c_in];
                    let u_xi = &u_t[xi * g.c_in * g.c_out..][..g.c_in * g.c_out];
                    let m_xi = &mut m[xi * tiles * g.c_out..][..tiles * g.c_out];
                    // SAFETY: V[ξ] is [tiles, C_in] and Uᵀ[ξ] [C_in, C_out], both row-major.
                    unsafe {
                        matmul(
                            tiles,
                            g.c_out,
                            g.c_in,
                            m_xi,
                            false,
                            Mat::rows(v_xi, g.c_in),
                            Mat::rows(u_xi, g.c_out),
                        );
                    }
                }
                for (i, out_b) in out_g.chunks_mut(g.out_image()).enumerate() {
                    let out_hwc = &mut hwc[..plane * g.c_out];
                    let offset = i * tiles_per_image;
                    let (m, scratch) = (&m[..], &mut scratch[..]);
                    vectorised(
                        #[inline(always)]
                        || match tile.m {
                            2 => transform_output::<2, 4>(
                                tile, g, m, tiles, offset, bias, out_hwc, scratch,
                            ),
                            _ => transform_output::<4, 6>(
                                tile, g, m, tiles, offset, bias, out_hwc, scratch,
                            ),
                        },
                    );
                    transpose_into(out_hwc, plane, g.c_out, out_b);
                }
            }
        });
    out
}

/// `dM[ξ] = (A dY Aᵀ)[ξ]` for every tile of one pixel-major output gradient (`[H·W, C_out]`),
/// into `dm` (`[α²][tiles_total][C_out]`) at tiles `offset..`: the adjoint of
/// [`transform_output`]. Outputs past the image edge were dropped by the forward pass, so their
/// gradient is taken as zero. `zeros` is C_out zeros; `scratch` holds α·m·C_out floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_output_gradient<const M: usize, const A: usize>(
    tile: &Tile,
    g: &ConvGeometry,
    grad_hwc: &[f32],
    dm: &mut [f32],
    tiles_total: usize,
    offset: usize,
    zeros: &[f32],
    scratch: &mut [f32],
) {
    assert_eq!((tile.m, tile.alpha()), (M, A));
    // A = (Aᵀ)ᵀ, α × m.
    let a_mat: [[f32; M]; A] = matrix(tile.at, true);
    let grid = Grid::new(g, tile);
    let c = g.c_out;
    let position_stride = tiles_total * c;
    let pixel = |oh: usize, ow: usize| {
        if oh < g.height && ow < g.width {
            &grad_hwc[(oh * g.width + ow) * c..][..c]
        } else {
            &zeros[..c]
        }
    };
    for th in 0..grid.tiles_h {
        for tw in 0..grid.tiles_w {
            let t = offset + th * grid.tiles_w + tw;
            // z[a][j] = Σ_i A[a][i] dY[i][j], at (a·m + j)·C.
            for j in 0..M {
                let dy = std::array::from_fn(|i| pixel(M * th + i, M * tw + j));
                mix(&a_mat, dy, &mut scratch[j * c..], M * c, c);
            }
            // dM[a][b] = Σ_j A[b][j] z[a][j].
            for a in 0..A {
                let z = std::array::from_fn(|j| &scratch[(a * M + j) * c..][..c]);
                let out = &mut dm[A * a * position_stride + t * c..];
                mix(&a_mat, z, out, position_stride, c);
            }
        }
    }
}

/// Weight gradient for a geometry where [`applies`] holds: `[C_out, C_in, 3, 3]`, summed over
/// the batch. The forward pass is linear in `U = G g Gᵀ`, so `dU[ξ] = Σ_tiles V[ξ]ᵀ · dM[ξ]`
/// (α² GEMMs with the tiles as the summed axis) and `dW = Gᵀ dU G`.
///
/// Each thread sums one contiguous share of the batch; the shares are added in order, so the
/// result does not depend on scheduling.
pub(crate) fn weight_backward(tile: &Tile, g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "winograd: not a 3×3, stride 1, padding 1 convolution"
    );
    assert_eq!(x.len(), g.batch * g.in_image(), "winograd: x length");
    assert_eq!(grad.len(), g.batch * g.out_image(), "winograd: grad length");
    let (positions, alpha, plane) = (tile.positions(), tile.alpha(), g.out_plane());
    let tiles_per_image = Grid::new(g, tile).tiles();
    let group = TARGET_TILES.div_ceil(tiles_per_image).max(1);
    let per_share = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let pair = g.c_out * g.c_in;
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_share * g.in_image())
        .zip(grad.par_chunks(per_share * g.out_image()))
        .map(|(x_s, grad_s)| {
            let images_in_share = x_s.len() / g.in_image();
            let max_tiles = group.min(images_in_share) * tiles_per_image;
            let mut v = vec![0.0f32; positions * max_tiles * g.c_in];
            let mut dm = vec![0.0f32; positions * max_tiles * g.c_out];
            // dU[ξ] transposed: element (co, ci) at ci·C_out + co.
            let mut du_t = vec![0.0f32; positions * pair];
            let mut hwc = vec![0.0f32; plane * g.c_in.max(g.c_out)];
            let mut scratch = vec![0.0f32; alpha * alpha * g.c_in.max(g.c_out)];
            let zeros = vec![0.0f32; g.c_in.max(g.c_out)];
            let groups = x_s
                .chunks(group * g.in_image())
                .zip(grad_s.chunks(group * g.out_image()));
            for (k, (x_g, grad_g)) in groups.enumerate() {
                let tiles = (x_g.len() / g.in_image()) * tiles_per_image;
                let images = x_g.chunks(g.in_image()).zip(grad_g.chunks(g.out_image()));
                for (i, (image, grad_b)) in images.enumerate() {
                    let offset = i * tiles_per_image;
                    let buffers = (&mut hwc[..], &mut v[..], &mut scratch[..]);
                    transform_image(tile, g, image, buffers, tiles, offset, &zeros);
                    let grad_hwc = &mut hwc[..plane * g.c_out];
                    transpose_into(grad_b, g.c_out, plane, grad_hwc);
                    let (dm, zeros, scratch) = (&mut dm[..], &zeros[..], &mut scratch[..]);
                    vectorised(
                        #[inline(always)]
                        || match tile.m {
                            2 => transform_output_gradient::<2, 4>(
                                tile, g, grad_hwc, dm, tiles, offset, zeros, scratch,
                            ),
                            _ => transform_output_gradient::<4, 6>(
                                tile, g, grad_hwc, dm, tiles, offset, zeros, scratch,
                            ),
                        },
                    );
                }
                for xi in 0..positions {
                    let v_xi = &v[xi * tiles * g.c_in..][..tiles * g.c_in];
                    let dm_xi = &dm[xi * tiles * g.c_out..][..tiles * g.c_out];
                    let du_xi = &mut du_t[xi * pair..][..pair];
                    // SAFETY: V[ξ]ᵀ is [C_in, tiles] and dM[ξ] [tiles, C_out].
                    unsafe {
                        matmul(
                            g.c_in,
                            g.c_out,
                            tiles,
                            du_xi,
                            k > 0,
                            Mat::transposed(v_xi, g.c_in),
                            Mat::rows(dm_xi, g.c_out),
                        );
                    }
                }
            }
            du_t
        })
        .collect();
    let du_t = sum_in_order(partials, positions * pair);
    transform_weight_gradient(tile, &du_t, g.c_out, g.c_in)
}

/// Input gradient for a geometry where [`applies`] holds: `[B, C_in, H, W]` from `grad`
/// (`[B, C_out, H, W]`). It is the forward convolution of `grad` with
/// `W'[ci][co][kh][kw] = W[co][ci][2 − kh][2 − kw]`.
pub(crate) fn x_backward(tile: &Tile, g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    assert!(
        applies(g),
        "winograd: not a 3×3, stride 1, padding 1 convolution"
    );
    let mut flipped = zeroed(weight.len());
    flipped
        .par_chunks_mut(g.c_out * 9)
        .enumerate()
        .for_each(|(ci, flipped_ci)| {
            for (co, dst) in flipped_ci.chunks_exact_mut(9).enumerate() {
                let src = &weight[(co * g.c_in + ci) * 9..][..9];
                for (k, value) in src.iter().enumerate() {
                    dst[8 - k] = *value;
                }
            }
        });
    let transposed = ConvGeometry::new(
        [g.batch, g.c_out, g.height, g.width],
        [g.c_in, g.c_out, 3, 3],
        1,
        1,
    )
    .expect("a 3×3, stride 1, padding 1 geometry transposes to another");
    forward(tile, &transposed, grad, &flipped, None)
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
    /// divide into thread shares or tile groups, the UNet's 8×8 shape, and one with as many input
    /// channels as the UNet's (the rounding error grows with the length of the sums).
    const CASES: [(usize, usize, usize, usize, usize); 6] = [
        (2, 128, 16, 16, 16),
        (3, 4, 5, 6, 5),
        (1, 2, 3, 1, 1),
        (5, 3, 2, 7, 9),
        (2, 6, 4, 8, 8),
        (17, 3, 3, 8, 8),
    ];

    /// Forward, input gradient and weight gradient of both tiles against the im2col paths.
    #[test]
    fn every_pass_matches_im2col() {
        for (b, c_in, c_out, h, w) in CASES {
            let g = ConvGeometry::new([b, c_in, h, w], [c_out, c_in, 3, 3], 1, 1).unwrap();
            let x = values(b * g.in_image(), 1);
            let weight = values(c_out * c_in * 9, 2);
            let bias = values(c_out, 3);
            let grad = values(b * g.out_image(), 4);
            let forward_ref = im2col_forward(&g, &x, &weight, Some(&bias));
            let dx_ref = im2col_x_backward(&g, &weight, &grad);
            let dw_ref = im2col_weight_backward(&g, &x, &grad);
            for tile in [&F2, &F4] {
                let case = format!("F{} {b}x{c_in}->{c_out} {h}x{w}", tile.m);
                let fast = forward(tile, &g, &x, &weight, Some(&bias));
                assert_close(&fast, &forward_ref, &format!("forward {case}"));
                let fast = x_backward(tile, &g, &weight, &grad);
                assert_close(&fast, &dx_ref, &format!("dx {case}"));
                let fast = weight_backward(tile, &g, &x, &grad);
                assert_close(&fast, &dw_ref, &format!("dW {case}"));
            }
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
