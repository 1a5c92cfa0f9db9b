//! 3x3 stride-1 convolutions on wide images by Winograd's F(4x4, 3x3): the 4x4 block of
//! outputs of each tile from the 6x6 block of inputs it reads,
//!
//! ```text
//! Y = A^T [ (G g G^T) . (B^T d B) ] A
//!
//!        [4  0 -5  0  1  0]          [ 1/4    0     0  ]
//!        [0 -4 -4  1  1  0]          [-1/6  -1/6  -1/6 ]          [1  1  1  1  1  0]
//! B^T =  [0  4 -4 -1  1  0]      G = [-1/6   1/6  -1/6 ]    A^T = [0  1 -1  2 -2  0]
//!        [0 -2 -1  2  1  0]          [1/24  1/12   1/6 ]          [0  1  1  4  4  0]
//!        [0  2 -1 -2  1  0]          [1/24 -1/12   1/6 ]          [0  1 -1  8 -8  1]
//!        [0  4  0 -5  0  1]          [  0     0     1  ]
//! ```
//!
//! 36 products of `C_out x C_in` per tile of 16 outputs: 2.25 multiplies per output and
//! input channel, against F(2x2, 3x3)'s 4 (`f2x2.rs`, which this follows step for
//! step) and the direct product's 9. Its transforms mix inputs with weights up to 8, so
//! f32 results move by a few more units in the last place: about 3e-6 of the largest
//! output for 128 channels, against 5e-7 for F(2x2, 3x3) (both measured against f64
//! sums); the tests hold both to the direct path's tolerances. Used where rows of tiles
//! are long (`cpu/mod.rs` says from which size): the network's layer1.1 and its input
//! gradient.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::{split_tile_rows, Tiles, Variant};
use crate::conv2d::cpu::Scratch;
use crate::conv2d::Conv2dGeometry;
use crate::simd::wide_loop;
use crate::Element;

/// `U = G g G^T` for every (co, ci): `[36][C_out][C_in]`.
fn transform_weights<T: Element>(w: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let g_times = |[g0, g1, g2]: [T; 3]| -> [T; 6] {
        let (q, s, t) = (T::of(0.25), T::of(1.0 / 6.0), T::of(1.0 / 24.0));
        let (twelfth, sixth) = (T::of(1.0 / 12.0), T::of(1.0 / 6.0));
        [
            q * g0,
            -s * (g0 + g1 + g2),
            -s * (g0 - g1 + g2),
            t * g0 + twelfth * g1 + sixth * g2,
            t * g0 - twelfth * g1 + sixth * g2,
            g2,
        ]
    };
    let pairs = c_out * c_in;
    let mut u = vec![T::zero(); 36 * pairs];
    for (pair, g) in w.chunks_exact(9).enumerate() {
        let columns: [[T; 6]; 3] = std::array::from_fn(|c| g_times([g[c], g[3 + c], g[6 + c]]));
        for r in 0..6 {
            let row = g_times([columns[0][r], columns[1][r], columns[2][r]]);
            for (c, v) in row.into_iter().enumerate() {
                u[(6 * r + c) * pairs + pair] = v;
            }
        }
    }
    u
}

/// F(4x4, 3x3) for the driver's [`super::forward`] and [`super::weight_grad`].
pub(crate) fn variant<T: Scratch>(g: &Conv2dGeometry) -> Variant<T> {
    Variant {
        positions: 36,
        tiles: Tiles::of_side(g, 4),
        // 24 runs of `cols + 1` for the 4 column phases of 6 input rows, 36 runs of
        // `cols` for the rows times B; the output transforms use less.
        scratch_len: |cols| 24 * (cols + 1) + 36 * cols,
        transform_weights,
        transform_input,
        transform_output,
        transform_output_grad,
        transform_weight_grad,
    }
}

