use std::ops::Range;

use num_traits::Float;
use rayon::prelude::*;

use super::{Pool2dGeometry, PoolKind};
use crate::bf16_values::Stored;
use crate::columns::{merge_columns, split_columns};
use crate::output::filled_in_parallel;
use crate::simd::{has_avx512, wide_loop};
use crate::{Element, PAR_MIN_LEN};

/// A value max pooling selects among: compared as its `Stored::Compute` (f32 and f64 as themselves, a
/// bf16 activation widened exactly to f32) and copied as it is stored. So a bf16 max pool
/// picks the very cells, and returns the very values, that the f32 kernel picks on the
/// widened input, reading and writing half the bytes.
pub(super) trait MaxValue: Stored {
    /// Whether `self` takes a window's max from `best`, a cell before it in row-major
    /// order: by being larger, or NaN (a NaN beats any number and a later NaN an earlier
    /// one, as in PyTorch's CPU kernel).
    #[inline(always)]
    fn beats(self, best: Self) -> bool {
        let (v, best) = (self.load(), best.load());
        v > best || v.is_nan()
    }
}

impl<T: Stored> MaxValue for T {}

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
pub(super) struct Windows {
    pub(super) rows: Vec<Range<usize>>,
    pub(super) cols: Vec<Range<usize>>,
    in_w: usize,
    in_plane: usize,
    out_plane: usize,
}

impl Windows {
    pub(super) fn new(g: &Pool2dGeometry) -> Windows {
        Windows {
            rows: window_ranges(g.out_h, g.in_h, g.kernel[0], g.stride[0], g.padding[0]),
            cols: window_ranges(g.out_w, g.in_w, g.kernel[1], g.stride[1], g.padding[1]),
            in_w: g.in_w,
            in_plane: g.in_h * g.in_w,
            out_plane: g.out_h * g.out_w,
        }
    }

    /// How many planes one rayon task should take so it has enough work to pay for itself.
    pub(super) fn min_planes(&self) -> usize {
        (PAR_MIN_LEN / self.in_plane.max(self.out_plane)).max(1)
    }

    /// Index (within the plane) of the window's first maximum in row-major order; a NaN
    /// beats any number and a later NaN beats an earlier one, matching PyTorch's CPU kernel.
    fn argmax<T: Element>(&self, x: &[T], rows: &Range<usize>, cols: &Range<usize>) -> usize {
        let (row, col) = self.argmax_cell(x, rows, cols);
        row * self.in_w + col
    }

    /// Row and column (within the plane) of [`Windows::argmax`].
    pub(super) fn argmax_cell<T: MaxValue>(
        &self,
        x: &[T],
        rows: &Range<usize>,
        cols: &Range<usize>,
    ) -> (usize, usize) {
        let (mut best_row, mut best_col) = (rows.start, cols.start);
        let mut best = x[best_row * self.in_w + best_col];
        for h in rows.clone() {
            let row = &x[h * self.in_w..][..self.in_w];
            for c in cols.clone() {
                let v = row[c];
                // Selects, not branches: which cell wins is data-dependent and unpredictable.
                let take = v.beats(best);
                best = if take { v } else { best };
                best_row = if take { h } else { best_row };
                best_col = if take { c } else { best_col };
            }
        }
        (best_row, best_col)
    }
}

