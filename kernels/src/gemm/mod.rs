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
/// makes the raw-pointer call sound, and it costs nothing next to the product.
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
    let a = Operand {
        data: a,
        row_stride: if a_transposed { m } else { k },
        transposed: a_transposed,
    };
    let b = Operand {
        data: b,
        row_stride: if b_transposed { k } else { n },
        transposed: b_transposed,
    };
    gemm_strided(m, n, k, a, b, c, n, accumulate, parallel);
}

/// A row-major matrix operand that may be a window of a wider buffer.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a, T> {
    pub data: &'a [T],
    /// Elements between the starts of two stored rows (at least the stored row length).
    pub row_stride: usize,
    /// The buffer stores the transpose of the operand.
    pub transposed: bool,
}

impl<'a, T> Operand<'a, T> {
    /// A row-major matrix whose rows are `row_stride` apart in `data`.
    pub fn new(data: &'a [T], row_stride: usize) -> Self {
        Operand {
            data,
            row_stride,
            transposed: false,
        }
    }

    /// The transpose of [`Operand::new`]`(data, row_stride)`.
    pub fn t(data: &'a [T], row_stride: usize) -> Self {
        Operand {
            data,
            row_stride,
            transposed: true,
        }
    }

    /// (row, column) strides of the operand itself, whose shape is `rows x cols`.
    fn strides(&self) -> (usize, usize) {
        if self.transposed {
            (1, self.row_stride)
        } else {
            (self.row_stride, 1)
        }
    }

    /// Whether the stored `rows x cols` (before transposition) fits in `data` with rows
    /// that do not overlap.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        let (rows, cols) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        fits(self.data.len(), rows, cols, self.row_stride)
    }
}

/// Whether a `rows x cols` matrix with rows `stride` apart fits in `len` elements.
fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    stride >= cols
        && stride <= isize::MAX as usize
        && (rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(cols))
            .is_some_and(|needed| needed <= len)
}

/// [`gemm`] on windows of wider buffers: `c` is `m x n` with rows `c_stride` apart.
///
/// Lets conv2d multiply a band of columns of an image in place instead of copying it out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    c: &mut [T],
    c_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && fits(c.len(), m, n, c_stride),
        "gemm: buffers of {} / {} / {} elements are too short for m={m} n={n} k={k} \
         (row strides {} / {} / {c_stride})",
        a.data.len(),
        b.data.len(),
        c.len(),
        a.row_stride,
        b.row_stride,
    );
    // SAFETY: `fits` above bounds every element the product touches by the slice lengths.
    unsafe {
        product(
            m,
            n,
            k,
            a,
            b,
            c.as_mut_ptr(),
            c_stride,
            accumulate,
            parallel,
        )
    }
}

/// `op(a) * op(b)` as a new row-major `m x n` buffer, which the product writes without
/// its being zeroed first: for the network's 8192 -> 1024 weight gradient the zeroing is
/// a single-threaded 32 MiB memset, a third as long as the product itself.
pub(crate) fn gemm_new<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    parallel: bool,
) -> Vec<T> {
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "gemm: buffers of {} / {} elements are too short for m={m} n={n} k={k} (row strides {} / {})",
        a.data.len(),
        b.data.len(),
        a.row_stride,
        b.row_stride,
    );
    let len = m.checked_mul(n).expect("gemm: m x n overflows");
    let mut c: Vec<T> = Vec::with_capacity(len);
    if k == 0 {
        c.resize(len, T::zero());
        return c;
    }
    // SAFETY: as in `gemm_strided`, and `c` has room for `m x n` elements with rows `n`
    // apart. Without `accumulate` the crate writes every element of `c` and reads none
    // (`gemm_strided`'s doc; tested with NaN-filled destinations), so after the product
    // all `len` elements are initialised.
    unsafe {
        product(m, n, k, a, b, c.as_mut_ptr(), n, false, parallel);
        c.set_len(len);
    }
    c
}

/// The `gemm` crate's product into `c`, `m x n` with rows `c_stride` apart.
///
/// # Safety
///
/// `a` and `b` must fit their shapes ([`Operand::fits`]); `c` must be valid for writes
/// (and for reads when `accumulate`) of every element of that `m x n` window, and must
/// not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn product<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    c: *mut T,
    c_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the product reads op(a)[i][p] at i*a_rs + p*a_cs for i < m, p < k (and
    // likewise b, c); the caller guarantees those are in bounds. Rows of `c` do not
    // overlap (stride >= n), `c` does not alias `a` or `b`, and T is f32 or f64, both of
    // which the crate implements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            c_stride as isize,
            // The crate computes dst = alpha*dst + beta*lhs*rhs and ignores dst (alpha)
            // entirely when read_dst is false.
            accumulate,
            a.data.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.data.as_ptr(),
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
