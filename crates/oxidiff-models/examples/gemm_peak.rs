//! Single-threaded `gemm` throughput for the matrix shapes the convolution kernels produce, with
//! the right operand row-major or contiguous along the summed axis (the layout question behind
//! the Winograd weight gradient; see bench/NOTES.md).
//!
//! `cargo run --release -p oxidiff-models --example gemm_peak`

use std::time::Instant;

use gemm::{Parallelism, gemm};

/// Best-of-5 GFLOP/s of `[m, k] · [k, n]`, left operand row-major.
fn gflops(m: usize, n: usize, k: usize, rhs_contiguous_along_k: bool) -> f64 {
    let lhs = vec![1.0f32; m * k];
    let rhs = vec![1.0f32; k * n];
    let mut dst = vec![0.0f32; m * n];
    let (rhs_cs, rhs_rs) = if rhs_contiguous_along_k {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    let iters = 200;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iters {
            // SAFETY: the three buffers hold [m, n], [m, k] and [k, n] under the given strides.
            unsafe {
                gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    rhs_cs,
                    rhs_rs,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                )
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k * iters) as f64 / best / 1e9
}

fn main() {
    println!("m x n x k        rhs row-major   rhs contiguous along k   (GFLOP/s, one thread)");
    for (m, n, k) in [
        (128, 128, 256),
        (64, 64, 256),
        (128, 64, 256),
        (128, 256, 128),
        (64, 1024, 576),
    ] {
        println!(
            "{m}x{n}x{k:<10} {:>10.1} {:>20.1}",
            gflops(m, n, k, false),
            gflops(m, n, k, true)
        );
    }
}
