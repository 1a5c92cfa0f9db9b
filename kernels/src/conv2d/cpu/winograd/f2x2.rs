//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).
//!
//! Each 2x2 block of outputs (a tile) is computed from the 4x4 block of inputs it reads:
//!
//! ```text
//! Y = A^T [ (G g G^T) . (B^T d B) ] A        g: a 3x3 kernel, d: a 4x4 input block
//!
//!        [1  0 -1  0]          [ 1    0    0 ]
//! B^T =  [0  1  1  0]      G = [1/2  1/2  1/2]      A^T = [1  1  1  0]
//!        [0 -1  1  0]          [1/2 -1/2  1/2]            [0  1 -1 -1]
//!        [0  1  0 -1]          [ 0    0    1 ]
//! ```
//!
//! Summed over input channels, the elementwise product `.` becomes 16 independent matrix
//! products, one per position `xi` of the 4x4 transformed block (the driver, `mod.rs`, runs
//! them). 16 products of `C_out x C_in` per tile of 4 outputs make 4 multiplies per output and
//! input channel where the direct convolution makes 9. The transforms are additions only;
//! they run along whole rows of tiles (the 4 input rows of a row of tiles, split into even
//! and odd columns), which the compiler vectorises. Transformed blocks are 16 values per
//! 4 outputs, so `V` is 4x the input (`im2col`'s columns are 9x).
//!
//! The rounding differs from the direct sum (the transforms add and subtract inputs before
//! multiplying), by a few units in the last place of f32 at the network's sizes; the
//! tests hold it to the same tolerances as the direct path, against naive loops.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::{split_tile_rows, Tiles, Variant};
use crate::conv2d::cpu::Scratch;
use crate::conv2d::Conv2dGeometry;
use crate::simd::wide_loop;
use crate::Element;

/// `U = G g G^T` for every (co, ci): `[16][C_out][C_in]`.
fn transform_weights<T: Scratch>(w: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let half = T::of(0.5);
    let mut u = vec![T::zero(); 16 * c_out * c_in];
    for (pair, g) in w.chunks_exact(9).enumerate() {
        // G g: 4 rows of 3.
        let mut gg = [[T::zero(); 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            gg[0][c] = g0;
            gg[1][c] = (g0 + g1 + g2) * half;
            gg[2][c] = (g0 - g1 + g2) * half;
            gg[3][c] = g2;
        }
        // (G g) G^T: 4 x 4.
        for (r, row) in gg.iter().enumerate() {
            let [g0, g1, g2] = *row;
            let values = [g0, (g0 + g1 + g2) * half, (g0 - g1 + g2) * half, g2];
            for (c, v) in values.into_iter().enumerate() {
                u[(4 * r + c) * c_out * c_in + pair] = v;
            }
        }
    }
    u
}

/// F(2x2, 3x3) for the driver's [`super::forward`] and [`super::weight_grad`].
pub(crate) fn variant<T: Scratch>(g: &Conv2dGeometry) -> Variant<T> {
    Variant {
        positions: 16,
        tiles: Tiles::of_side(g, 2),
        scratch_len: |cols| 8 * (cols + 1) + 16 * cols,
        transform_weights,
        transform_input,
        transform_output,
        transform_output_grad,
        transform_weight_grad,
    }
}

wide_loop! {
/// `V = B^T d B` for the tile rows `rows` (counted over the group's images, `tiles.rows`
/// per image) into `v`, `[16][C_in][rows.len() * tiles.stride()]`.
///
/// Each row of tiles takes `tiles.cols + 1` columns, the last a junk column that the
/// products carry along and the output transform skips: with it, the whole chunk is one
/// run per (xi, ci), long enough to vectorise (a row of tiles is 3 to 16 tiles).
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
    // The even and odd input columns (in padded coordinates, zero outside the image) of
    // the 4 input rows of each row of tiles: tile tx reads even[tx], odd[tx], even[tx + 1],
    // odd[tx + 1] of its row's run.
    let (split, rest) = scratch.split_at_mut(8 * (cols + 1));
    let mut split: Vec<&mut [T]> = split.chunks_exact_mut(cols + 1).collect();
    // Each row times B, 4 runs per row.
    let mut t: Vec<&mut [T]> = rest[..16 * cols].chunks_exact_mut(cols.max(1)).collect();
    for ci in 0..c_in {
        let plane = |n: usize| &x[(n * c_in + ci) * h * w..][..h * w];
        split_tile_rows(plane, [h, w], [ph, pw], tiles, rows.clone(), &mut split);
        for i in 0..4 {
            let (e0, e1) = (&split[2 * i][..cols], &split[2 * i][1..=cols]);
            let (o0, o1) = (&split[2 * i + 1][..cols], &split[2 * i + 1][1..=cols]);
            let [t0, t1, t2, t3] = t
                .get_disjoint_mut([4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3])
                .expect("16 runs");
            row_times_b(e0, e1, o0, o1, t0, t1, t2, t3);
        }
        for c in 0..4 {
            let (a, b, d, f) = (&*t[c], &*t[4 + c], &*t[8 + c], &*t[12 + c]);
            let mut out = v
                .chunks_exact_mut(c_in * cols)
                .skip(c)
                .step_by(4)
                .map(|xi| &mut xi[ci * cols..][..cols]);
            let (Some(v0), Some(v1), Some(v2), Some(v3)) =
                (out.next(), out.next(), out.next(), out.next())
            else {
                unreachable!("V has 16 rows");
            };
            bt_times(a, b, d, f, v0, v1, v2, v3);
        }
    }
}
}

