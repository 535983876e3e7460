#!/usr/bin/env python3
"""Golden values for crates/oxidiff-train/src/eval/frechet.rs (FD-oxidiff statistics).

Set up once and run from the repository root:

    /opt/refenv/bin/python tools/reference/frechet.py   (venv set-up in tools/reference/README.md)

Generated with Python 3.11.7, numpy 2.4.6, scipy 1.17.1. It prints one JSON object; the numbers
are pasted into crates/oxidiff-train/tests/frechet.rs.

- Fréchet distance: the standard formula from the equation (Dowson & Landau 1982; Heusel et al.
  2017 eq. 6), evaluated the way pytorch-fid's `calculate_frechet_distance` does (scipy
  `sqrtm` of the non-symmetric product Σ₁Σ₂, real part, eps·I retry if not finite), with the
  mean and covariance taken in float64 from the float32 features. This is a distance between
  feature sets of our own network ("FD-oxidiff"), not FID.
- Improved precision / recall (Kynkäänniemi et al. 2019) with plain numpy from the definition.
- `fd_svd` is a more accurate float64 evaluation of the same distance: the eigenvalues of
  Σ₁^{1/2}Σ₂Σ₁^{1/2} are the squared singular values of X₁X₂ᵀ / √((n₁−1)(n₂−1)) for the centred
  data matrices X₁, X₂, so tr(·^{1/2}) is that matrix's nuclear norm, with no √ of rounding-level
  eigenvalues. For rank_deficient_64 it agrees with a 40-digit mpmath evaluation of the same
  formula (11.566120003170321942…) to 1e-16; `scipy_rel_err` is scipy's distance from it.
- `fd_self` is scipy's FD of set A with itself (exactly 0 in exact arithmetic).
- `pr_min_margin` is the smallest |d − r| / r over every (sample, ball) comparison: well above
  float64 rounding, so no comparison is a tie and the counts are unambiguous.

Inputs are not random: every feature is a closed-form expression in (i, j), evaluated with
Python's `math` (the C library, as Rust's f64::sin/cos are) in float64 and then rounded to
float32, so the Rust test rebuilds bit-identical inputs. Keep `feature` in sync with the test.
"""

import json
import math

import numpy as np
from scipy import linalg

K = 3


def feature(i, j, a, c, scale, shift):
    # Three incommensurate oscillations per component, so the columns are far from collinear
    # and the covariance is full rank whenever n > dim.
    v = (
        math.sin(a * i + 1.3 * j)
        + 0.5 * math.sin(c * i * (j + 1) + 0.7)
        + 0.25 * math.cos(2.1 * i * j + 0.5)
    )
    return scale * v + shift * math.cos(0.9 * j)


def features(n, dim, offset, a, c, scale, shift):
    rows = [[feature(i + offset, j, a, c, scale, shift) for j in range(dim)] for i in range(n)]
    return np.array(rows, dtype=np.float64).astype(np.float32)


CASES = {
    # name: (set A params, set B params); params = (n, dim, offset, a, c, scale, shift)
    "small_16": ((200, 16, 0, 0.37, 0.131, 1.0, 0.0), (150, 16, 500, 0.41, 0.173, 1.2, 0.3)),
    "wide_64": ((300, 64, 0, 0.37, 0.131, 1.0, 0.0), (260, 64, 1000, 0.29, 0.119, 0.9, 0.2)),
    # n < dim: both covariances are singular (rank ≤ n − 1), so Σ₁Σ₂ has many zero eigenvalues.
    "rank_deficient_64": ((40, 64, 0, 0.37, 0.131, 1.0, 0.0), (50, 64, 2000, 0.43, 0.157, 1.1, 0.25)),
}


def stats(x):
    x = x.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_scipy(mu1, s1, mu2, s2, eps=1e-6):
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_svd(xa, xb):
    xa = xa.astype(np.float64)
    xb = xb.astype(np.float64)
    ca = xa - xa.mean(axis=0)
    cb = xb - xb.mean(axis=0)
    na, nb = len(xa), len(xb)
    tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt((na - 1) * (nb - 1))
    diff = xa.mean(axis=0) - xb.mean(axis=0)
    tr = (ca**2).sum() / (na - 1) + (cb**2).sum() / (nb - 1)
    return float(diff.dot(diff) + tr - 2 * tr_sqrt)


def sq_dists(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


def knn_radii_sq(x, k):
    d = sq_dists(x, x)
    np.fill_diagonal(d, np.inf)  # k excludes the point itself
    return np.sort(d, axis=1)[:, k - 1]


def coverage(manifold, samples, k):
    """Fraction of `samples` inside at least one k-NN ball of `manifold`, and the tie margin."""
    r = knn_radii_sq(manifold, k)
    d = sq_dists(samples, manifold)  # [samples, manifold]
    inside = (d <= r[None, :]).any(axis=1)
    # Compare distances, not squares, for the margin: |d − r| / r.
    margin = np.abs(np.sqrt(d) - np.sqrt(r)[None, :]) / np.sqrt(r)[None, :]
    return float(inside.mean()), int(inside.sum()), float(margin.min())


def main():
    out = {"k": K, "cases": {}}
    for name, (pa, pb) in CASES.items():
        xa = features(*pa)
        xb = features(*pb)
        mu1, s1 = stats(xa)
        mu2, s2 = stats(xb)
        precision, p_count, p_margin = coverage(xa, xb, K)  # generated = B inside real = A
        recall, r_count, r_margin = coverage(xb, xa, K)
        fd = frechet_scipy(mu1, s1, mu2, s2)
        fd_svd = frechet_svd(xa, xb)
        out["cases"][name] = {
            "fd": fd,
            "fd_svd": fd_svd,
            "scipy_rel_err": abs(fd - fd_svd) / fd_svd,
            "fd_self": frechet_scipy(mu1, s1, mu1, s1),
            "rank": [int(np.linalg.matrix_rank(s1)), int(np.linalg.matrix_rank(s2))],
            "precision": precision,
            "precision_count": p_count,
            "recall": recall,
            "recall_count": r_count,
            "pr_min_margin": min(p_margin, r_margin),
            "mean_a_0": float(mu1[0]),
            "cov_a_00": float(s1[0, 0]),
            "cov_a_01": float(s1[0, 1]),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
