//! Vector instruction sets for the kernels' elementwise loops, chosen once at run time.
//!
//! Why: the crate is built for baseline x86-64 (SSE2, 4 lanes) so that the binary runs on any
//! x86-64 machine, but the elementwise loops of the kernels (softmax, GELU, GroupNorm, Winograd
//! transforms, transposes) run about twice as fast with AVX2's 8 lanes and faster again with
//! AVX-512's 16. A loop is compiled for a feature set only when its code is *inlined into* a
//! function compiled with those features: [`multiversion!`] guarantees it (the body is an
//! `#[inline(always)]` function); [`vectorised`] relies on LLVM inlining a closure, which it does
//! only for small ones (the softmax, GEGLU and GroupNorm loops stayed SSE2 that way: hence the
//! macro for those).

use std::sync::OnceLock;

/// The widest instruction set the CPU offers, of those the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimdLevel {
    /// SSE2 only: the baseline build.
    Baseline,
    /// AVX2 + FMA (8 f32 lanes).
    Avx2,
    /// AVX-512 F/DQ/VL + AVX2 + FMA (16 f32 lanes).
    Avx512,
}

/// The level this CPU runs the kernels at, detected once. `OXIDIFF_SIMD=avx2` or `=baseline`
/// caps it (to compare, or to rule a code path out).
pub(crate) fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("OXIDIFF_SIMD").as_deref() {
            Ok("baseline") => SimdLevel::Baseline,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        detected().min_with(cap)
    })
}

impl SimdLevel {
    fn rank(self) -> u8 {
        match self {
            SimdLevel::Baseline => 0,
            SimdLevel::Avx2 => 1,
            SimdLevel::Avx512 => 2,
        }
    }

    fn min_with(self, other: SimdLevel) -> SimdLevel {
        if self.rank() <= other.rank() {
            self
        } else {
            other
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detected() -> SimdLevel {
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let avx512 = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl");
    match (avx2, avx512) {
        (true, true) => SimdLevel::Avx512,
        (true, false) => SimdLevel::Avx2,
        _ => SimdLevel::Baseline,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> SimdLevel {
    SimdLevel::Baseline
}

/// Defines a function whose body is compiled three times (baseline, AVX2 + FMA, AVX-512) and
/// runs the version [`simd_level`] picks. The body goes into an `#[inline(always)]` function that
/// each `#[target_feature]` wrapper calls, so it is always inlined there and compiled for those
/// features, together with the `#[inline(always)]` helpers it calls (`exp_approx`, `lane_sum`).
/// Arguments are plain `name: Type` pairs; no generics.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                match $crate::cpu::simd::simd_level() {
                    // SAFETY: `simd_level` returns a level only where the CPU has its features.
                    $crate::cpu::simd::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::simd::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::simd::SimdLevel::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Runs `f` compiled for the widest [`SimdLevel`] the CPU has, *if* LLVM inlines `f` into the
/// wrapper (small closures; see the module comment). Prefer [`multiversion!`] for hot loops.
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
        fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match simd_level() {
            // SAFETY: `simd_level` returns a level only where the CPU has its features.
            SimdLevel::Avx512 => return unsafe { run_avx512(f) },
            // SAFETY: as above.
            SimdLevel::Avx2 => return unsafe { run_avx2(f) },
            SimdLevel::Baseline => {}
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn scaled_sum(values: &[f32], scale: f32) -> f32 {
            values.iter().map(|v| v * scale).sum()
        }
    }

    #[test]
    fn a_multiversioned_function_runs_its_body() {
        assert_eq!(scaled_sum(&[1.0, 2.0, 3.0], 2.0), 12.0);
        assert_eq!(vectorised(|| 2 + 2), 4);
    }

    #[test]
    fn a_cap_never_raises_the_level() {
        assert_eq!(
            detected().min_with(SimdLevel::Baseline),
            SimdLevel::Baseline
        );
        assert_eq!(SimdLevel::Avx2.min_with(SimdLevel::Avx512), SimdLevel::Avx2);
        assert_eq!(SimdLevel::Avx512.min_with(SimdLevel::Avx2), SimdLevel::Avx2);
    }
}
