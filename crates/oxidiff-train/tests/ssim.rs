//! SSIM against scikit-image: `tests/golden/ssim.json` is written by
//! `/opt/refenv/bin/python tools/reference/ssim_golden.py` (scikit-image 0.26, its
//! `structural_similarity` with Gaussian weights; the script's docstring has the settings).

use oxidiff_train::eval::ssim;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    size: usize,
    channels: usize,
    kind: String,
    a: Vec<f32>,
    b: Vec<f32>,
    ssim: f64,
}

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[test]
fn ssim_matches_scikit_image() {
    let text = include_str!("golden/ssim.json");
    let golden: Golden = serde_json::from_str(text).unwrap();
    assert_eq!(golden.cases.len(), 5);
    for case in &golden.cases {
        let ours = ssim(&case.a, &case.b, case.channels, case.size);
        assert!(
            (ours - case.ssim).abs() < 1e-5,
            "{}×{}×{} {}: {ours} vs scikit-image's {}",
            case.channels,
            case.size,
            case.size,
            case.kind,
            case.ssim
        );
        let same = ssim(&case.a, &case.a, case.channels, case.size);
        assert!(
            (same - 1.0).abs() < 1e-12,
            "an image against itself: {same}"
        );
    }
}
