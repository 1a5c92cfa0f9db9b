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
    if is_max_2x2(g) {
        y.par_chunks_mut(win.out_plane)
            .zip(x.par_chunks(win.in_plane))
            .with_min_len(win.min_planes())
            .for_each_init(
                || vec![T::zero(); in_w],
                |buffer, (y, x)| max_2x2_forward_plane(x, y, g, buffer),
            );
        return y;
    }
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
            if is_max_2x2(g) {
                max_2x2_backward_plane(x, dy, dx, g, &win);
                return;
            }
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

/// The network's only pool: max over 2x2 windows with stride 2 (padding 0 or 1, the most
/// the geometry allows). Its windows tile the input without overlapping, so each plane is
/// two rows in, one row out, with every full window reduced by the same few selects.
fn is_max_2x2(g: &Pool2dGeometry) -> bool {
    g.kind == PoolKind::Max && g.kernel == [2, 2] && g.stride == [2, 2]
}

/// The in-bounds input rows (or columns) of output row (or column) `o` of a 2x2, stride-2
/// window: `2o - pad, 2o - pad + 1`, clipped to `0..len`.
fn pair_range(o: usize, pad: usize, len: usize) -> Range<usize> {
    (2 * o).saturating_sub(pad)..(2 * o + 2 - pad).min(len)
}

/// Output columns `start..end` whose windows hold two input columns; the columns
/// before (at most one, with padding) and after (at most one) hold a single column.
fn full_columns(g: &Pool2dGeometry) -> Range<usize> {
    let pw = g.padding[1];
    pw..((g.in_w + pw) / 2).min(g.out_w)
}

/// Forward of one plane: each output row first takes the element-wise max of its (one or
/// two) input rows, then the max of each column pair.
fn max_2x2_forward_plane<T: Element>(x: &[T], y: &mut [T], g: &Pool2dGeometry, buffer: &mut [T]) {
    let (h, w, pw) = (g.in_h, g.in_w, g.padding[1]);
    let full = full_columns(g);
    for (oh, y_row) in y.chunks_exact_mut(g.out_w).enumerate() {
        let rows = pair_range(oh, g.padding[0], h);
        let first = &x[rows.start * w..][..w];
        let m: &[T] = if rows.len() == 2 {
            let second = &x[(rows.start + 1) * w..][..w];
            for ((b, &u), &v) in buffer.iter_mut().zip(first).zip(second) {
                *b = max_nan(u, v);
            }
            buffer
        } else {
            first
        };
        let pairs = m[2 * full.start - pw..].chunks_exact(2);
        for (out, pair) in y_row[full.clone()].iter_mut().zip(pairs) {
            *out = max_nan(pair[0], pair[1]);
        }
        // Edge windows with one column (padding on the left, an odd width on the right).
        for ow in (0..full.start).chain(full.end..g.out_w) {
            y_row[ow] = m[pair_range(ow, pw, w).start];
        }
    }
}

/// Backward of one plane into `dx`, which holds zeros. Full 2x2 windows find their first
/// maximum with four selects and write all four cells; the edge windows that padding
/// or odd sizes clip take the general path.
fn max_2x2_backward_plane<T: Element>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    g: &Pool2dGeometry,
    win: &Windows,
) {
    let (h, w) = (g.in_h, g.in_w);
    let full = full_columns(g);
    let first_col = 2 * full.start - g.padding[1];
    for (oh, dy_row) in dy.chunks_exact(g.out_w).enumerate() {
        let rows = pair_range(oh, g.padding[0], h);
        // Output columns left to the general path.
        let (left, right) = if rows.len() == 2 {
            let (above, below) = dx[rows.start * w..].split_at_mut(w);
            let x_above = &x[rows.start * w..][..w];
            let x_below = &x[(rows.start + 1) * w..][..w];
            let cells = x_above[first_col..]
                .chunks_exact(2)
                .zip(x_below[first_col..].chunks_exact(2))
                .zip(above[first_col..].chunks_exact_mut(2))
                .zip(below[first_col..w].chunks_exact_mut(2));
            for ((((a, b), da), db), &grad) in cells.zip(&dy_row[full.clone()]) {
                let routed = route_first_max([a[0], a[1], b[0], b[1]], grad);
                da.copy_from_slice(&routed[..2]);
                db.copy_from_slice(&routed[2..]);
            }
            (0..full.start, full.end..g.out_w)
        } else {
            (0..g.out_w, 0..0)
        };
        for ow in left.chain(right) {
            let index = win.argmax(x, &win.rows[oh], &win.cols[ow]);
            dx[index] += dy_row[ow];
        }
    }
}

/// `grad` placed on the first maximum of four cells given in row-major order (a NaN
/// beats any number and a later NaN an earlier one, as [`Windows::argmax`]), zeros
/// elsewhere. Selects only, so the loop over windows stays branch-free.
#[inline(always)]
fn route_first_max<T: Element>([a, b, c, d]: [T; 4], grad: T) -> [T; 4] {
    let takes = |v: T, best: T| v > best || v.is_nan();
    let tb = takes(b, a);
    let ab = if tb { b } else { a };
    let tc = takes(c, ab);
    let abc = if tc { c } else { ab };
    let td = takes(d, abc);
    let zero = T::zero();
    let pick = |won: bool| if won { grad } else { zero };
    [
        pick(!td && !tc && !tb),
        pick(!td && !tc && tb),
        pick(!td && tc),
        pick(td),
    ]
}