/// `d B` for one input row given as its even and odd columns: per tile, `[e0 - e1,
/// o0 + e1, e1 - o0, o0 - o1]` (`e1`, `o1` are the next tile's `e0`, `o0`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_times_b<T: Element>(
    e0: &[T],
    e1: &[T],
    o0: &[T],
    o1: &[T],
    t0: &mut [T],
    t1: &mut [T],
    t2: &mut [T],
    t3: &mut [T],
) {
    let n = t0.len();
    let (e0, e1, o0, o1) = (&e0[..n], &e1[..n], &o0[..n], &o1[..n]);
    let (t1, t2, t3) = (&mut t1[..n], &mut t2[..n], &mut t3[..n]);
    for k in 0..n {
        t0[k] = e0[k] - e1[k];
        t1[k] = o0[k] + e1[k];
        t2[k] = e1[k] - o0[k];
        t3[k] = o0[k] - o1[k];
    }
}

/// `B^T` down one column of four rows: `[a - d, b + d, d - b, b - f]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bt_times<T: Element>(
    a: &[T],
    b: &[T],
    d: &[T],
    f: &[T],
    v0: &mut [T],
    v1: &mut [T],
    v2: &mut [T],
    v3: &mut [T],
) {
    let n = v0.len();
    let (a, b, d, f) = (&a[..n], &b[..n], &d[..n], &f[..n]);
    let (v1, v2, v3) = (&mut v1[..n], &mut v2[..n], &mut v3[..n]);
    for k in 0..n {
        v0[k] = a[k] - d[k];
        v1[k] = b[k] + d[k];
        v2[k] = d[k] - b[k];
        v3[k] = b[k] - f[k];
    }
}

wide_loop! {
/// `y = A^T M A (+ bias)` for the tile rows `rows` from `m` (`[16][C_out][rows.len() *
/// tiles.stride()]`) into `out`, the group's images.
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
    // A^T M: 2 rows of 4 runs.
    let mut s: Vec<&mut [T]> = scratch[..8 * cols].chunks_exact_mut(cols.max(1)).collect();
    for co in 0..c_out {
        let at = |xi: usize| &m[(xi * c_out + co) * cols..][..cols];
        for c in 0..4 {
            let [s0, s1] = s.get_disjoint_mut([c, 4 + c]).expect("8 runs");
            at_times(at(c), at(4 + c), at(8 + c), at(12 + c), s0, s1);
        }
        let b = bias.map_or(T::zero(), |b| b[co]);
        for (local, row) in rows.clone().enumerate() {
            let (n, ty) = (row / tiles.rows, row % tiles.rows);
            let plane = &mut out[(n * c_out + co) * oh * ow..][..oh * ow];
            for r in 0..2 {
                let oy = 2 * ty + r;
                if oy >= oh {
                    continue;
                }
                let run = |c: usize| &s[4 * r + c][local * stride..][..tc];
                let (s0, s1, s2, s3) = (run(0), run(1), run(2), run(3));
                let dst = &mut plane[oy * ow..][..ow];
                for (k, d) in dst.chunks_mut(2).enumerate() {
                    d[0] = MaybeUninit::new(s0[k] + s1[k] + s2[k] + b);
                    if let Some(d1) = d.get_mut(1) {
                        *d1 = MaybeUninit::new(s1[k] - s2[k] - s3[k] + b);
                    }
                }
            }
        }
    }
}
}

