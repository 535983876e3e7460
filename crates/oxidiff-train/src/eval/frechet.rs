//! Statistics behind FD-oxidiff and k-NN precision/recall.
//!
//! FD-oxidiff is the Fréchet distance between Gaussians fitted to features of a small network
//! we train ourselves. It is computed exactly like FID but on different features, so its numbers
//! are not comparable to published FID values and must never be reported as FID.
//!
//! Everything here is std-only f64 and never panics: bad input yields a [`StatsError`].
//! Golden values: `tools/reference/frechet.py`, checked by `tests/frechet.rs`.

use std::fmt;

/// What is wrong with the input to the statistics in this module.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsError {
    /// The feature dimension is zero.
    ZeroDim,
    /// A flat `[n, dim]` buffer whose length is not a multiple of `dim`.
    RaggedFeatures { len: usize, dim: usize },
    /// Fewer feature vectors than the statistic needs.
    NotEnoughSamples { needed: usize, got: usize },
    /// Two feature sets (or statistics) of different dimensions.
    DimMismatch { a: usize, b: usize },
    /// A NaN or infinity in the features; `sample` is the row, `component` the column.
    NonFinite { sample: usize, component: usize },
    /// A NaN or infinity in a [`FeatureStats`] mean or covariance.
    NonFiniteStats,
    /// A [`FeatureStats`] whose `mean` / `cov` lengths do not match its `dim`.
    InconsistentStats {
        dim: usize,
        mean_len: usize,
        cov_len: usize,
    },
    /// `k = 0` for precision/recall.
    ZeroK,
    /// An intermediate exceeded the f64 range (statistics of astronomically large features).
    Overflow,
    /// The Jacobi eigenvalue iteration did not converge (not expected for finite input).
    NoConvergence { sweeps: usize },
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroDim => write!(f, "feature dimension must be at least 1, got 0"),
            Self::RaggedFeatures { len, dim } => write!(
                f,
                "feature buffer of length {len} is not a whole number of vectors of dimension {dim}"
            ),
            Self::NotEnoughSamples { needed, got } => {
                write!(f, "need at least {needed} feature vectors, got {got}")
            }
            Self::DimMismatch { a, b } => {
                write!(f, "feature vectors have different lengths: {a} and {b}")
            }
            Self::NonFinite { sample, component } => write!(
                f,
                "non-finite feature value (sample {sample}, component {component})"
            ),
            Self::NonFiniteStats => write!(f, "non-finite value in feature mean or covariance"),
            Self::InconsistentStats {
                dim,
                mean_len,
                cov_len,
            } => write!(
                f,
                "feature statistics of dimension {dim} need a mean of length {dim} and a \
                 covariance of length {}, got {mean_len} and {cov_len}",
                dim.saturating_mul(*dim)
            ),
            Self::Overflow => write!(
                f,
                "Fréchet distance overflowed f64: feature statistics are too large"
            ),
            Self::ZeroK => write!(f, "k for k-NN precision/recall must be at least 1, got 0"),
            Self::NoConvergence { sweeps } => write!(
                f,
                "symmetric eigenvalue iteration did not converge in {sweeps} sweeps"
            ),
        }
    }
}

impl std::error::Error for StatsError {}

/// Mean and covariance of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub dim: usize,
    pub count: usize,
    pub mean: Vec<f64>,
    /// row-major [dim, dim], unbiased (n − 1)
    pub cov: Vec<f64>,
}

/// Checks a flat `[n, dim]` buffer and returns `n`.
fn rows(features: &[f32], dim: usize) -> Result<usize, StatsError> {
    if dim == 0 {
        return Err(StatsError::ZeroDim);
    }
    if !features.len().is_multiple_of(dim) {
        return Err(StatsError::RaggedFeatures {
            len: features.len(),
            dim,
        });
    }
    if let Some(pos) = features.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            sample: pos / dim,
            component: pos % dim,
        });
    }
    Ok(features.len() / dim)
}

