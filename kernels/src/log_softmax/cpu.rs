use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

/// Rows per rayon task, so that each task touches about `PAR_MIN_LEN` elements.
fn rows_per_task(cols: usize) -> usize {
    (PAR_MIN_LEN / cols.max(1)).max(1)
}

/// `ln(sum_j exp(x_j))` computed as `m + ln(sum_j exp(x_j - m))` with `m = max(x)`.
pub fn logsumexp<T: Element>(x: &[T]) -> T {
    let m = x.iter().copied().fold(T::neg_infinity(), T::max);
    if !m.is_finite() {
        // All -inf (sum is 0, ln is -inf) or some +inf / NaN: no shift makes sense, and
        // `x - m` would be NaN for the -inf row; fall back to the unshifted formula.
        return x.iter().map(|&v| v.exp()).sum::<T>().ln();
    }
    m + x.iter().map(|&v| (v - m).exp()).sum::<T>().ln()
}

pub fn forward<T: Element>(x: &[T], cols: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    if cols == 0 {
        return y;
    }
    y.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .with_min_len(rows_per_task(cols))
        .for_each(|(y, x)| {
            let lse = logsumexp(x);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - lse;
            }
        });
    y
}

pub fn backward<T: Element>(y: &[T], grad_out: &[T], cols: usize) -> Vec<T> {
    let mut grad_x = vec![T::zero(); y.len()];
    if cols == 0 {
        return grad_x;
    }
    grad_x
        .par_chunks_mut(cols)
        .zip(y.par_chunks(cols).zip(grad_out.par_chunks(cols)))
        .with_min_len(rows_per_task(cols))
        .for_each(|(dx, (y, g))| {
            let total: T = g.iter().copied().sum();
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                *dx = g - y.exp() * total;
            }
        });
    grad_x
}
