//! Max pooling on the host that keeps each window's winning cell for the backward pass,
//! as PyTorch's `max_pool2d_with_indices` does.
//!
//! Without it, the backward reads the whole input again to find each window's maximum (and
//! first checks it for NaN and infinities). With it, the backward reads one byte per
//! output: for the network's 2x2 pools a sixteenth of the input's bytes in f32.
//!
//! A cell is its row-major position in the window as if no padding clipped it:
//! `dh * kernel_w + dw` for the cell `dh` rows and `dw` columns from the window's
//! top-left corner (which may lie in the padding). The winner is the one
//! [`super::forward`]'s value comes from: the first maximum in row-major order, a NaN beating
//! any number and a later NaN an earlier one. A bf16 input is compared widened to f32 and
//! copied as it is ([`MaxValue`]): the same cells as the f32 kernel on the widened input.

use rayon::prelude::*;

use super::cpu::{four_runs, MaxValue, Windows, LANES};
use super::Pool2dGeometry;
use crate::bf16_values::Stored;
use crate::columns::{merge_columns, split_columns};
use crate::output::filled_in_parallel;
use crate::simd::{has_avx512, wide_loop};

/// Largest window whose cells a byte can number.
pub(super) const MAX_CELLS: usize = 256;

/// The fast path's geometry: 2x2 windows, stride 2, no padding (both networks' pools).
/// Windows then tile the input's top-left `2 out_h x 2 out_w` cells without overlap or
/// clipping, and each plane splits into four runs of cells, one per window position.
fn is_unpadded_2x2(g: &Pool2dGeometry) -> bool {
    g.kernel == [2, 2] && g.stride == [2, 2] && g.padding == [0, 0]
}