/// [`Windows::argmax`] over cells given in row-major order.
#[inline(always)]
fn first_max<T: Element, const N: usize>(x: &[T], cells: [usize; N]) -> usize {
    let mut best_index = cells[0];
    let mut best = x[best_index];
    for &i in &cells[1..] {
        let v = x[i];
        let take = v.beats(best);
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
fn max_nan<T: MaxValue>(a: T, b: T) -> T {
    if b.beats(a) {
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
    match g.kind {
        PoolKind::Max => max_forward(x, g),
        PoolKind::Avg { .. } => rows_then_columns(
            x,
            g,
            |acc, row| {
                for (acc, &v) in acc.iter_mut().zip(row) {
                    *acc += v;
                }
            },
            |span, rows, cols| {
                span.iter().fold(T::zero(), |s, &v| s + v) / divisor::<T>(g, rows, cols)
            },
        ),
    }
}

/// [`forward`] for max pooling (`g.kind` is [`PoolKind::Max`]) of values stored as `T`.
pub(super) fn max_forward<T: MaxValue>(x: &[T], g: &Pool2dGeometry) -> Vec<T> {
    if !is_max_2x2(g) {
        return rows_then_columns(
            x,
            g,
            |acc, row| {
                for (acc, &v) in acc.iter_mut().zip(row) {
                    *acc = max_nan(*acc, v);
                }
            },
            |span, _, _| span[1..].iter().fold(span[0], |m, &v| max_nan(m, v)),
        );
    }
    let win = Windows::new(g);
    let mut y = vec![T::default(); g.batch * g.channels * win.out_plane];
    let wide = has_avx512();
    y.par_chunks_mut(win.out_plane)
        .zip(x.par_chunks(win.in_plane))
        .with_min_len(win.min_planes())
        .for_each_init(
            || vec![T::default(); g.in_w],
            |buffer, (y, x)| max_2x2_forward_plane(wide, x, y, g, buffer),
        );
    y
}

/// The separable forward of any pool: `combine_row(acc, row)` folds each further window
/// row into the first, then `reduce_window(span, rows, cols)` turns the folded columns
/// `span` of window `(rows, cols)` into its output.
fn rows_then_columns<T: Copy + Send + Sync + Default>(
    x: &[T],
    g: &Pool2dGeometry,
    combine_row: impl Fn(&mut [T], &[T]) + Sync + Send,
    reduce_window: impl Fn(&[T], &Range<usize>, &Range<usize>) -> T + Sync + Send,
) -> Vec<T> {
    let win = Windows::new(g);
    let in_w = g.in_w;
    let mut y = vec![T::default(); g.batch * g.channels * win.out_plane];
    y.par_chunks_mut(win.out_plane)
        .zip(x.par_chunks(win.in_plane))
        .with_min_len(win.min_planes())
        .for_each_init(
            || vec![T::default(); in_w],
            |buffer, (y, x)| {
                for (y_row, rows) in y.chunks_mut(g.out_w).zip(&win.rows) {
                    let first = &x[rows.start * in_w..(rows.start + 1) * in_w];
                    let columns: &[T] = if rows.len() == 1 {
                        first
                    } else {
                        buffer.copy_from_slice(first);
                        for h in rows.start + 1..rows.end {
                            combine_row(buffer, &x[h * in_w..(h + 1) * in_w]);
                        }
                        buffer
                    };
                    for (out, cols) in y_row.iter_mut().zip(&win.cols) {
                        *out = reduce_window(&columns[cols.clone()], rows, cols);
                    }
                }
            },
        );
    y
}

pub fn backward<T: Element>(x: &[T], dy: &[T], g: &Pool2dGeometry) -> Vec<T> {
    let win = Windows::new(g);
    let wide = is_max_2x2(g) && has_avx512();
    // Each task owns whole input planes, so the scattered additions never race.
    filled_in_parallel(x.len(), win.in_plane, win.min_planes(), |plane, dx| {
        let x = &x[plane * win.in_plane..][..win.in_plane];
        let dy = &dy[plane * win.out_plane..][..win.out_plane];
        if is_max_2x2(g) && all_finite(wide, x) {
            let mut cells = vec![T::zero(); 4 * win.out_plane];
            max_2x2_backward_finite(wide, x, dy, dx, g, &mut cells);
        } else if is_max_2x2(g) {
            max_2x2_backward_plane(wide, x, dy, dx, g, &win);
        } else {
            backward_plane(x, dy, dx, g, &win);
        }
    })
}

wide_loop! {
/// Sets `*finite` to whether every element of `xs` is finite; a full pass rather than an
/// early exit, so that it vectorises.
fn check_finite<T: Element>(xs: &[T], finite: &mut bool) {
    *finite = xs.iter().fold(true, |acc, v| acc & v.is_finite());
}
}

fn all_finite<T: Element>(wide: bool, xs: &[T]) -> bool {
    let mut finite = false;
    check_finite(wide, xs, &mut finite);
    finite
}

wide_loop! {
/// Backward of one plane of finite values into `dx`, which holds zeros, as elementwise
/// loops over the whole plane: the four cells of every window are gathered into four runs
/// (`cells`, `4 x OH*OW`; cells in the padding read as -inf, which no finite value loses
/// to), the gradient is routed to the first cell equal to the window's max, and the runs
/// are merged back into the input rows. Row by row, a plane of the network's narrower
/// pools (3 to 8 windows a row) leaves the vector units mostly idle.
fn max_2x2_backward_finite<T: Element>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    g: &Pool2dGeometry,
    cells: &mut [T],
) {
    let (h, w, ow) = (g.in_h, g.in_w, g.out_w);
    let [ph, pw] = g.padding;
    let n = g.out_h * ow;
    let [a, b, c, d] = four_runs(cells, n);
    // Input row of output row `oy`'s window row `r`, if it is inside the image.
    let input_row = |oy: usize, r: usize| (2 * oy + r).checked_sub(ph).filter(|&y| y < h);
    for run in [&mut *a, &mut *b, &mut *c, &mut *d] {
        run.fill(T::neg_infinity());
    }
    for oy in 0..g.out_h {
        let span = oy * ow..(oy + 1) * ow;
        if let Some(y) = input_row(oy, 0) {
            split_columns(&x[y * w..][..w], pw, &mut a[span.clone()], &mut b[span.clone()]);
        }
        if let Some(y) = input_row(oy, 1) {
            split_columns(&x[y * w..][..w], pw, &mut c[span.clone()], &mut d[span]);
        }
    }
    route_runs(a, b, c, d, &dy[..n]);
    for oy in 0..g.out_h {
        let span = oy * ow..(oy + 1) * ow;
        if let Some(y) = input_row(oy, 0) {
            merge_columns(&a[span.clone()], &b[span.clone()], pw, &mut dx[y * w..][..w]);
        }
        if let Some(y) = input_row(oy, 1) {
            merge_columns(&c[span.clone()], &d[span], pw, &mut dx[y * w..][..w]);
        }
    }
}
}

/// The first `4 n` values of `runs` as four runs of `n`: the top-left, top-right,
/// bottom-left and bottom-right cells of a plane's 2x2 windows.
#[inline(always)]
pub(super) fn four_runs<T>(runs: &mut [T], n: usize) -> [&mut [T]; 4] {
    let (top, bottom) = runs[..4 * n].split_at_mut(2 * n);
    let (a, b) = top.split_at_mut(n);
    let (c, d) = bottom.split_at_mut(n);
    [a, b, c, d]
}

/// Replaces each window's cells `a, b, c, d` (row-major order) by the gradient on the
/// first one equal to their max and zero on the others.
#[inline(always)]
fn route_runs<T: Element>(a: &mut [T], b: &mut [T], c: &mut [T], d: &mut [T], grad: &[T]) {
    let n = grad.len();
    let (a, b, c, d) = (&mut a[..n], &mut b[..n], &mut c[..n], &mut d[..n]);
    for k in 0..n {
        [a[k], b[k], c[k], d[k]] = route_window([a[k], b[k], c[k], d[k]], grad[k]);
    }
}

/// Backward of one plane of any pool into `dx`, which holds zeros.
fn backward_plane<T: Element>(x: &[T], dy: &[T], dx: &mut [T], g: &Pool2dGeometry, win: &Windows) {
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
                        let row = &mut dx[h * win.in_w + cols.start..h * win.in_w + cols.end];
                        for d in row {
                            *d += share;
                        }
                    }
                }
            }
        }
    }
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

