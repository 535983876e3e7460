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