impl FeatureStats {
    /// `features`: `[n, dim]` row-major f32 (as a network outputs them).
    pub fn from_features(features: &[f32], dim: usize) -> Result<Self, StatsError> {
        let n = rows(features, dim)?;
        if n < 2 {
            // The unbiased covariance divides by n − 1.
            return Err(StatsError::NotEnoughSamples { needed: 2, got: n });
        }
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let inv_n = 1.0 / n as f64;
        mean.iter_mut().for_each(|m| *m *= inv_n);

        // Two-pass (centre first): the one-pass Σxxᵀ − nμμᵀ cancels catastrophically when
        // |μ| ≫ σ, which network features with a large offset easily have.
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), &m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = f64::from(x) - m;
            }
            // Upper triangle only; mirrored below.
            for a in 0..dim {
                let ca = centred[a];
                let cov_row = &mut cov[a * dim + a..(a + 1) * dim];
                for (acc, &cb) in cov_row.iter_mut().zip(&centred[a..]) {
                    *acc += ca * cb;
                }
            }
        }
        let inv_n1 = 1.0 / (n - 1) as f64;
        for a in 0..dim {
            for b in a..dim {
                let v = cov[a * dim + b] * inv_n1;
                cov[a * dim + b] = v;
                cov[b * dim + a] = v;
            }
        }
        Ok(Self {
            dim,
            count: n,
            mean,
            cov,
        })
    }

    fn check(&self) -> Result<(), StatsError> {
        if self.dim == 0 {
            return Err(StatsError::ZeroDim);
        }
        if self.mean.len() != self.dim || Some(self.cov.len()) != self.dim.checked_mul(self.dim) {
            return Err(StatsError::InconsistentStats {
                dim: self.dim,
                mean_len: self.mean.len(),
                cov_len: self.cov.len(),
            });
        }
        if self.mean.iter().chain(&self.cov).any(|v| !v.is_finite()) {
            return Err(StatsError::NonFiniteStats);
        }
        Ok(())
    }
}

/// Fréchet distance between two Gaussians (Dowson & Landau 1982; Heusel et al. 2017 eq. 6):
/// ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}).
///
/// The result is clamped at 0: it is a squared Wasserstein-2 distance, so a negative value can
/// only be rounding (e.g. a set against itself).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64, StatsError> {
    frechet_unclamped(a, b).map(|fd| fd.max(0.0))
}

fn frechet_unclamped(a: &FeatureStats, b: &FeatureStats) -> Result<f64, StatsError> {
    a.check()?;
    b.check()?;
    if a.dim != b.dim {
        return Err(StatsError::DimMismatch { a: a.dim, b: b.dim });
    }
    let n = a.dim;
    let mean_sq: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    let (tr_a, tr_b) = (trace(&a.cov), trace(&b.cov));

    // tr((Σ₁Σ₂)^{1/2}) = tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}) (similar matrices, Heusel et al.
    // 2017 eq. 6); the symmetric form keeps everything real and PSD, unlike sqrtm(Σ₁Σ₂).
    let mut s = symmetrised(&a.cov, n);
    let mut vecs = vec![0.0f64; n * n];
    jacobi_eigen(&mut s, n, Some(&mut vecs))?;
    // Σ₁^{1/2} = V D Vᵀ with D = diag(√λ), λ cut to 0 at rounding level (`sqrt_eigenvalues`).
    // M = Σ₁^{1/2} Σ₂ Σ₁^{1/2} = V (D Vᵀ Σ₂ V D) Vᵀ is orthogonally similar to D Vᵀ Σ₂ V D,
    // so the latter has the same eigenvalues and saves two n³ products.
    let sqrt_l = sqrt_eigenvalues(&s, n);
    let b_sym = symmetrised(&b.cov, n);
    // T = Σ₂ V
    let mut t = vec![0.0f64; n * n];
    matmul(&b_sym, &vecs, &mut t, n);
    // M = D Vᵀ T D, symmetric PSD.
    let mut m = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let mut acc = 0.0;
            for k in 0..n {
                acc += vecs[k * n + i] * t[k * n + j];
            }
            let v = sqrt_l[i] * acc * sqrt_l[j];
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::Overflow);
    }
    jacobi_eigen(&mut m, n, None)?;
    let tr_sqrt: f64 = sqrt_eigenvalues(&m, n).iter().sum();

    let fd = mean_sq + tr_a + tr_b - 2.0 * tr_sqrt;
    if !fd.is_finite() {
        return Err(StatsError::Overflow);
    }
    Ok(fd)
}