/// `B^T` applied to six runs (`d0..d5`, the six entries of a column or row of a block).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bt<T: Element>(
    d: [&[T]; 6],
    t0: &mut [T],
    t1: &mut [T],
    t2: &mut [T],
    t3: &mut [T],
    t4: &mut [T],
    t5: &mut [T],
) {
    let n = t0.len();
    let [d0, d1, d2, d3, d4, d5] = d.map(|d| &d[..n]);
    let (t1, t2, t3, t4, t5) = (
        &mut t1[..n],
        &mut t2[..n],
        &mut t3[..n],
        &mut t4[..n],
        &mut t5[..n],
    );
    let (four, five, two) = (T::of(4.0), T::of(5.0), T::of(2.0));
    for k in 0..n {
        t0[k] = four * d0[k] - five * d2[k] + d4[k];
        t1[k] = d3[k] + d4[k] - four * (d1[k] + d2[k]);
        t2[k] = four * (d1[k] - d2[k]) - d3[k] + d4[k];
        t3[k] = two * (d3[k] - d1[k]) - d2[k] + d4[k];
        t4[k] = two * (d1[k] - d3[k]) - d2[k] + d4[k];
        t5[k] = four * d1[k] - five * d3[k] + d5[k];
    }
}

wide_loop! {
/// `V = B^T d B` for the tile rows `rows` into `v`, `[36][C_in][rows.len() * stride]`.
fn transform_input<T: Element>(
    x: &[T],
    g: &Conv2dGeometry,
    tiles: Tiles,
    rows: Range<usize>,
    v: &mut [T],
    scratch: &mut [T],
) {
    let (c_in, h, w) = (g.in_channels, g.in_h, g.in_w);
    let [ph, pw] = g.padding;
    let stride = tiles.stride();
    let cols = rows.len() * stride;
    // 4 phase runs (cols + 1 each) for each of the 6 input rows of a tile, then the 36
    // runs of the rows times B.
    let (split, rest) = scratch.split_at_mut(24 * (cols + 1));
    let mut split: Vec<&mut [T]> = split.chunks_exact_mut(cols + 1).collect();
    let mut t: Vec<&mut [T]> = rest[..36 * cols].chunks_exact_mut(cols.max(1)).collect();
    for ci in 0..c_in {
        let plane = |n: usize| &x[(n * c_in + ci) * h * w..][..h * w];
        split_tile_rows(plane, [h, w], [ph, pw], tiles, rows.clone(), &mut split);
        // Each input row times B: its 6 entries per tile are phases 0-3 of the tile and
        // phases 0-1 of the next one.
        for i in 0..6 {
            let p = |j: usize, next: usize| &split[4 * i + j][next..next + cols];
            let d = [p(0, 0), p(1, 0), p(2, 0), p(3, 0), p(0, 1), p(1, 1)];
            let [t0, t1, t2, t3, t4, t5] = t
                .get_disjoint_mut(std::array::from_fn(|j| 6 * i + j))
                .expect("36 runs");
            bt(d, t0, t1, t2, t3, t4, t5);
        }
        // B^T down each column of 6 rows, into V's rows (6r + c) * C_in + ci.
        for c in 0..6 {
            let d: [&[T]; 6] = std::array::from_fn(|i| &*t[6 * i + c]);
            let mut out = v
                .chunks_exact_mut(c_in * cols)
                .skip(c)
                .step_by(6)
                .map(|xi| &mut xi[ci * cols..][..cols]);
            let mut next = || out.next().expect("V has 36 rows");
            let (v0, v1, v2, v3, v4, v5) = (next(), next(), next(), next(), next(), next());
            bt(d, v0, v1, v2, v3, v4, v5);
        }
    }
}
}

/// `A^T` applied to six runs: four runs out.
#[inline(always)]
fn at<T: Element>(m: [&[T]; 6], y0: &mut [T], y1: &mut [T], y2: &mut [T], y3: &mut [T]) {
    let n = y0.len();
    let [m0, m1, m2, m3, m4, m5] = m.map(|m| &m[..n]);
    let (y1, y2, y3) = (&mut y1[..n], &mut y2[..n], &mut y3[..n]);
    let (two, four, eight) = (T::of(2.0), T::of(4.0), T::of(8.0));
    for k in 0..n {
        let (sum, diff) = (m1[k] + m2[k], m1[k] - m2[k]);
        let (sum2, diff2) = (m3[k] + m4[k], m3[k] - m4[k]);
        y0[k] = m0[k] + sum + sum2;
        y1[k] = diff + two * diff2;
        y2[k] = sum + four * sum2;
        y3[k] = diff + eight * diff2 + m5[k];
    }
}