wide_loop! {
/// Forward of one plane: each output row first takes the element-wise max of its (one or
/// two) input rows, then the max of each column pair.
fn max_2x2_forward_plane<T: MaxValue>(
    x: &[T],
    y: &mut [T],
    g: &Pool2dGeometry,
    buffer: &mut [T],
) {
    let (h, w, pw) = (g.in_h, g.in_w, g.padding[1]);
    let full = full_columns(g);
    let first = 2 * full.start - pw;
    for (oh, y_row) in y.chunks_exact_mut(g.out_w).enumerate() {
        let rows = pair_range(oh, g.padding[0], h);
        let upper = &x[rows.start * w..][..w];
        let m: &[T] = if rows.len() == 2 {
            max_rows(upper, &x[(rows.start + 1) * w..][..w], buffer);
            buffer
        } else {
            upper
        };
        max_pairs(
            &m[first..first + 2 * full.len()],
            &mut y_row[full.clone()],
        );
        // Edge windows with one column (padding on the left, an odd width on the right).
        for ow in (0..full.start).chain(full.end..g.out_w) {
            y_row[ow] = m[pair_range(ow, pw, w).start];
        }
    }
}
}

/// `out = max(a, b)` element-wise.
#[inline(always)]
fn max_rows<T: MaxValue>(a: &[T], b: &[T], out: &mut [T]) {
    for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
        *o = max_nan(u, v);
    }
}

