//! A single-threaded f32 GEMM call on row-major views, shared by the CPU kernels (which
//! parallelise over images or attention heads themselves).

use gemm::{Parallelism, gemm};

/// A row-major matrix view for [`matmul`]: element (i, j) at `ptr[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Mat {
    pub(crate) fn rows(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major `[rows, cols]` matrix in `data`.
    pub(crate) fn transposed(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: cols as isize,
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, single-threaded (the callers parallelise over images).
///
/// # Safety
///
/// `lhs` and `rhs` must point to matrices of at least `[m, k]` and `[k, n]` under their strides.
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    assert!(dst.len() >= m * n);
    // SAFETY: dst is checked above; lhs and rhs by the caller's contract.
    unsafe { matmul_strided(m, n, k, dst.as_mut_ptr(), n, accumulate, lhs, rhs) }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` into memory not yet initialised: without `read_dst`,
/// gemm's kernels store every element of `dst` without reading it (alpha status 0), and with
/// k = 0 it fills `dst` with zeros.
///
/// # Safety
///
/// As [`matmul`]; on return the first m·n elements of `dst` are initialised.
pub(crate) unsafe fn matmul_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
    lhs: Mat,
    rhs: Mat,
) {
    assert!(dst.len() >= m * n);
    // SAFETY: dst is checked above; lhs and rhs by the caller's contract; with read_dst false
    // gemm never reads dst.
    unsafe { matmul_strided(m, n, k, dst.as_mut_ptr().cast::<f32>(), n, false, lhs, rhs) }
}

/// [`matmul`] into `dst[i·dst_row_stride + j]`: a block of rows inside a wider matrix (one
/// attention head among a token's others).
///
/// # Safety
///
/// As [`matmul`], and `dst` must be valid for writes (and reads, with `accumulate`) at every
/// `i·dst_row_stride + j` for i < m, j < n, with no other thread touching those elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    // SAFETY: by the caller's contract.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