/// √λ for the eigenvalues on the diagonal of a converged Jacobi matrix of a PSD matrix.
///
/// Eigenvalues at or below n·ε·λ_max (numpy's `matrix_rank` cut-off) count as 0, not only the
/// negative ones: they are indistinguishable from the ±ε‖A‖ rounding in A, and √ would turn
/// that noise into ~√ε per zero mode — 3e-7 relative error in FD for a rank-deficient
/// covariance (n < dim), where scipy's sqrtm sits. Dropping a genuine λ that small costs at
/// most the same √(nελ_max), so the cut never makes the bound worse.
fn sqrt_eigenvalues(d: &[f64], n: usize) -> Vec<f64> {
    let lmax = (0..n).fold(0.0f64, |m, i| m.max(d[i * n + i].abs()));
    let cut = n as f64 * f64::EPSILON * lmax;
    (0..n)
        .map(|i| d[i * n + i])
        .map(|l| if l <= cut { 0.0 } else { l.sqrt() })
        .collect()
}

/// (A + Aᵀ) / 2: user-built covariances may be asymmetric by rounding; Jacobi reads both halves.
fn symmetrised(m: &[f64], n: usize) -> Vec<f64> {
    let mut s = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = 0.5 * (m[i * n + j] + m[j * n + i]);
        }
    }
    s
}

/// `out = a · b` for row-major `n × n` matrices.
fn matmul(a: &[f64], b: &[f64], out: &mut [f64], n: usize) {
    out.fill(0.0);
    for i in 0..n {
        let out_row = &mut out[i * n..(i + 1) * n];
        for k in 0..n {
            let aik = a[i * n + k];
            for (o, &bkj) in out_row.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *o += aik * bkj;
            }
        }
    }
}

const MAX_SWEEPS: usize = 100;

/// Cyclic Jacobi eigenvalue iteration for a symmetric row-major `n × n` matrix (Golub & Van
/// Loan, Matrix Computations, 4th ed., §8.5). On return the diagonal of `a` holds the
/// eigenvalues and, if given, `vecs` holds the eigenvectors as columns (same order).
fn jacobi_eigen(a: &mut [f64], n: usize, mut vecs: Option<&mut [f64]>) -> Result<(), StatsError> {
    if let Some(v) = vecs.as_deref_mut() {
        v.fill(0.0);
        for i in 0..n {
            v[i * n + i] = 1.0;
        }
    }
    // Scaled Frobenius norm: squaring entries above ~1e154 would overflow to inf and turn
    // every threshold below into "skip".
    let max_abs = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if !max_abs.is_finite() {
        return Err(StatsError::Overflow);
    }
    if max_abs == 0.0 {
        return Ok(());
    }
    let fro = max_abs
        * a.iter()
            .map(|x| (x / max_abs) * (x / max_abs))
            .sum::<f64>()
            .sqrt();
    // An off-diagonal this small moves any eigenvalue by at most n·ε²‖A‖ (Weyl), far below the
    // ε‖A‖ rounding already in A; skipping it lets the sweeps terminate on (near-)zero blocks.
    let floor = f64::EPSILON * f64::EPSILON * fro;
    for _sweep in 0..MAX_SWEEPS {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                // Relative criterion (Demmel & Veselić 1992): rotating would change neither
                // diagonal entry beyond rounding.
                if apq.abs() <= floor
                    || apq.abs() <= f64::EPSILON * app.abs().sqrt() * aqq.abs().sqrt()
                {
                    continue;
                }
                rotated = true;
                // Smaller root t of t² + 2θt − 1 = 0 (GVL Alg. 8.5.1, sym.schur2); hypot
                // avoids overflowing θ².
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    let new_p = c * akp - s * akq;
                    let new_q = s * akp + c * akq;
                    a[k * n + p] = new_p;
                    a[p * n + k] = new_p;
                    a[k * n + q] = new_q;
                    a[q * n + k] = new_q;
                }
                a[p * n + p] = app - t * apq;
                a[q * n + q] = aqq + t * apq;
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                if let Some(v) = vecs.as_deref_mut() {
                    for k in 0..n {
                        let vkp = v[k * n + p];
                        let vkq = v[k * n + q];
                        v[k * n + p] = c * vkp - s * vkq;
                        v[k * n + q] = s * vkp + c * vkq;
                    }
                }
            }
        }
        if !rotated {
            return Ok(());
        }
    }
    // Cyclic Jacobi converges quadratically; accept if what is left is at rounding level.
    let off: f64 = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| a[i * n + j] * a[i * n + j])
        .sum::<f64>()
        .sqrt();
    if off <= f64::EPSILON * fro {
        Ok(())
    } else {
        Err(StatsError::NoConvergence { sweeps: MAX_SWEEPS })
    }
}

