//! Dense matrix product for row-major buffers: `c = op(a) * op(b) (+ c)`.
//!
//! A thin, safe wrapper over the `gemm` crate (which packs and runs AVX-512 micro-kernels),
//! so the ops built on it (conv2d, linear, matmul) speak in row-major shapes and transpose
//! flags instead of raw pointers and strides.
//!
//! ```
//! // [1 2; 3 4] * [5 6; 7 8]
//! let (a, b) = ([1.0f64, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
//! let mut c = [0.0; 4];
//! kernels::gemm::gemm(2, 2, 2, &a, false, &b, false, &mut c, false, false);
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

#[cfg(test)]
mod tests;

use crate::Element;

/// `c = op(a) * op(b)`, or `c += op(a) * op(b)` when `accumulate`; all buffers row-major.
///
/// `op(a)` is `m x k`: `a` is stored `m x k`, or `k x m` when `a_transposed`.
/// `op(b)` is `k x n`: `b` is stored `k x n`, or `n x k` when `b_transposed`.
/// `c` is `m x n`. Without `accumulate` the old contents of `c` are never read (NaNs
/// there do not leak into the result). `parallel` lets the product use every rayon
/// thread; pass `false` when the caller already runs one product per thread.
///
/// # Panics
///
/// If a buffer is shorter than its shape says. Callers inside the crate size buffers
/// from validated geometry; the check is kept in release builds because it is what
/// makes the raw-pointer call below sound, and it costs nothing next to the product.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_transposed: bool,
    b: &[T],
    b_transposed: bool,
    c: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    let fits =
        |len: usize, rows: usize, cols: usize| rows.checked_mul(cols).is_some_and(|x| x <= len);
    assert!(
        fits(a.len(), m, k) && fits(b.len(), k, n) && fits(c.len(), m, n),
        "gemm: buffers of {} / {} / {} elements are too short for m={m} n={n} k={k}",
        a.len(),
        b.len(),
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // (row stride, column stride) of op(a), op(b) and c inside their row-major buffers.
    let (a_rs, a_cs) = if a_transposed { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b_transposed { (1, k) } else { (n, 1) };
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the product touches, (i, p) of op(a) at i*a_rs + p*a_cs etc.,
    // is below m*k, k*n or m*n, which the assert above bounds by the slice lengths; `c`
    // is a unique borrow so it cannot overlap `a` or `b`; T is f32 or f64, both of which
    // the crate implements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            // The crate computes dst = alpha*dst + beta*lhs*rhs and ignores dst (alpha)
            // entirely when read_dst is false.
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Whether a product of this size is worth splitting across rayon threads.
///
/// The `gemm` crate has its own threshold too; this one also spares the rayon
/// hand-off for the tiny products of small layers and unit tests.
pub(crate) fn worth_parallel(m: usize, n: usize, k: usize) -> bool {
    rayon::current_num_threads() > 1 && m.saturating_mul(n).saturating_mul(k) >= 1 << 18
}
