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
mod tests;