/// `A^T` down one column of four rows of `M`: `[m0 + m1 + m2, m1 - m2 - m3]`.
#[inline(always)]
fn at_times<T: Element>(m0: &[T], m1: &[T], m2: &[T], m3: &[T], s0: &mut [T], s1: &mut [T]) {
    let n = s0.len();
    let (m0, m1, m2, m3, s1) = (&m0[..n], &m1[..n], &m2[..n], &m3[..n], &mut s1[..n]);
    for k in 0..n {
        s0[k] = m0[k] + m1[k] + m2[k];
        s1[k] = m1[k] - m2[k] - m3[k];
    }
}

wide_loop! {
/// `dL/dZ = A dY A^T` for the tile rows `rows` into `dz`, `[16][C_out][rows.len() *
/// tiles.stride()]`, from `gy`, the group's output gradient. With `A^T` as above:
///
/// ```text
/// P = A dY: rows [d0, d0 + d1, d0 - d1, -d1]     dL/dZ = P A^T: columns [p0, p0 + p1, p0 - p1, -p1]
/// ```
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
    // Even and odd columns of the tile's two gradient rows (zero past the output and in
    // the junk column), then P's 4 rows of 2 columns.
    let (split, rest) = scratch.split_at_mut(8 * (cols + 1));
    let mut split: Vec<&mut [T]> = split.chunks_exact_mut(cols + 1).take(4).collect();
    let mut p: Vec<&mut [T]> = rest[..8 * cols].chunks_exact_mut(cols.max(1)).collect();
    for co in 0..c_out {
        let plane = |n: usize| &gy[(n * c_out + co) * oh * ow..][..oh * ow];
        split_tile_rows(plane, [oh, ow], [0, 0], tiles, rows.clone(), &mut split);
        for c in 0..2 {
            let (d0, d1) = (&split[c][..cols], &split[2 + c][..cols]);
            let [p0, p1, p2, p3] = p
                .get_disjoint_mut([c, 2 + c, 4 + c, 6 + c])
                .expect("8 runs");
            a_times(d0, d1, p0, p1, p2, p3);
        }
        for i in 0..4 {
            let (p0, p1) = (&*p[2 * i], &*p[2 * i + 1]);
            let mut out = dz
                .chunks_exact_mut(c_out * cols)
                .skip(4 * i)
                .take(4)
                .map(|xi| &mut xi[co * cols..][..cols]);
            let (Some(z0), Some(z1), Some(z2), Some(z3)) =
                (out.next(), out.next(), out.next(), out.next())
            else {
                unreachable!("dZ has 16 rows");
            };
            a_times(p0, p1, z0, z1, z2, z3);
        }
    }
}
}

/// `A` times a pair of runs: `[d0, d0 + d1, d0 - d1, -d1]`.
#[inline(always)]
fn a_times<T: Element>(d0: &[T], d1: &[T], z0: &mut [T], z1: &mut [T], z2: &mut [T], z3: &mut [T]) {
    let n = z0.len();
    let (d0, d1, z1, z2, z3) = (&d0[..n], &d1[..n], &mut z1[..n], &mut z2[..n], &mut z3[..n]);
    for k in 0..n {
        z0[k] = d0[k];
        z1[k] = d0[k] + d1[k];
        z2[k] = d0[k] - d1[k];
        z3[k] = -d1[k];
    }
}

/// `dL/dg = G^T dL/dU G` per (co, ci), from `du` (`[16][C_out][C_in]`) to `[C_out][C_in][3][3]`.
fn transform_weight_grad<T: Element>(du: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let half = T::of(0.5);
    // G^T applied to 4 values: [u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3].
    let gt = |[u0, u1, u2, u3]: [T; 4]| {
        [
            u0 + (u1 + u2) * half,
            (u1 - u2) * half,
            (u1 + u2) * half + u3,
        ]
    };
    let pairs = c_out * c_in;
    let mut gw = vec![T::zero(); pairs * 9];
    for (pair, out) in gw.chunks_exact_mut(9).enumerate() {
        let u = |i: usize, j: usize| du[(4 * i + j) * pairs + pair];
        // G^T dU: 3 rows of 4, then (G^T dU) G: 3 x 3.
        let columns: [[T; 3]; 4] =
            std::array::from_fn(|j| gt([u(0, j), u(1, j), u(2, j), u(3, j)]));
        for r in 0..3 {
            let row = gt([columns[0][r], columns[1][r], columns[2][r], columns[3][r]]);
            out[3 * r..3 * r + 3].copy_from_slice(&row);
        }
    }
    gw
}
