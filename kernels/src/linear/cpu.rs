use rayon::prelude::*;

use super::LinearGeometry;
use crate::bf16_values::Stored;
use crate::gemm::{gemm, gemm_new, worth_parallel, Operand};
use crate::Element;

pub fn forward<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &LinearGeometry) -> Vec<T> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    // Starting from the bias and accumulating saves a second pass over y.
    let product = |start: usize, width: usize, y: &mut [T], parallel: bool| {
        if let Some(bias) = bias {
            for row in y.chunks_exact_mut(width.max(1)) {
                row.copy_from_slice(&bias[start..start + width]);
            }
        }
        let w = &w[start * i..(start + width) * i];
        gemm(n, width, i, x, false, w, true, y, bias.is_some(), parallel);
    };
    if split_by_columns(n, o, i) {
        return by_column_blocks(n, o, |start, width, y| product(start, width, y, false));
    }
    let mut y = vec![T::zero(); n * o];
    product(0, o, &mut y, worth_parallel(n, o, i));
    y
}

/// Fewest output columns per thread worth a product of their own.
const MIN_COLUMNS_PER_THREAD: usize = 64;

/// Whether an `m x n` (`k` deep) product should be split by [`by_column_blocks`] rather
/// than threaded by the `gemm` crate, which splits products with few rows and a long
/// reduction poorly. Measured on 2 threads for the network's 8192 -> 1024 layer at
/// batch 32 (128): forward 14.1 (14.3) ms threaded by the crate, 8.9 (17.5) ms on one
/// thread, 4.7 (8.6) ms split by columns. (Its input gradient, 8192 columns deep 1024,
/// the crate threads as well as a split: 3.6 (7.3) ms either way, without the copy.)
fn split_by_columns(m: usize, n: usize, k: usize) -> bool {
    let threads = rayon::current_num_threads();
    worth_parallel(m, n, k) && threads > 1 && n >= MIN_COLUMNS_PER_THREAD * threads
}

/// An `rows x cols` row-major matrix computed as one contiguous block of columns per
/// rayon thread: `block(start, width, part)` fills `part`, the `rows x width` matrix of
/// columns `start..start + width`, single-threaded.
fn by_column_blocks<T: Element>(
    rows: usize,
    cols: usize,
    block: impl Fn(usize, usize, &mut [T]) + Sync,
) -> Vec<T> {
    let threads = rayon::current_num_threads();
    let parts: Vec<(usize, usize, Vec<T>)> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let (start, end) = (cols * t / threads, cols * (t + 1) / threads);
            let mut part = vec![T::zero(); rows * (end - start)];
            block(start, end - start, &mut part);
            (start, end - start, part)
        })
        .collect();
    let mut out = vec![T::zero(); rows * cols];
    for (start, width, part) in parts {
        for (row, src) in out.chunks_exact_mut(cols).zip(part.chunks_exact(width)) {
            row[start..start + width].copy_from_slice(src);
        }
    }
    out
}

/// `dL/dx = dL/dy W`.
pub fn input_grad<T: Element>(gy: &[T], w: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let (gy, w) = (Operand::new(gy, o), Operand::new(w, i));
    gemm_new(n, i, o, gy, w, worth_parallel(n, i, o))
}

/// `dL/dW = dL/dy^T x`.
pub fn weight_grad<T: Element>(gy: &[T], x: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let (gy_t, x) = (Operand::t(gy, o), Operand::new(x, i));
    gemm_new(o, i, n, gy_t, x, worth_parallel(o, i, n))
}

/// `dL/db`: column sums of `dL/dy`, split over column blocks so each thread streams rows;
/// in `S`'s compute type (a bf16 `dL/dy` is widened as it is read, and sums to the bits
/// of an f32 one holding the same values).
pub fn bias_grad<S: Stored>(gy: &[S], n: usize, o: usize) -> Vec<S::Compute> {
    let mut gb = vec![S::Compute::of(0.0); o];
    if o == 0 {
        return gb;
    }
    gb.par_chunks_mut(256).enumerate().for_each(|(block, gb)| {
        let start = block * 256;
        for row in gy.chunks_exact(o).take(n) {
            for (acc, &v) in gb.iter_mut().zip(&row[start..]) {
                *acc += v.load();
            }
        }
    });
    gb
}
