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

#[cfg(test)]
mod tests {
    use super::*;

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