/// Improved precision and recall (Kynkäänniemi et al. 2019).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// Improved precision and recall (Kynkäänniemi et al. 2019): each real sample's k-NN radius
/// among the real set defines the real manifold; precision = fraction of generated samples
/// inside at least one real ball; recall = the same with the roles swapped. Euclidean
/// distances; k excludes the point itself.
///
/// `real`, `generated`: `[n, dim]` row-major; each set needs more than `k` vectors.
/// Cost O(n²·dim).
pub fn precision_recall(
    real: &[f32],
    generated: &[f32],
    dim: usize,
    k: usize,
) -> Result<PrecisionRecall, StatsError> {
    let n_real = rows(real, dim)?;
    let n_gen = rows(generated, dim)?;
    if k == 0 {
        return Err(StatsError::ZeroK);
    }
    let needed = k.saturating_add(1);
    for n in [n_real, n_gen] {
        if n < needed {
            return Err(StatsError::NotEnoughSamples { needed, got: n });
        }
    }
    // Squared distances throughout: √ is monotone, so the ball tests are the same.
    let real_radii = knn_radii_sq(real, dim, k);
    let gen_radii = knn_radii_sq(generated, dim, k);
    Ok(PrecisionRecall {
        // Kynkäänniemi et al. 2019 eq. 1–2: precision = mean over φ_g of f(φ_g, Φ_r).
        precision: coverage(real, &real_radii, generated, dim),
        recall: coverage(generated, &gen_radii, real, dim),
    })
}

