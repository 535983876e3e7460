//! Structural similarity (Wang et al. 2004) of an image and its reconstruction, as
//! scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=1, win_size=2r+1)` computes it: pixels mapped from
//! [-1, 1] to [0, 1], local statistics under a normalised 11-tap Gaussian (σ = 1.5, the image
//! reflected at its borders), averaged over the pixels at least r from the border and over the
//! channels; r = 5 (Wang et al.'s 11×11 window) or, for images under 11 pixels, the largest
//! that leaves some.

/// The window's standard deviation.
const SIGMA: f64 = 1.5;
/// Radius of the full window (11×11, scikit-image's `truncate = 3.5`).
const RADIUS: usize = 5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// The window radius for `size`×`size` images: 5, or the largest that leaves one window.
pub fn window_radius(size: usize) -> usize {
    RADIUS.min(size.saturating_sub(1) / 2)
}

/// Mean SSIM of image `a` against `b`, each `[channels, size, size]` flattened in [-1, 1].
pub fn ssim(a: &[f32], b: &[f32], channels: usize, size: usize) -> f64 {
    debug_assert_eq!(a.len(), channels * size * size);
    debug_assert_eq!(a.len(), b.len());
    let r = window_radius(size);
    let kernel: Vec<f64> = {
        let raw: Vec<f64> = (0..=2 * RADIUS)
            .map(|i| {
                let d = i as f64 - RADIUS as f64;
                (-d * d / (2.0 * SIGMA * SIGMA)).exp()
            })
            .collect();
        let sum: f64 = raw.iter().sum();
        raw.iter().map(|v| v / sum).collect()
    };
    let plane = size * size;
    let unit = |v: f32| (f64::from(v) + 1.0) * 0.5;
    let mut total = 0.0;
    for c in 0..channels {
        let x: Vec<f64> = a[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| unit(v))
            .collect();
        let y: Vec<f64> = b[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| unit(v))
            .collect();
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p * q).collect();
        let [mx, my, sxx, syy, sxy] = [&x, &y, &xx, &yy, &xy].map(|p| filter(p, size, &kernel, r));
        let n = mx.len().max(1);
        let mut sum = 0.0;
        for i in 0..mx.len() {
            let (ux, uy) = (mx[i], my[i]);
            let vx = sxx[i] - ux * ux;
            let vy = syy[i] - uy * uy;
            let cov = sxy[i] - ux * uy;
            sum += ((2.0 * ux * uy + C1) * (2.0 * cov + C2))
                / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
        }
        total += sum / n as f64;
    }
    total / channels.max(1) as f64
}

/// scipy's `reflect` border (`d c b a | a b c d | d c b a`) of index `j` on `n` values.
fn reflect(j: isize, n: usize) -> usize {
    let n = n as isize;
    let mut j = j;
    while j < 0 || j >= n {
        j = if j < 0 { -j - 1 } else { 2 * n - j - 1 };
    }
    j as usize
}

/// The separable Gaussian filter of one plane (reflected at the borders), at the pixels at
/// least `crop` from every border: `(size − 2·crop)²` values.
fn filter(plane: &[f64], size: usize, kernel: &[f64], crop: usize) -> Vec<f64> {
    let half = (kernel.len() / 2) as isize;
    let tap = |at: usize, k: usize| reflect(at as isize + k as isize - half, size);
    let mut rows = vec![0.0; size * size];
    for y in 0..size {
        for x in 0..size {
            rows[y * size + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * plane[y * size + tap(x, k)])
                .sum();
        }
    }
    let out = size - 2 * crop;
    let mut result = vec![0.0; out * out];
    for y in 0..out {
        for x in 0..out {
            let (yy, xx) = (y + crop, x + crop);
            result[y * out + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * rows[tap(yy, k) * size + xx])
                .sum();
        }
    }
    result
}
