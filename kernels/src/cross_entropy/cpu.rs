use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

/// Rows per rayon task, so that each task touches about `PAR_MIN_LEN` elements.
fn rows_per_task(cols: usize) -> usize {
    (PAR_MIN_LEN / cols.max(1)).max(1)
}

/// Returns the sum over rows of `on (m - x_r[label_r]) + off sum_j (m - x_rj) + ln total`
/// (in f64; `on = 1 - ε`, `off = ε / cols`) and the softmax. `cols > 0` and every label
/// `< cols` (checked by the caller).
pub fn forward<T: Element>(
    logits: &[T],
    labels: &[u32],
    cols: usize,
    on: T,
    off: T,
) -> (f64, Vec<T>) {
    let mut probs = vec![T::zero(); logits.len()];
    // Per-row losses are collected in row order and added sequentially, so the loss does
    // not depend on how rayon split the rows.
    let row_losses: Vec<f64> = probs
        .par_chunks_mut(cols)
        .zip(logits.par_chunks(cols))
        .zip(labels.par_iter())
        .with_min_len(rows_per_task(cols))
        .map(|((p, x), &label)| row_forward(p, x, label as usize, on, off))
        .collect();
    (row_losses.iter().sum(), probs)
}

/// Writes `softmax(x)` into `p` and returns the row's loss, `-ln softmax(x)[label]` when
/// there is no smoothing (`on = 1`, `off = 0`).
fn row_forward<T: Element>(p: &mut [T], x: &[T], label: usize, on: T, off: T) -> f64 {
    let m = x.iter().copied().fold(T::neg_infinity(), T::max);
    let mut total = T::zero();
    for (p, &x) in p.iter_mut().zip(x) {
        *p = (x - m).exp();
        total += *p;
    }
    let inv = total.recip();
    for p in p.iter_mut() {
        *p *= inv;
    }
    // (m - x[label]) is exact for logits of similar magnitude, and ln(total) is in
    // [0, ln cols]: no cancellation, even when the label's logit is 1e4 below the max.
    let mut loss = on * (m - x[label]);
    if off != T::zero() {
        loss += off * x.iter().map(|&x| m - x).sum::<T>();
    }
    (loss + total.ln()).to_f64_lossy()
}

/// `(probs - q) * factor`, with `q` = `targets.0` at the label and `targets.1` elsewhere.
pub fn backward<T: Element>(
    probs: &[T],
    labels: &[u32],
    factor: T,
    targets: (T, T),
    cols: usize,
) -> Vec<T> {
    let (on_label, off) = targets;
    let mut grad = vec![T::zero(); probs.len()];
    grad.par_chunks_mut(cols)
        .zip(probs.par_chunks(cols))
        .zip(labels.par_iter())
        .with_min_len(rows_per_task(cols))
        .for_each(|((g, p), &label)| {
            for (g, &p) in g.iter_mut().zip(p) {
                *g = (p - off) * factor;
            }
            let label = label as usize;
            g[label] = (p[label] - on_label) * factor;
        });
    grad
}