wide_loop! {
/// `y = A^T M A (+ bias)` for the tile rows `rows` from `m` (`[36][C_out][rows.len() *
/// stride]`) into `out`, the group's images.
#[allow(clippy::too_many_arguments)]
fn transform_output<T: Element>(
    m: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    tiles: Tiles,
    rows: Range<usize>,
    out: &mut [MaybeUninit<T>],
    scratch: &mut [T],
) {
    let (c_out, oh, ow) = (g.out_channels, g.out_h, g.out_w);
    let (tc, stride) = (tiles.cols, tiles.stride());
    let cols = rows.len() * stride;
    // A^T M: 4 rows of 6 runs; then one output row's 4 phases.
    let (s, rest) = scratch.split_at_mut(24 * cols);
    let mut s: Vec<&mut [T]> = s.chunks_exact_mut(cols.max(1)).collect();
    let mut y: Vec<&mut [T]> = rest[..4 * cols].chunks_exact_mut(cols.max(1)).collect();
    for co in 0..c_out {
        let run = |xi: usize| &m[(xi * c_out + co) * cols..][..cols];
        for c in 0..6 {
            let rows_of_m: [&[T]; 6] = std::array::from_fn(|i| run(6 * i + c));
            let [s0, s1, s2, s3] = s.get_disjoint_mut([c, 6 + c, 12 + c, 18 + c]).expect("24 runs");
            at(rows_of_m, s0, s1, s2, s3);
        }
        let b = bias.map_or(T::zero(), |b| b[co]);
        for r in 0..4 {
            let row: [&[T]; 6] = std::array::from_fn(|c| &*s[6 * r + c]);
            let [y0, y1, y2, y3] = y.get_disjoint_mut([0, 1, 2, 3]).expect("4 runs");
            at(row, y0, y1, y2, y3);
            for (local, tile_row) in rows.clone().enumerate() {
                let (n, ty) = (tile_row / tiles.rows, tile_row % tiles.rows);
                let oy = 4 * ty + r;
                if oy >= oh {
                    continue;
                }
                let plane = &mut out[(n * c_out + co) * oh * ow..][..oh * ow];
                let dst = &mut plane[oy * ow..][..ow];
                let phase = |q: usize| &y[q][local * stride..][..tc];
                let (q0, q1, q2, q3) = (phase(0), phase(1), phase(2), phase(3));
                let mut quads = dst.chunks_exact_mut(4);
                for ((((d, &a), &b1), &c), &e) in (&mut quads).zip(q0).zip(q1).zip(q2).zip(q3) {
                    d[0] = MaybeUninit::new(a + b);
                    d[1] = MaybeUninit::new(b1 + b);
                    d[2] = MaybeUninit::new(c + b);
                    d[3] = MaybeUninit::new(e + b);
                }
                let k = ow / 4;
                for (d, q) in quads.into_remainder().iter_mut().zip([q0, q1, q2]) {
                    *d = MaybeUninit::new(q[k] + b);
                }
            }
        }
    }
}
}

/// `A` applied to four runs (`y0..y3`, a column or row of a tile's gradient): six runs out,
/// `[y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, y0 + 2 y1 + 4 y2 + 8 y3,
/// y0 - 2 y1 + 4 y2 - 8 y3, y3]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn a_times<T: Element>(
    y: [&[T]; 4],
    z0: &mut [T],
    z1: &mut [T],
    z2: &mut [T],
    z3: &mut [T],
    z4: &mut [T],
    z5: &mut [T],
) {
    let n = z0.len();
    let [y0, y1, y2, y3] = y.map(|y| &y[..n]);
    let (z1, z2, z3, z4, z5) = (
        &mut z1[..n],
        &mut z2[..n],
        &mut z3[..n],
        &mut z4[..n],
        &mut z5[..n],
    );
    let (two, four, eight) = (T::of(2.0), T::of(4.0), T::of(8.0));
    for k in 0..n {
        let (even, odd) = (y0[k] + y2[k], y1[k] + y3[k]);
        let (even4, odd2) = (y0[k] + four * y2[k], two * y1[k] + eight * y3[k]);
        z0[k] = y0[k];
        z1[k] = even + odd;
        z2[k] = even - odd;
        z3[k] = even4 + odd2;
        z4[k] = even4 - odd2;
        z5[k] = y3[k];
    }
}

