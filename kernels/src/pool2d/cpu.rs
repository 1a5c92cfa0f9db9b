use std::ops::Range;

use rayon::prelude::*;

use super::{Pool2dGeometry, PoolKind};
use crate::{Element, PAR_MIN_LEN};

/// The in-bounds input indices covered by each output position along one axis.
/// Padding cells are simply left out: they never win a max and add zero to a sum.
fn window_ranges(
    out: usize,
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Vec<Range<usize>> {
    (0..out)
        .map(|o| {
            let start = o * stride;
            // Window in padded coordinates is start..start + kernel; shift by -pad and clip.
            start.saturating_sub(pad)..(start + kernel - pad).min(input)
        })
        .collect()
}

/// Per-axis windows plus the plane sizes, shared by forward and backward.
struct Windows {
    rows: Vec<Range<usize>>,
    cols: Vec<Range<usize>>,
    in_w: usize,
    in_plane: usize,
    out_plane: usize,
}

impl Windows {
    fn new(g: &Pool2dGeometry) -> Windows {
        Windows {
            rows: window_ranges(g.out_h, g.in_h, g.kernel[0], g.stride[0], g.padding[0]),
            cols: window_ranges(g.out_w, g.in_w, g.kernel[1], g.stride[1], g.padding[1]),
            in_w: g.in_w,
            in_plane: g.in_h * g.in_w,
            out_plane: g.out_h * g.out_w,
        }
    }

    /// How many planes one rayon task should take so it has enough work to pay for itself.
    fn min_planes(&self) -> usize {
        (PAR_MIN_LEN / self.in_plane.max(self.out_plane)).max(1)
    }

    /// Index (within the plane) of the window's first maximum in row-major order; a NaN
    /// beats any number and a later NaN beats an earlier one, matching PyTorch's CPU kernel.
    fn argmax<T: Element>(&self, x: &[T], rows: &Range<usize>, cols: &Range<usize>) -> usize {
        let mut best_index = rows.start * self.in_w + cols.start;
        let mut best = x[best_index];
        for h in rows.clone() {
            let start = h * self.in_w + cols.start;
            for (offset, &v) in x[start..start + cols.len()].iter().enumerate() {
                // Selects, not branches: which cell wins is data-dependent and unpredictable.
                let take = v > best || v.is_nan();
                best = if take { v } else { best };
                best_index = if take { start + offset } else { best_index };
            }
        }
        best_index
    }
}

/// [`Windows::argmax`] over cells given in row-major order.
#[inline(always)]
fn first_max<T: Element, const N: usize>(x: &[T], cells: [usize; N]) -> usize {
    let mut best_index = cells[0];
    let mut best = x[best_index];
    for &i in &cells[1..] {
        let v = x[i];
        let take = v > best || v.is_nan();
        best = if take { v } else { best };
        best_index = if take { i } else { best_index };
    }
    best_index
}

/// The avg-pool divisor of a clipped window.
fn divisor<T: Element>(g: &Pool2dGeometry, rows: &Range<usize>, cols: &Range<usize>) -> T {
    let cells = match g.kind {
        PoolKind::Avg {
            count_include_pad: false,
        } => rows.len() * cols.len(),
        _ => g.kernel[0] * g.kernel[1],
    };
    T::of(cells as f64)
}

/// `a` replaced by `b` if `b` is larger or NaN: the max that propagates NaN. Written as
/// a select so loops over it vectorise and random data costs no branch mispredictions.
#[inline(always)]
fn max_nan<T: Element>(a: T, b: T) -> T {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

/// Forward is separable: each output row first reduces its window rows column by column
/// (a contiguous, vectorisable pass), then each output reduces a few adjacent columns.
/// This changes only the order of the additions (avg) and which of equal values is
/// returned (max), never the value of a max.
pub fn forward<T: Element>(x: &[T], g: &Pool2dGeometry) -> Vec<T> {
    let win = Windows::new(g);
    let in_w = g.in_w;
    let mut y = vec![T::zero(); g.batch * g.channels * win.out_plane];
    y.par_chunks_mut(win.out_plane)
        .zip(x.par_chunks(win.in_plane))
        .with_min_len(win.min_planes())
        .for_each_init(
            || vec![T::zero(); in_w],
            |buffer, (y, x)| {
                for (y_row, rows) in y.chunks_mut(g.out_w).zip(&win.rows) {
                    let first = &x[rows.start * in_w..(rows.start + 1) * in_w];
                    let columns: &[T] = if rows.len() == 1 {
                        first
                    } else {
                        buffer.copy_from_slice(first);
                        for h in rows.start + 1..rows.end {
                            let row = &x[h * in_w..(h + 1) * in_w];
                            match g.kind {
                                PoolKind::Max => {
                                    for (acc, &v) in buffer.iter_mut().zip(row) {
                                        *acc = max_nan(*acc, v);
                                    }
                                }
                                PoolKind::Avg { .. } => {
                                    for (acc, &v) in buffer.iter_mut().zip(row) {
                                        *acc += v;
                                    }
                                }
                            }
                        }
                        buffer
                    };
                    for (out, cols) in y_row.iter_mut().zip(&win.cols) {
                        let span = &columns[cols.clone()];
                        *out = match g.kind {
                            PoolKind::Max => span[1..].iter().fold(span[0], |m, &v| max_nan(m, v)),
                            PoolKind::Avg { .. } => {
                                span.iter().fold(T::zero(), |s, &v| s + v)
                                    / divisor::<T>(g, rows, cols)
                            }
                        };
                    }
                }
            },
        );
    y
}

pub fn backward<T: Element>(x: &[T], dy: &[T], g: &Pool2dGeometry) -> Vec<T> {
    let win = Windows::new(g);
    let mut dx = vec![T::zero(); x.len()];
    // Each task owns whole input planes, so the scattered additions never race.
    dx.par_chunks_mut(win.in_plane)
        .zip(x.par_chunks(win.in_plane))
        .zip(dy.par_chunks(win.out_plane))
        .with_min_len(win.min_planes())
        .for_each(|((dx, x), dy)| {
            for (dy_row, rows) in dy.chunks(g.out_w).zip(&win.rows) {
                for (&grad, cols) in dy_row.iter().zip(&win.cols) {
                    match g.kind {
                        PoolKind::Max => {
                            // The ubiquitous full 2x2 window as four fixed cells: the general
                            // loop costs several times more than the comparisons themselves.
                            let index = if rows.len() == 2 && cols.len() == 2 {
                                let a = rows.start * win.in_w + cols.start;
                                first_max(x, [a, a + 1, a + win.in_w, a + win.in_w + 1])
                            } else {
                                win.argmax(x, rows, cols)
                            };
                            dx[index] += grad;
                        }
                        PoolKind::Avg { .. } => {
                            let share = grad / divisor::<T>(g, rows, cols);
                            for h in rows.clone() {
                                let row =
                                    &mut dx[h * win.in_w + cols.start..h * win.in_w + cols.end];
                                for d in row {
                                    *d += share;
                                }
                            }
                        }
                    }
                }
            }
        });
    dx
}
