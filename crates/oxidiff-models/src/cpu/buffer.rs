//! Output buffers of the kernels, filled on the thread pool instead of the calling thread.
//!
//! Why: `vec![0.0; n]` zeroes on the thread that asks (glibc's `calloc` memsets the memory it
//! reuses), while the pool waits for the kernel that then overwrites it. On the `latent-text`
//! training step these fills were over a quarter of the main thread's serial time
//! (bench/NOTES.md, 2026-12-03). Zeroing on the pool splits that work over the cores and touches
//! each page first on a thread that goes on to write it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many floats (256 KiB) a buffer is zeroed in place: handing it to the pool would
/// cost more than the fill.
const SERIAL_BELOW: usize = 1 << 16;

/// Floats per parallel zeroing task (64 KiB).
const ZERO_CHUNK: usize = 1 << 14;

/// `len` zeros, written by the thread pool.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    if len < SERIAL_BELOW {
        return vec![0.0; len];
    }
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(ZERO_CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: each of the first `len` elements was written just above.
    unsafe { out.set_len(len) };
    out
}

/// `len` floats built chunk by chunk on the pool: chunk `i` (`chunk` floats, the last one
/// shorter when `chunk` does not divide `len`) is zeroed by the task that then passes it to
/// `fill(i, chunk)`, so the zeros are written while the chunk is in that core's cache.
pub(crate) fn par_chunks_zeroed(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    assert!(chunk > 0, "par_chunks_zeroed: empty chunks");
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, part)| {
            part.fill(MaybeUninit::new(0.0));
            // SAFETY: every element of `part` was initialised just above.
            let part =
                unsafe { &mut *(std::ptr::from_mut::<[MaybeUninit<f32>]>(part) as *mut [f32]) };
            fill(i, part);
        });
    // SAFETY: the chunks cover the first `len` elements, each initialised above.
    unsafe { out.set_len(len) };
    out
}

/// The element-wise sum of `parts` (each `len` long), added in their order whatever the
/// scheduling, so the result is deterministic; zeros when there are none.
pub(crate) fn sum_in_order(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let Some(mut total) = parts.next() else {
        return zeroed(len);
    };
    assert_eq!(total.len(), len, "sum_in_order: part length");
    let rest: Vec<Vec<f32>> = parts.collect();
    if rest.is_empty() {
        return total;
    }
    total
        .par_chunks_mut(ZERO_CHUNK)
        .enumerate()
        .for_each(|(c, dst)| {
            for part in &rest {
                let src = &part[c * ZERO_CHUNK..][..dst.len()];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_all_zero_at_every_size() {
        for len in [
            0,
            1,
            SERIAL_BELOW - 1,
            SERIAL_BELOW,
            SERIAL_BELOW + 7,
            3 * ZERO_CHUNK + 5,
        ] {
            let v = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
        }
    }

    #[test]
    fn par_chunks_zeroed_hands_out_zeroed_chunks_in_order() {
        let (len, chunk) = (1_003, 100);
        let v = par_chunks_zeroed(len, chunk, |i, part| {
            assert!(part.iter().all(|&x| x == 0.0));
            assert_eq!(part.len(), chunk.min(len - i * chunk));
            // Leave the last element of every chunk alone: it must stay zero.
            let n = part.len() - 1;
            for (j, x) in part[..n].iter_mut().enumerate() {
                *x = (i * chunk + j) as f32;
            }
        });
        for (k, &x) in v.iter().enumerate() {
            let last_of_chunk = k % chunk == chunk - 1 || k == len - 1;
            assert_eq!(x, if last_of_chunk { 0.0 } else { k as f32 }, "element {k}");
        }
    }

    #[test]
    fn sum_in_order_adds_every_part() {
        let len = 2 * ZERO_CHUNK + 3;
        let parts: Vec<Vec<f32>> = (0..3)
            .map(|p| (0..len).map(|k| (k * (p + 1)) as f32).collect())
            .collect();
        let total = sum_in_order(parts, len);
        for (k, &x) in total.iter().enumerate() {
            assert_eq!(x, (6 * k) as f32);
        }
        assert_eq!(sum_in_order(Vec::new(), 5), vec![0.0; 5]);
    }
}