wide_loop! {
/// `dL/dZ = A dY A^T` for the tile rows `rows` into `dz`, `[36][C_out][rows.len() *
/// stride]`, from `gy`, the group's output gradient.
fn transform_output_grad<T: Element>(
    gy: &[T],
    g: &Conv2dGeometry,
    tiles: Tiles,
    rows: Range<usize>,
    dz: &mut [T],
    scratch: &mut [T],
) {
    let (c_out, oh, ow) = (g.out_channels, g.out_h, g.out_w);
    let stride = tiles.stride();
    let cols = rows.len() * stride;
    // The 4 column phases of each of a tile's 4 gradient rows (zero past the output and
    // in the junk column), then A dY: 6 rows of 4 runs.
    let (split, rest) = scratch.split_at_mut(16 * (cols + 1));
    let mut split: Vec<&mut [T]> = split.chunks_exact_mut(cols + 1).collect();
    let mut p: Vec<&mut [T]> = rest[..24 * cols].chunks_exact_mut(cols.max(1)).collect();
    for co in 0..c_out {
        let plane = |n: usize| &gy[(n * c_out + co) * oh * ow..][..oh * ow];
        split_tile_rows(plane, [oh, ow], [0, 0], tiles, rows.clone(), &mut split);
        // A down each column q of the tile: P[i][q] for i = 0..6.
        for q in 0..4 {
            let column: [&[T]; 4] = std::array::from_fn(|r| &split[4 * r + q][..cols]);
            let [p0, p1, p2, p3, p4, p5] = p
                .get_disjoint_mut(std::array::from_fn(|i| 4 * i + q))
                .expect("24 runs");
            a_times(column, p0, p1, p2, p3, p4, p5);
        }
        // A along each row i of P, into dZ's rows (6i + j) * C_out + co.
        for i in 0..6 {
            let row: [&[T]; 4] = std::array::from_fn(|q| &*p[4 * i + q]);
            let mut out = dz
                .chunks_exact_mut(c_out * cols)
                .skip(6 * i)
                .take(6)
                .map(|xi| &mut xi[co * cols..][..cols]);
            let mut next = || out.next().expect("dZ has 36 rows");
            let (z0, z1, z2, z3, z4, z5) = (next(), next(), next(), next(), next(), next());
            a_times(row, z0, z1, z2, z3, z4, z5);
        }
    }
}
}

/// `dL/dg = G^T dL/dU G` per (co, ci), from `du` (`[36][C_out][C_in]`) to `[C_out][C_in][3][3]`.
fn transform_weight_grad<T: Element>(du: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    // G^T applied to 6 values.
    let gt = |[u0, u1, u2, u3, u4, u5]: [T; 6]| -> [T; 3] {
        let (sixth, twelfth, quarter, t24) = (
            T::of(1.0 / 6.0),
            T::of(1.0 / 12.0),
            T::of(0.25),
            T::of(1.0 / 24.0),
        );
        [
            quarter * u0 - sixth * (u1 + u2) + t24 * (u3 + u4),
            sixth * (u2 - u1) + twelfth * (u3 - u4),
            sixth * (u3 + u4 - u1 - u2) + u5,
        ]
    };
    let pairs = c_out * c_in;
    let mut gw = vec![T::zero(); pairs * 9];
    for (pair, out) in gw.chunks_exact_mut(9).enumerate() {
        let u = |i: usize, j: usize| du[(6 * i + j) * pairs + pair];
        // G^T dU: 3 rows of 6 (as 6 columns of 3), then (G^T dU) G: 3 x 3.
        let columns: [[T; 3]; 6] = std::array::from_fn(|j| gt(std::array::from_fn(|i| u(i, j))));
        for r in 0..3 {
            let row = gt(std::array::from_fn(|j| columns[j][r]));
            out[3 * r..3 * r + 3].copy_from_slice(&row);
        }
    }
    gw
}