/// `(max, cell)` of each window of `x` (NCHW, `g.input_shape()`).
pub(super) fn forward<T: MaxValue>(x: &[T], g: &Pool2dGeometry) -> (Vec<T>, Vec<u8>) {
    let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
    let planes = g.batch * g.channels;
    let mut y = vec![T::default(); planes * out_plane];
    let mut cells = vec![0u8; planes * out_plane];
    if in_plane == 0 || out_plane == 0 {
        return (y, cells);
    }
    let wide = has_avx512();
    let windows = Windows::new(g);
    let unpadded_2x2 = is_unpadded_2x2(g);
    y.par_chunks_mut(out_plane)
        .zip(cells.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(windows.min_planes())
        .for_each_init(
            // The runs of cells only the 2x2 path uses.
            || vec![T::default(); if unpadded_2x2 { 4 * out_plane } else { 0 }],
            |runs, ((y, cells), x)| {
                if unpadded_2x2 {
                    forward_unpadded_2x2(wide, x, y, cells, g, runs);
                } else {
                    forward_plane(x, y, cells, g, &windows);
                }
            },
        );
    (y, cells)
}

/// `dL/dx` from `dL/dy` and the winning cells: each gradient added to its window's winner,
/// stored as `dy` is. A bf16 gradient is exact only where windows do not overlap (each
/// cell then receives at most one gradient, added to zero once); the caller computes
/// overlapping windows in f32 and rounds the sums once.
pub(super) fn backward<T: Stored>(cells: &[u8], dy: &[T], g: &Pool2dGeometry) -> Vec<T> {
    let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
    let wide = has_avx512();
    let unpadded_2x2 = is_unpadded_2x2(g);
    // Each task owns whole input planes, so the (possibly overlapping) additions never race.
    filled_in_parallel(
        g.batch * g.channels * in_plane,
        in_plane,
        Windows::new(g).min_planes(),
        |plane, dx| {
            let cells = &cells[plane * out_plane..][..out_plane];
            let dy = &dy[plane * out_plane..][..out_plane];
            if unpadded_2x2 {
                let mut runs = vec![T::default(); 4 * out_plane];
                backward_unpadded_2x2(wide, cells, dy, dx, g, &mut runs);
            } else {
                backward_plane(cells, dy, dx, g);
            }
        },
    )
}

/// The first row and column of output `(oh, ow)`'s window, in padded coordinates.
fn origin(g: &Pool2dGeometry, oh: usize, ow: usize) -> (usize, usize) {
    (oh * g.stride[0], ow * g.stride[1])
}

/// Any window: its in-bounds cells (padding never wins), the winner found by
/// [`Windows::argmax_cell`], the recomputing backward's rule.
fn forward_plane<T: MaxValue>(
    x: &[T],
    y: &mut [T],
    cells: &mut [u8],
    g: &Pool2dGeometry,
    windows: &Windows,
) {
    let kw = g.kernel[1];
    for (oh, rows) in windows.rows.iter().enumerate() {
        for (ow, cols) in windows.cols.iter().enumerate() {
            let (row, col) = windows.argmax_cell(x, rows, cols);
            let (top, left) = origin(g, oh, ow);
            // The winner's offset from the window's corner, in padded coordinates.
            let (dh, dw) = (row + g.padding[0] - top, col + g.padding[1] - left);
            y[oh * g.out_w + ow] = x[row * g.in_w + col];
            cells[oh * g.out_w + ow] = (dh * kw + dw) as u8;
        }
    }
}

fn backward_plane<T: Stored>(cells: &[u8], dy: &[T], dx: &mut [T], g: &Pool2dGeometry) {
    let kw = g.kernel[1];
    let [ph, pw] = g.padding;
    for oh in 0..g.out_h {
        for ow in 0..g.out_w {
            let k = oh * g.out_w + ow;
            let (top, left) = origin(g, oh, ow);
            let cell = cells[k] as usize;
            // The forward only ever records in-bounds cells.
            let row = top + cell / kw - ph;
            let col = left + cell % kw - pw;
            let cell = &mut dx[row * g.in_w + col];
            *cell = T::store(cell.load() + dy[k].load());
        }
    }
}

wide_loop! {
/// Forward of one plane of 2x2 windows without padding: the four cells of every window
/// gathered into four runs (`runs`, `4 x OH*OW`), then one elementwise pass picks each
/// window's winner.
fn forward_unpadded_2x2<T: MaxValue>(
    x: &[T],
    y: &mut [T],
    cells: &mut [u8],
    g: &Pool2dGeometry,
    runs: &mut [T],
) {
    let (w, ow, n) = (g.in_w, g.out_w, g.out_h * g.out_w);
    let [a, b, c, d] = four_runs(runs, n);
    for oy in 0..g.out_h {
        let span = oy * ow..(oy + 1) * ow;
        split_columns(&x[2 * oy * w..][..w], 0, &mut a[span.clone()], &mut b[span.clone()]);
        split_columns(&x[(2 * oy + 1) * w..][..w], 0, &mut c[span.clone()], &mut d[span]);
    }
    pick_winners([a, b, c, d], &mut y[..n], &mut cells[..n]);
}
}

/// Each window's winner from the four runs of its cells, in blocks of [`LANES`] windows,
/// then one by one. Left to choose, the vectoriser takes 32 bf16 windows at a time, and a
/// 7x7 plane's 49 windows left 17 to a scalar tail of unpredictable branches: the bf16
/// pool from 15x15 ran 30% slower than the f32 one, which does 16 at a time.
#[inline(always)]
fn pick_winners<T: MaxValue>([a, b, c, d]: [&[T]; 4], y: &mut [T], cells: &mut [u8]) {
    let full = y.len() / LANES * LANES;
    let blocks = y[..full]
        .chunks_exact_mut(LANES)
        .zip(cells[..full].chunks_exact_mut(LANES))
        .zip(a.chunks_exact(LANES).zip(b.chunks_exact(LANES)))
        .zip(c.chunks_exact(LANES).zip(d.chunks_exact(LANES)));
    for (((y, cells), (a, b)), (c, d)) in blocks {
        for j in 0..LANES {
            (y[j], cells[j]) = first_max_of_four([a[j], b[j], c[j], d[j]]);
        }
    }
    for k in full..y.len() {
        (y[k], cells[k]) = first_max_of_four([a[k], b[k], c[k], d[k]]);
    }
}

wide_loop! {
/// Backward of one plane of 2x2 windows without padding into `dx`, which holds zeros:
/// each gradient placed on its cell's run, and the runs merged back into the input rows
/// (a last odd row or column, in no window, stays zero). Each gradient is copied as it is,
/// so any stored type gives the bits of its f32 copy.
fn backward_unpadded_2x2<T: Stored>(
    cells: &[u8],
    dy: &[T],
    dx: &mut [T],
    g: &Pool2dGeometry,
    runs: &mut [T],
) {
    let (w, ow, n) = (g.in_w, g.out_w, g.out_h * g.out_w);
    let [a, b, c, d] = four_runs(runs, n);
    let zero = T::default();
    for k in 0..n {
        let (cell, grad) = (cells[k], dy[k]);
        a[k] = if cell == 0 { grad } else { zero };
        b[k] = if cell == 1 { grad } else { zero };
        c[k] = if cell == 2 { grad } else { zero };
        d[k] = if cell == 3 { grad } else { zero };
    }
    for oy in 0..g.out_h {
        let span = oy * ow..(oy + 1) * ow;
        merge_columns(&a[span.clone()], &b[span.clone()], 0, &mut dx[2 * oy * w..][..w]);
        merge_columns(&c[span.clone()], &d[span], 0, &mut dx[(2 * oy + 1) * w..][..w]);
    }
}
}

/// The first of four cells (row-major) holding their maximum, a NaN beating any number
/// and a later NaN an earlier one; selects, not branches, so a loop over windows
/// vectorises.
#[inline(always)]
fn first_max_of_four<T: MaxValue>(window: [T; 4]) -> (T, u8) {
    let (mut best, mut cell) = (window[0], 0u8);
    for (i, &v) in window.iter().enumerate().skip(1) {
        let take = v.beats(best);
        best = if take { v } else { best };
        cell = if take { i as u8 } else { cell };
    }
    (best, cell)
}
