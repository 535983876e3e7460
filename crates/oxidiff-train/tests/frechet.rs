//! Golden test for FD-oxidiff statistics (`oxidiff_train::eval::frechet_distance`) against numpy/scipy.
//!
//! The golden numbers below were printed by (run from the repository root; Python 3.11.7,
//! numpy 2.4.6, scipy 1.17.1):
//!
//!     /opt/refenv/bin/python tools/reference/frechet.py   (venv set-up in tools/reference/README.md)
//!
//! The inputs are not stored: `feature` / `CASES` below rebuild them with the script's formulas,
//! evaluated in f64 (libm sin/cos, the same operation order as Python) and rounded to f32, so
//! both sides see bit-identical features. Keep the two in sync.

use oxidiff_train::eval::{FeatureStats, frechet_distance, precision_recall};

const K: usize = 3;

/// Same expression, same order of operations as `feature` in tools/reference/frechet.py.
fn feature(i: f64, j: f64, a: f64, c: f64, scale: f64, shift: f64) -> f64 {
    let v = (a * i + 1.3 * j).sin()
        + 0.5 * (c * i * (j + 1.0) + 0.7).sin()
        + 0.25 * (2.1 * i * j + 0.5).cos();
    scale * v + shift * (0.9 * j).cos()
}

/// (n, dim, offset, a, c, scale, shift), as in the script's `CASES`.
type Params = (usize, usize, usize, f64, f64, f64, f64);

fn features((n, dim, offset, a, c, scale, shift): Params) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        for j in 0..dim {
            out.push(feature((i + offset) as f64, j as f64, a, c, scale, shift) as f32);
        }
    }
    out
}

struct Golden {
    name: &'static str,
    a: Params,
    b: Params,
    /// scipy `sqrtm` route (the pytorch-fid formula).
    fd: f64,
    /// Relative tolerance against `fd`; see the comment above `CASES`.
    fd_rel_tol: f64,
    /// The script's SVD route (nuclear norm of X₁X₂ᵀ), accurate to ~1e-15 relative.
    fd_svd: f64,
    precision_count: usize,
    recall_count: usize,
    mean_a_0: f64,
    cov_a_00: f64,
    cov_a_01: f64,
}

// Tolerances against scipy (`fd`). Full rank: scipy is within 1.1e-13 relative of the script's
// more accurate SVD evaluation, so 1e-9 only leaves room for summation order and BLAS.
// Rank-deficient (n < dim): both covariances are singular, so Σ₁Σ₂ has ~25 zero eigenvalues that
// come out of floating point as ±ε‖Σ₁Σ₂‖ noise, and sqrtm turns each into √(ε‖·‖) ~ 1e-8 —
// scipy's FD here is 3.1e-7 relative off the SVD value (and its FD of a set with itself is
// −2.1e-6). 1e-6 relative covers that error of the reference itself, not of ours.
//
// Against `fd_svd`, 1e-11 relative for every case: the Rust code drops eigenvalues below the
// rank cut-off dim·ε·λ_max instead of taking √ of rounding noise, and lands within 1e-15 of
// the SVD value even for the rank-deficient case (measured: 9e-16; full rank: ≤ 5e-14).
const CASES: [Golden; 3] = [
    Golden {
        name: "small_16",
        a: (200, 16, 0, 0.37, 0.131, 1.0, 0.0),
        b: (150, 16, 500, 0.41, 0.173, 1.2, 0.3),
        fd: 1.2574915124966992,
        fd_rel_tol: 1e-9,
        fd_svd: 1.2574915124966317,
        precision_count: 92,
        recall_count: 189,
        mean_a_0: 0.250798074468039,
        cov_a_00: 0.6395350439097223,
        cov_a_01: 0.15820977254106586,
    },
    Golden {
        name: "wide_64",
        a: (300, 64, 0, 0.37, 0.131, 1.0, 0.0),
        b: (260, 64, 1000, 0.29, 0.119, 0.9, 0.2),
        fd: 3.2592940213765473,
        fd_rel_tol: 1e-9,
        fd_svd: 3.259294021376178,
        precision_count: 243,
        recall_count: 187,
        mean_a_0: 0.252324109148855,
        cov_a_00: 0.6395913525806111,
        cov_a_01: 0.14484965004958397,
    },
    Golden {
        name: "rank_deficient_64",
        a: (40, 64, 0, 0.37, 0.131, 1.0, 0.0),
        b: (50, 64, 2000, 0.43, 0.157, 1.1, 0.25),
        fd: 11.566116464150511,
        fd_rel_tol: 1e-6,
        fd_svd: 11.566120003170312,
        precision_count: 30,
        recall_count: 39,
        mean_a_0: 0.3067188965156674,
        cov_a_00: 0.7206567727327726,
        cov_a_01: 0.14710882378678455,
    },
];

fn assert_rel(name: &str, what: &str, got: f64, want: f64, tol: f64) {
    let rel = (got - want).abs() / want.abs();
    assert!(
        rel <= tol,
        "{name}: {what} = {got}, golden {want} (relative error {rel:.2e} > {tol:.0e})"
    );
}

#[test]
fn stats_and_fd_match_scipy() {
    for g in &CASES {
        let (xa, xb) = (features(g.a), features(g.b));
        let sa = FeatureStats::from_features(&xa, g.a.1).unwrap();
        let sb = FeatureStats::from_features(&xb, g.b.1).unwrap();
        assert_eq!((sa.count, sa.dim), (g.a.0, g.a.1));
        // Mean and covariance are plain f64 sums: only summation order differs from numpy.
        assert_rel(g.name, "mean[0]", sa.mean[0], g.mean_a_0, 1e-13);
        assert_rel(g.name, "cov[0,0]", sa.cov[0], g.cov_a_00, 1e-13);
        assert_rel(g.name, "cov[0,1]", sa.cov[1], g.cov_a_01, 1e-13);

        let fd = frechet_distance(&sa, &sb).unwrap();
        assert_rel(g.name, "FD", fd, g.fd, g.fd_rel_tol);
        let fd_ba = frechet_distance(&sb, &sa).unwrap();
        assert_rel(g.name, "FD(b, a)", fd_ba, g.fd, g.fd_rel_tol);
        assert_rel(g.name, "FD vs SVD", fd, g.fd_svd, 1e-11);
        assert_rel(g.name, "FD(b, a) vs SVD", fd_ba, g.fd_svd, 1e-11);
    }
}

#[test]
fn precision_recall_match_numpy() {
    // Exact: the script's smallest |d − r| / r over all ball tests is 2.5e-5 (wide_64), many
    // orders above f64 rounding, so no test is a tie and the counts cannot differ.
    for g in &CASES {
        let (real, generated) = (features(g.a), features(g.b));
        let pr = precision_recall(&real, &generated, g.a.1, K).unwrap();
        assert_eq!(
            pr.precision,
            g.precision_count as f64 / g.b.0 as f64,
            "{} precision",
            g.name
        );
        assert_eq!(
            pr.recall,
            g.recall_count as f64 / g.a.0 as f64,
            "{} recall",
            g.name
        );
    }
}