fn dist_sq(a: &[f32], b: &[f32]) -> f64 {
    // Eight independent accumulators: a single running sum is latency-bound and cannot be
    // vectorised (f64 addition is not associative); this is ~5× faster at n = 10⁴, dim = 128.
    let mut acc = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    for (ca, cb) in a8.zip(b8) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            let d = f64::from(x) - f64::from(y);
            *s += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Squared distance from each vector to its k-th nearest other vector in the same set.
fn knn_radii_sq(x: &[f32], dim: usize, k: usize) -> Vec<f64> {
    let n = x.len() / dim;
    // best[i*k..(i+1)*k]: the k smallest squared distances seen so far, ascending.
    let mut best = vec![f64::INFINITY; n * k];
    let insert = |row: &mut [f64], d: f64| {
        if d < row[k - 1] {
            let mut pos = k - 1;
            while pos > 0 && row[pos - 1] > d {
                row[pos] = row[pos - 1];
                pos -= 1;
            }
            row[pos] = d;
        }
    };
    // Each pair once: d(i, j) updates both i's and j's neighbour lists.
    for i in 0..n {
        let xi = &x[i * dim..(i + 1) * dim];
        for j in i + 1..n {
            let d = dist_sq(xi, &x[j * dim..(j + 1) * dim]);
            insert(&mut best[i * k..(i + 1) * k], d);
            insert(&mut best[j * k..(j + 1) * k], d);
        }
    }
    best.chunks_exact(k).map(|row| row[k - 1]).collect()
}

/// Fraction of `samples` within the k-NN ball (squared radius `radii_sq`) of some `manifold`
/// vector; the ball is closed (≤), as in the paper.
fn coverage(manifold: &[f32], radii_sq: &[f64], samples: &[f32], dim: usize) -> f64 {
    let n = samples.len() / dim;
    let inside = samples
        .chunks_exact(dim)
        .filter(|s| {
            manifold
                .chunks_exact(dim)
                .zip(radii_sq)
                .any(|(m, &r)| dist_sq(s, m) <= r)
        })
        .count();
    inside as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1), from the project's one SplitMix64.
    struct Rng(oxidiff_data::SplitMix64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Self(oxidiff_data::SplitMix64::new(seed))
        }
        fn next(&mut self) -> f64 {
            (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
        fn set(&mut self, n: usize, dim: usize) -> Vec<f32> {
            (0..n * dim).map(|_| self.next() as f32).collect()
        }
    }

    /// Stats of an exact Gaussian with diagonal covariance (no sampling noise).
    fn diag_stats(mean: &[f64], sigma: &[f64]) -> FeatureStats {
        let n = mean.len();
        let mut cov = vec![0.0; n * n];
        for i in 0..n {
            cov[i * n + i] = sigma[i] * sigma[i];
        }
        FeatureStats {
            dim: n,
            count: 100,
            mean: mean.to_vec(),
            cov,
        }
    }

    #[test]
    fn mean_and_unbiased_covariance() {
        // Rows (1, 2), (3, 6), (5, 7): mean (3, 5); cov [[4, 5], [5, 7]] with n − 1 = 2.
        let s = FeatureStats::from_features(&[1.0, 2.0, 3.0, 6.0, 5.0, 7.0], 2).unwrap();
        assert_eq!((s.dim, s.count), (2, 3));
        assert_eq!(s.mean, vec![3.0, 5.0]);
        assert_eq!(s.cov, vec![4.0, 5.0, 5.0, 7.0]);
    }

    #[test]
    fn fd_of_a_set_with_itself_is_zero() {
        for (n, dim) in [(500, 8), (300, 64), (40, 64)] {
            let x = Rng::new(n as u64).set(n, dim);
            let s = FeatureStats::from_features(&x, dim).unwrap();
            // Unclamped, so a large negative rounding error would show too.
            let fd = frechet_unclamped(&s, &s).unwrap();
            let scale: f64 = (0..dim).map(|i| s.cov[i * dim + i]).sum();
            // Also for 40 < 64 (rank-deficient): the rank cut-off keeps √ of rounding noise
            // (≈ √ε per zero mode, ~1e-6 in total) out of the trace.
            assert!(
                fd.abs() < 1e-12 * scale,
                "n={n} dim={dim}: fd={fd} scale={scale}"
            );
        }
    }

    #[test]
    fn fd_matches_diagonal_closed_form() {
        // Commuting covariances: tr((Σ₁Σ₂)^{1/2}) = Σ σ₁σ₂, so FD = Σ Δμ² + Σ (σ₁ − σ₂)².
        let mu1 = [0.0, 1.0, -2.0, 0.5, 3.0];
        let mu2 = [0.3, 0.9, -1.0, 0.5, 2.0];
        let s1 = [1.0, 2.0, 0.5, 0.1, 3.0];
        let s2 = [1.5, 0.2, 0.5, 0.0, 2.5];
        let expected: f64 = mu1
            .iter()
            .zip(&mu2)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            + s1.iter()
                .zip(&s2)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>();
        let fd = frechet_distance(&diag_stats(&mu1, &s1), &diag_stats(&mu2, &s2)).unwrap();
        assert!(
            (fd - expected).abs() < 1e-12 * expected,
            "{fd} vs {expected}"
        );

        // Rotating both by the same orthogonal matrix must not change the distance.
        let (c, s) = (0.6f64, 0.8f64);
        let rotate = |st: &FeatureStats| {
            let n = st.dim;
            let mut r = vec![0.0; n * n];
            for i in 0..n {
                r[i * n + i] = 1.0;
            }
            r[0] = c;
            r[1] = -s;
            r[n] = s;
            r[n + 1] = c;
            let mut rc = vec![0.0; n * n];
            matmul(&r, &st.cov, &mut rc, n);
            let rt: Vec<f64> = (0..n * n).map(|i| r[(i % n) * n + i / n]).collect();
            let mut cov = vec![0.0; n * n];
            matmul(&rc, &rt, &mut cov, n);
            let mean = (0..n)
                .map(|i| (0..n).map(|j| r[i * n + j] * st.mean[j]).sum())
                .collect();
            FeatureStats {
                dim: n,
                count: st.count,
                mean,
                cov,
            }
        };
        let fd_rot = frechet_distance(
            &rotate(&diag_stats(&mu1, &s1)),
            &rotate(&diag_stats(&mu2, &s2)),
        )
        .unwrap();
        assert!(
            (fd_rot - expected).abs() < 1e-12 * expected,
            "{fd_rot} vs {expected}"
        );
    }

    #[test]
    fn fd_is_symmetric() {
        let mut rng = Rng::new(7);
        let a = FeatureStats::from_features(&rng.set(200, 12), 12).unwrap();
        let mut b_feats = rng.set(150, 12);
        b_feats
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 1.3 * *v + (i % 12) as f32 * 0.1);
        let b = FeatureStats::from_features(&b_feats, 12).unwrap();
        let ab = frechet_distance(&a, &b).unwrap();
        let ba = frechet_distance(&b, &a).unwrap();
        assert!(ab > 0.1);
        assert!((ab - ba).abs() < 1e-12 * ab, "{ab} vs {ba}");
    }

    #[test]
    fn jacobi_reconstructs_matrix() {
        let n = 20;
        let mut rng = Rng::new(3);
        let g: Vec<f64> = (0..n * n).map(|_| rng.next()).collect();
        let a = symmetrised(&g, n);
        let mut d = a.clone();
        let mut v = vec![0.0; n * n];
        jacobi_eigen(&mut d, n, Some(&mut v)).unwrap();
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n)
                    .map(|k| v[i * n + k] * d[k * n + k] * v[j * n + k])
                    .sum();
                assert!(
                    (r - a[i * n + j]).abs() < 1e-13,
                    "({i},{j}): {r} vs {}",
                    a[i * n + j]
                );
                if i != j {
                    // Left only where negligible next to the diagonal (relative criterion).
                    assert!(d[i * n + j].abs() < 1e-15, "({i},{j}): {}", d[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn errors_for_bad_input() {
        use StatsError::*;
        let err = |f: &[f32], d| FeatureStats::from_features(f, d).unwrap_err();
        assert_eq!(err(&[1.0; 16], 16), NotEnoughSamples { needed: 2, got: 1 });
        assert_eq!(
            err(&[1.0; 16], 16).to_string(),
            "need at least 2 feature vectors, got 1"
        );
        assert_eq!(err(&[], 4), NotEnoughSamples { needed: 2, got: 0 });
        assert_eq!(err(&[1.0; 4], 0), ZeroDim);
        assert_eq!(err(&[1.0; 10], 4), RaggedFeatures { len: 10, dim: 4 });
        let mut bad = vec![0.5f32; 12];
        bad[7] = f32::NAN;
        assert_eq!(
            err(&bad, 4),
            NonFinite {
                sample: 1,
                component: 3
            }
        );
        assert!(
            err(&bad, 4)
                .to_string()
                .starts_with("non-finite feature value")
        );
        bad[7] = f32::INFINITY;
        assert_eq!(
            err(&bad, 4),
            NonFinite {
                sample: 1,
                component: 3
            }
        );

        let mut rng = Rng::new(1);
        let a = FeatureStats::from_features(&rng.set(20, 16), 16).unwrap();
        let b = FeatureStats::from_features(&rng.set(20, 12), 12).unwrap();
        assert_eq!(frechet_distance(&a, &b), Err(DimMismatch { a: 16, b: 12 }));
        assert_eq!(
            DimMismatch { a: 16, b: 12 }.to_string(),
            "feature vectors have different lengths: 16 and 12"
        );
        let mut broken = a.clone();
        broken.cov.pop();
        assert!(matches!(
            frechet_distance(&broken, &a),
            Err(InconsistentStats { .. })
        ));
        let mut broken = a.clone();
        broken.dim = usize::MAX;
        assert!(matches!(
            frechet_distance(&broken, &a),
            Err(InconsistentStats { .. })
        ));
        let mut broken = a.clone();
        broken.mean[3] = f64::NAN;
        assert_eq!(frechet_distance(&a, &broken), Err(NonFiniteStats));
        let mut huge = a.clone();
        huge.cov.iter_mut().for_each(|v| *v *= 1e300);
        // Overflows to inf somewhere; must be an error, not a panic or a NaN.
        assert_eq!(frechet_distance(&huge, &huge), Err(Overflow));
        // Large but representable: the scaled norm keeps Jacobi working (FD scales like Σ).
        let mut big_a = a.clone();
        let mut big_c = FeatureStats::from_features(&rng.set(30, 16), 16).unwrap();
        let fd_small = frechet_distance(&big_a, &big_c).unwrap();
        for st in [&mut big_a, &mut big_c] {
            st.mean.iter_mut().for_each(|v| *v *= 1e50);
            st.cov.iter_mut().for_each(|v| *v *= 1e100);
        }
        // M's entries reach ~1e100, so ‖M‖²_F alone would overflow.
        let fd_big = frechet_distance(&big_a, &big_c).unwrap();
        assert!(
            (fd_big / 1e100 - fd_small).abs() < 1e-9 * fd_small,
            "{fd_big} vs {fd_small}"
        );

        let x = rng.set(10, 4);
        assert_eq!(precision_recall(&x, &x, 4, 0), Err(ZeroK));
        assert_eq!(
            precision_recall(&x, &x[..12], 4, 3),
            Err(NotEnoughSamples { needed: 4, got: 3 })
        );
        assert_eq!(
            precision_recall(&x, &x[..5], 4, 1),
            Err(RaggedFeatures { len: 5, dim: 4 })
        );
        assert_eq!(precision_recall(&x, &x, 0, 1), Err(ZeroDim));
        assert_eq!(
            precision_recall(&x, &bad, 4, 1),
            Err(NonFinite {
                sample: 1,
                component: 3
            })
        );
    }

    #[test]
    fn degenerate_inputs() {
        // Constant sets: zero covariance, so FD is the squared mean distance alone.
        let a = FeatureStats::from_features(&[1.0, 2.0, 1.0, 2.0, 1.0, 2.0], 2).unwrap();
        let b = FeatureStats::from_features(&[4.0, 6.0, 4.0, 6.0], 2).unwrap();
        assert_eq!(a.cov, vec![0.0; 4]);
        assert_eq!(frechet_distance(&a, &b), Ok(25.0));
        // Duplicates give zero radii; closed balls still contain the duplicates themselves.
        let pr = precision_recall(&[1.0, 1.0, 1.0], &[1.0, 1.0, 5.0], 1, 1).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 2.0 / 3.0,
                recall: 1.0
            }
        );
    }

    #[test]
    fn precision_recall_identical_and_disjoint() {
        let x = Rng::new(11).set(100, 8);
        let pr = precision_recall(&x, &x, 8, 3).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 1.0,
                recall: 1.0
            }
        );

        let far: Vec<f32> = Rng::new(12).set(80, 8).iter().map(|v| v + 100.0).collect();
        let pr = precision_recall(&x, &far, 8, 3).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 0.0,
                recall: 0.0
            }
        );
    }

    #[test]
    fn precision_recall_counts_by_hand() {
        // 1-D real {0, 1, 2, 10}, k = 1: radii 1, 1, 1, 8 → manifold [-1, 3] ∪ [2, 18].
        // Generated {2.5, 20, 30, 31}, k = 1: radii 17.5, 1, 1, 1 → [-15, 20] ∪ [19, 32].
        let real = [0.0f32, 1.0, 2.0, 10.0];
        let generated = [2.5f32, 20.0, 30.0, 31.0];
        let pr = precision_recall(&real, &generated, 1, 1).unwrap();
        // Inside the real manifold: 2.5 only (20 > 18).
        assert_eq!(pr.precision, 0.25);
        // Inside the generated manifold: all four real points (within 17.5 of 2.5).
        assert_eq!(pr.recall, 1.0);
        // Closed balls: a point exactly on a radius counts.
        let pr = precision_recall(&[0.0, 1.0], &[2.0, 50.0], 1, 1).unwrap();
        assert_eq!(pr.precision, 0.5);
    }
}
