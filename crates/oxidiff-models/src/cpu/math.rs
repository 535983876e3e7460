//! Elementwise maths shared by the CPU kernels.

/// e^x to within 5e-7 relative, branch-free so that loops over it vectorise (libm's `expf` is
/// a call per element).
///
/// e^x = 2^n · e^r with n = round(x·log₂e) and r = x − n·ln 2 ∈ [−0.35, 0.35], ln 2 split in two
/// parts (Cody & Waite) so that r keeps its precision; e^r is its degree-6 Taylor polynomial
/// (truncation error 0.35⁷/7! ≈ 1.3e-7), and 2^n is built in the exponent bits. x is clamped to
/// [−87, 88], where e^x is a normal f32.
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    f32::from_bits(((n_int + 127) << 23) as u32) * p
}

/// erf(x) to within 7e-7, branch-free (libm's `erff` is a call per element).
///
/// Abramowitz & Stegun 7.1.26: erf(|x|) = 1 − t·P(t)·e^{−x²} with t = 1/(1 + p|x|) and P of
/// degree 4 (absolute error ≤ 1.5e-7), e^{−x²} ≤ 1 from [`exp_approx`] (5e-7 relative), the sign
/// put back.
#[inline(always)]
pub(crate) fn erf_approx(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp_approx(-a * a)).copysign(x)
}

/// Σ f(v) over `values`, accumulated in eight f32 lanes (one vector register, so the loop
/// vectorises) and combined in f64. Each lane sums at most a few hundred terms here.
#[inline(always)]
pub(crate) fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    let tail: f64 = rest.iter().map(|&v| f64::from(f(v))).sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}

/// Σ a·b in eight f32 lanes, combined in f64 (see [`lane_sum`]).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(x * y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *lane += x * y;
        }
    }
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}

/// The largest of `values` (−∞ for none), in eight lanes so that the loop vectorises (a
/// sequential `fold` with `f32::max` does not).
#[inline(always)]
pub(crate) fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_approx_is_within_its_stated_error() {
        let mut worst = 0.0f64;
        for i in -8 * 256..=8 * 256 {
            let x = i as f32 / 256.0;
            let exact = libm::erf(f64::from(x));
            worst = worst.max((f64::from(erf_approx(x)) - exact).abs());
        }
        assert!(worst < 7e-7, "worst absolute error {worst}");
        assert!(erf_approx(0.0).abs() < 1e-6);
        assert_eq!((erf_approx(30.0), erf_approx(-30.0)), (1.0, -1.0));
    }

    #[test]
    fn exp_approx_is_within_its_stated_error() {
        // Every 1/64 over the range SiLU and softmax use, plus the clamped ends.
        let mut worst = 0.0f64;
        for i in -87 * 64..=88 * 64 {
            let x = i as f32 / 64.0;
            let exact = f64::from(x).exp();
            let rel = ((f64::from(exp_approx(x)) - exact) / exact).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_approx(-1000.0) > 0.0 && exp_approx(-1000.0) < 1e-37);
        assert!(exp_approx(1000.0).is_finite());
    }
}