/// `out[i] = max(m[2i], m[2i + 1])`.
#[inline(always)]
fn max_pairs<T: MaxValue>(m: &[T], out: &mut [T]) {
    for (o, pair) in out.iter_mut().zip(m.chunks_exact(2)) {
        *o = max_nan(pair[0], pair[1]);
    }
}

wide_loop! {
/// Backward of one plane holding a NaN or an infinity (finite planes take
/// [`max_2x2_backward_finite`]) into `dx`, which holds zeros, row by row. Each window's
/// cells are written once (windows do not overlap), by branch-free loops: full 2x2 windows compare their
/// cells against the window's max, windows that padding cuts to one row or one column
/// use [`max_nan`]'s select. A row pair holding a NaN (where "first maximum" means "last
/// NaN") takes the general path.
fn max_2x2_backward_plane<T: Element>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    g: &Pool2dGeometry,
    win: &Windows,
) {
    let (h, w) = (g.in_h, g.in_w);
    let full = full_columns(g);
    let cols = 2 * full.start - g.padding[1]..2 * full.end - g.padding[1];
    for (oh, dy_row) in dy.chunks_exact(g.out_w).enumerate() {
        let rows = pair_range(oh, g.padding[0], h);
        let x_rows = &x[rows.start * w..][..rows.len() * w];
        let dx_rows = &mut dx[rows.start * w..][..rows.len() * w];
        let grads = &dy_row[full.clone()];
        if rows.len() == 1 {
            route_pairs(
                &x_rows[cols.clone()],
                grads,
                &mut dx_rows[cols.clone()],
            );
        } else if has_nan(&x_rows[cols.clone()])
            || has_nan(&x_rows[w + cols.start..w + cols.end])
        {
            for ow in full.clone() {
                let index = win.argmax(x, &win.rows[oh], &win.cols[ow]);
                dx[index] += dy_row[ow];
            }
        } else {
            let (above, below) = dx_rows.split_at_mut(w);
            route_full_windows(
                &x_rows[cols.clone()],
                &x_rows[w + cols.start..w + cols.end],
                grads,
                &mut above[cols.clone()],
                &mut below[cols.clone()],
            );
        }
        route_edges(x, dy_row, dx, g, oh, &full);
    }
}
}

/// The windows of output row `oh` left of and right of `full`: one input column each
/// (padding or an odd width cut the other), one or two rows.
fn route_edges<T: Element>(
    x: &[T],
    dy_row: &[T],
    dx: &mut [T],
    g: &Pool2dGeometry,
    oh: usize,
    full: &Range<usize>,
) {
    let w = g.in_w;
    let rows = pair_range(oh, g.padding[0], g.in_h);
    for ow in (0..full.start).chain(full.end..g.out_w) {
        let top = rows.start * w + pair_range(ow, g.padding[1], w).start;
        let grad = dy_row[ow];
        if rows.len() == 2 {
            let (a, b) = (x[top], x[top + w]);
            let lower = b.beats(a);
            dx[top] = if lower { T::zero() } else { grad };
            dx[top + w] = if lower { grad } else { T::zero() };
        } else {
            dx[top] = grad;
        }
    }
}

/// Windows of one row and two columns (padding cut the other row): the second cell
/// wins if it is larger or NaN, as in [`Windows::argmax`].
#[inline(always)]
fn route_pairs<T: Element>(a: &[T], grad: &[T], da: &mut [T]) {
    let zero = T::zero();
    for ((a, da), &g) in a.chunks_exact(2).zip(da.chunks_exact_mut(2)).zip(grad) {
        let second = a[1].beats(a[0]);
        da[0] = if second { zero } else { g };
        da[1] = if second { g } else { zero };
    }
}

/// Whether `xs` holds a NaN; a full pass rather than an early exit, so it vectorises.
#[inline(always)]
fn has_nan<T: Element>(xs: &[T]) -> bool {
    xs.iter().fold(false, |acc, v| acc | v.is_nan())
}

/// Full 2x2 windows whose rows are `a` and `b` (two columns per window, no NaN): each
/// gradient goes to the first cell, in row-major order, equal to the window's max.
/// Blocks of [`LANES`] windows are split into per-cell arrays first, a form the compiler
/// turns into vector code.
#[inline(always)]
fn route_full_windows<T: Element>(a: &[T], b: &[T], grad: &[T], da: &mut [T], db: &mut [T]) {
    let blocks = grad.len() / LANES * LANES;
    let (a_blocks, b_blocks) = (&a[..2 * blocks], &b[..2 * blocks]);
    let (da_blocks, db_blocks) = (&mut da[..2 * blocks], &mut db[..2 * blocks]);
    let block_iter = a_blocks
        .chunks_exact(2 * LANES)
        .zip(b_blocks.chunks_exact(2 * LANES))
        .zip(da_blocks.chunks_exact_mut(2 * LANES))
        .zip(db_blocks.chunks_exact_mut(2 * LANES))
        .zip(grad.chunks_exact(LANES));
    for ((((a, b), da), db), g) in block_iter {
        let mut cells = [[T::zero(); LANES]; 4];
        for j in 0..LANES {
            cells[0][j] = a[2 * j];
            cells[1][j] = a[2 * j + 1];
            cells[2][j] = b[2 * j];
            cells[3][j] = b[2 * j + 1];
        }
        let mut out = [[T::zero(); LANES]; 4];
        for j in 0..LANES {
            let window = [cells[0][j], cells[1][j], cells[2][j], cells[3][j]];
            let routed = route_window(window, g[j]);
            for (o, r) in out.iter_mut().zip(routed) {
                o[j] = r;
            }
        }
        for j in 0..LANES {
            da[2 * j] = out[0][j];
            da[2 * j + 1] = out[1][j];
            db[2 * j] = out[2][j];
            db[2 * j + 1] = out[3][j];
        }
    }
    let rest = a[2 * blocks..]
        .chunks_exact(2)
        .zip(b[2 * blocks..].chunks_exact(2))
        .zip(da[2 * blocks..].chunks_exact_mut(2))
        .zip(db[2 * blocks..].chunks_exact_mut(2));
    for ((((a, b), da), db), &g) in rest.zip(&grad[blocks..]) {
        let routed = route_window([a[0], a[1], b[0], b[1]], g);
        da.copy_from_slice(&routed[..2]);
        db.copy_from_slice(&routed[2..]);
    }
}

/// Windows per block of [`route_full_windows`] (and of the argmax forward's loop): one
/// AVX-512 register of f32.
pub(super) const LANES: usize = 16;

/// `grad` on the first of four cells (no NaN among them) equal to their max, zero elsewhere.
#[inline(always)]
fn route_window<T: Element>([a0, a1, b0, b1]: [T; 4], g: T) -> [T; 4] {
    let m = max_nan(max_nan(a0, a1), max_nan(b0, b1));
    let (e0, e1, e2) = (a0 == m, a1 == m, b0 == m);
    let zero = T::zero();
    [
        if e0 { g } else { zero },
        if !e0 & e1 { g } else { zero },
        if !e0 & !e1 & e2 { g } else { zero },
        if !e0 & !e1 & !e2 { g } else { zero },
    ]
}
