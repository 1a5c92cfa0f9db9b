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
//! products, one per position `xi` of the 4x4 transformed block:
//!
//! ```text
//! M[xi] (C_out x tiles) = U[xi] (C_out x C_in) * V[xi] (C_in x tiles)
//! U = G g G^T per (co, ci)     V = B^T d B per (ci, tile)     y = A^T M A per (co, tile)
//! ```
//!
//! 16 products of `C_out x C_in` per tile of 4 outputs make 4 multiplies per output and
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

use rayon::prelude::*;

use super::{groups, split_groups, Scratch};
use crate::columns::{split_columns, split_phases};
use crate::conv2d::Conv2dGeometry;
use crate::element::{as_f32, as_f32_mut};
use crate::gemm::{gemm_strided, Operand};
use crate::simd::{has_avx512, wide_loop};
use crate::Element;

use super::packed;

/// Fewest input channels for which the transforms pay for themselves (the first layer,
/// with 3, stays direct).
const MIN_IN_CHANNELS: usize = 16;

/// Most output channels worth the transforms: beyond, the 16 transformed weight matrices
/// (8 MiB for layer5.0, 256 -> 512) no longer stream through the caches, and the direct
/// product won (layer5.0 forward at batch 32: 6.4 ms direct, 9.0 ms here).
const MAX_OUT_CHANNELS: usize = 256;

/// Bytes of transformed input (`V`, 16 x C_in x tiles) one chunk of tile rows should fill,
/// so that it is still in the L2 cache when the 16 products read it.
const CHUNK_BYTES: usize = 1 << 20;

/// Whether `g` takes this path.
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.padding[0] <= 2
        && g.padding[1] <= 2
        && g.in_channels >= MIN_IN_CHANNELS
        && g.out_channels <= MAX_OUT_CHANNELS
        && g.out_channels > 0
        && g.out_h > 0
        && g.out_w > 0
}

/// Whether the weight gradient of `g` takes this path too. Rows of few tiles carry a
/// junk column each and make short products: measured at batch 32 (backward ms, direct
/// -> here), layer2.0 at 16x16 8.4 -> 6.8, layer2.1 14.3 -> 12.4, layer1.1 at 32x32 15.7
/// -> 14.7, but layer3.x at 9x9 5.8 -> 6.1 and layer4.0 at 6x6 5.6 -> 5.8.
pub(super) fn applies_to_weight_grad(g: &Conv2dGeometry) -> bool {
    applies(g) && g.out_w >= MIN_WIDTH_FOR_WEIGHT_GRAD
}

/// Narrowest output for which [`weight_grad`] beats the direct product.
const MIN_WIDTH_FOR_WEIGHT_GRAD: usize = 12;

/// Tiles per image, `rows x cols`, each covering a square of outputs (the last row and
/// column of tiles may overhang the output; their extra outputs are never written).
#[derive(Clone, Copy)]
pub(super) struct Tiles {
    pub rows: usize,
    pub cols: usize,
    /// Outputs per tile along each side: 2 or 4.
    pub side: usize,
}

impl Tiles {
    /// Tiles of 2x2 outputs.
    fn new(g: &Conv2dGeometry) -> Tiles {
        Tiles::of_side(g, 2)
    }

    /// Tiles of `side x side` outputs.
    pub(super) fn of_side(g: &Conv2dGeometry, side: usize) -> Tiles {
        assert!(side == 2 || side == 4, "Winograd tiles are 2x2 or 4x4");
        Tiles {
            rows: g.out_h.div_ceil(side),
            cols: g.out_w.div_ceil(side),
            side,
        }
    }

    /// Columns of the transformed data per row of tiles: one per tile, plus a junk one.
    pub(super) fn stride(self) -> usize {
        self.cols + 1
    }

    /// The rows of tiles of `images` images cut into chunks whose transformed columns
    /// (`values` per column) fill [`CHUNK_BYTES`], and the widest chunk's columns.
    fn chunks<T>(
        self,
        images: usize,
        values: usize,
    ) -> (impl Iterator<Item = Range<usize>>, usize) {
        let row_bytes = values * self.stride() * std::mem::size_of::<T>();
        let per_chunk = (CHUNK_BYTES / row_bytes.max(1)).max(1);
        let all = images * self.rows;
        let chunks = (0..all)
            .step_by(per_chunk)
            .map(move |first| first..(first + per_chunk).min(all));
        (chunks, per_chunk * self.stride())
    }
}

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

pub(super) fn forward<T: Scratch>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
) -> Vec<T> {
    forward_with(x, w, bias, g, &variant(g))
}

/// F(2x2, 3x3) for [`forward_with`] and [`weight_grad_with`].
fn variant<T: Scratch>(g: &Conv2dGeometry) -> Variant<T> {
    Variant {
        positions: 16,
        tiles: Tiles::new(g),
        scratch_len: |cols| 8 * (cols + 1) + 16 * cols,
        transform_weights,
        transform_input,
        transform_output,
        transform_output_grad,
        transform_weight_grad,
    }
}

/// What a Winograd variant brings to [`forward_with`]: F(2x2, 3x3) here, F(4x4, 3x3) in
/// `winograd4.rs`. The transforms take the `wide` flag of [`wide_loop`] first.
pub(super) struct Variant<T> {
    /// Positions of a transformed block (16, 36): matrix products per chunk.
    pub positions: usize,
    pub tiles: Tiles,
    /// Scratch the transforms need for a chunk of this many columns.
    pub scratch_len: fn(usize) -> usize,
    /// `[positions][C_out][C_in]` from the `[C_out][C_in][3][3]` weights.
    pub transform_weights: fn(&[T], usize, usize) -> Vec<T>,
    /// Transformed input of tile rows, `[positions][C_in][columns]`, given scratch.
    pub transform_input: InputTransform<T>,
    /// Outputs (plus bias) of tile rows from the products, given scratch.
    pub transform_output: OutputTransform<T>,
    /// `dL/dZ = A dY A^T` of tile rows, `[positions][C_out][columns]`, given scratch.
    pub transform_output_grad: InputTransform<T>,
    /// `dL/dg = G^T dL/dU G`: `[C_out][C_in][3][3]` from `[positions][C_out][C_in]`.
    pub transform_weight_grad: fn(&[T], usize, usize) -> Vec<T>,
}

type InputTransform<T> = fn(bool, &[T], &Conv2dGeometry, Tiles, Range<usize>, &mut [T], &mut [T]);
type OutputTransform<T> = fn(
    bool,
    &[T],
    Option<&[T]>,
    &Conv2dGeometry,
    Tiles,
    Range<usize>,
    &mut [MaybeUninit<T>],
    &mut [T],
);

/// The convolution by `variant`: per thread a slice of the batch, cut into chunks of tile
/// rows; per chunk the input transform, one product per position, the output transform.
pub(super) fn forward_with<T: Scratch>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    variant: &Variant<T>,
) -> Vec<T> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let len = g.batch * c_out * g.out_h * g.out_w;
    let mut y: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    let u = (variant.transform_weights)(w, c_out, c_in);
    let packed = packed_weights(&u, c_out, c_in);
    let groups = groups(g.batch);
    let in_image = c_in * g.in_h * g.in_w;
    let out_image = c_out * g.out_h * g.out_w;
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], out_image, &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let x = &x[range.start * in_image..range.end * in_image];
        let weights = Weights {
            u: &u,
            packed: packed.as_deref(),
        };
        forward_group(x, weights, bias, g, variant, range.len(), out);
    });
    // SAFETY: the groups cover `0..len`; `forward_group` writes every output of its images
    // (each output pixel lies in exactly one tile), and a panic propagates before this.
    unsafe { y.set_len(len) };
    y
}

/// The transformed weights, and their [`packed`] panels (one per position) where that applies.
#[derive(Clone, Copy)]
struct Weights<'a, T> {
    u: &'a [T],
    packed: Option<&'a [Vec<f32>]>,
}

/// [`packed::pack_weights`] of each `U[xi]`, for f32 on AVX-512 with whole panels of rows.
fn packed_weights<T: Scratch>(u: &[T], c_out: usize, c_in: usize) -> Option<Vec<Vec<f32>>> {
    let u = as_f32(u)?;
    let fits = c_out.is_multiple_of(packed::ROWS);
    (fits && packed::available()).then(|| {
        u.chunks_exact(c_out * c_in)
            .map(|u| packed::pack_weights(u, c_out, c_in))
            .collect()
    })
}

fn forward_group<T: Scratch>(
    x: &[T],
    weights: Weights<'_, T>,
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    variant: &Variant<T>,
    images: usize,
    out: &mut [MaybeUninit<T>],
) {
    let (c_in, c_out, positions) = (g.in_channels, g.out_channels, variant.positions);
    let tiles = variant.tiles;
    let (chunks, max_cols) = tiles.chunks::<T>(images, positions * c_in);
    let mut v = T::take(positions * c_in * max_cols);
    let mut m = T::take(positions * c_out * max_cols);
    let mut scratch = T::take((variant.scratch_len)(max_cols));
    let wide = has_avx512();
    for rows in chunks {
        let cols = rows.len() * tiles.stride();
        let (v, m) = (
            &mut v[..positions * c_in * cols],
            &mut m[..positions * c_out * cols],
        );
        (variant.transform_input)(wide, x, g, tiles, rows.clone(), v, &mut scratch);
        for xi in 0..positions {
            let v = &v[xi * c_in * cols..][..c_in * cols];
            let m = &mut m[xi * c_out * cols..][..c_out * cols];
            let f32_operands = (weights.packed, as_f32(v), as_f32_mut(&mut *m));
            if let (Some(packed), Some(v), Some(m)) = f32_operands {
                packed::product(&packed[xi], c_out, c_in, v, cols, cols, None, m, cols);
            } else {
                let u = Operand::new(&weights.u[xi * c_out * c_in..][..c_out * c_in], c_in);
                let v = Operand::new(v, cols);
                gemm_strided(c_out, cols, c_in, u, v, m, cols, false, false);
            }
        }
        (variant.transform_output)(wide, m, bias, g, tiles, rows, out, &mut scratch);
    }
    T::give_back(v);
    T::give_back(m);
    T::give_back(scratch);
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

/// Zeroes `split` and fills it with the rows that each row of tiles in `rows` reads from
/// `plane(image)` (`[h, w]`, padded by `[ph, pw]`): row `i` of the row of tiles `ty` is
/// padded row `side * ty + i`, split into its `side` column phases (even and odd columns
/// for 2x2 tiles, four phases for 4x4) as runs `side * i..side * (i + 1)`, at
/// `tiles.stride()` columns per row of tiles. `split` holds a tile's input rows (4 or 6)
/// or its gradient's output rows (2 or 4), `side` runs each.
#[inline(always)]
pub(super) fn split_tile_rows<'a, T: Element>(
    plane: impl Fn(usize) -> &'a [T],
    [h, w]: [usize; 2],
    [ph, pw]: [usize; 2],
    tiles: Tiles,
    rows: Range<usize>,
    split: &mut [&mut [T]],
) {
    for run in split.iter_mut() {
        run.fill(T::zero());
    }
    let (side, stride) = (tiles.side, tiles.stride());
    for (local, row) in rows.enumerate() {
        let (n, ty) = (row / tiles.rows, row % tiles.rows);
        let plane = plane(n);
        for (i, runs) in split.chunks_exact_mut(side).enumerate() {
            let iy = side * ty + i;
            if iy < ph || iy - ph >= h {
                continue;
            }
            let src = &plane[(iy - ph) * w..][..w];
            let at = local * stride;
            match runs {
                [even, odd] => split_columns(
                    src,
                    pw,
                    &mut even[at..at + stride],
                    &mut odd[at..at + stride],
                ),
                [p0, p1, p2, p3] => split_phases(
                    src,
                    pw,
                    [p0, p1, p2, p3].map(|run| &mut run[at..at + stride]),
                ),
                _ => unreachable!("tiles are 2x2 or 4x4"),
            }
        }
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

/// The weight gradient by the same transforms: with `Z = U . V` and `Y = A^T Z A`,
///
/// ```text
/// dL/dZ = A dY A^T (per output channel and tile)       dL/dU[xi] = sum over tiles of dL/dZ[xi] V[xi]^T
/// dL/dg = G^T dL/dU G (per output and input channel)
/// ```
///
/// 16 products of `C_out x tiles x C_in` instead of one of `C_out x 9 C_in x outputs`.
/// Outputs past an odd output size and the junk column of each row of tiles have a zero
/// gradient, so they add nothing.
pub(super) fn weight_grad<T: Scratch>(x: &[T], gy: &[T], g: &Conv2dGeometry) -> Vec<T> {
    weight_grad_with(x, gy, g, &variant(g))
}

/// The weight gradient by `variant`: per thread a slice of the batch, per chunk of tile rows
/// both transforms and one product per position, summed over threads, then `G^T . G`.
pub(super) fn weight_grad_with<T: Scratch>(
    x: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    variant: &Variant<T>,
) -> Vec<T> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let groups = groups(g.batch);
    let in_image = c_in * g.in_h * g.in_w;
    let out_image = c_out * g.out_h * g.out_w;
    let partial: Vec<Vec<T>> = groups
        .par_iter()
        .map(|range| {
            let x = &x[range.start * in_image..range.end * in_image];
            let gy = &gy[range.start * out_image..range.end * out_image];
            weight_grad_group(x, gy, g, variant, range.len())
        })
        .collect();
    let mut partial = partial.into_iter();
    let mut du = partial
        .next()
        .unwrap_or_else(|| vec![T::zero(); variant.positions * c_out * c_in]);
    for part in partial {
        for (a, b) in du.iter_mut().zip(part) {
            *a += b;
        }
    }
    (variant.transform_weight_grad)(&du, c_out, c_in)
}

/// `sum over the group's tiles of dL/dZ[xi] V[xi]^T`, `[positions][C_out][C_in]`.
fn weight_grad_group<T: Scratch>(
    x: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    variant: &Variant<T>,
    images: usize,
) -> Vec<T> {
    let (c_in, c_out, positions) = (g.in_channels, g.out_channels, variant.positions);
    let tiles = variant.tiles;
    let (chunks, max_cols) = tiles.chunks::<T>(images, positions * c_in.max(c_out));
    let mut v = T::take(positions * c_in * max_cols);
    let mut dz = T::take(positions * c_out * max_cols);
    let mut scratch = T::take((variant.scratch_len)(max_cols));
    let mut du = vec![T::zero(); positions * c_out * c_in];
    let wide = has_avx512();
    for rows in chunks {
        let cols = rows.len() * tiles.stride();
        let (v, dz) = (
            &mut v[..positions * c_in * cols],
            &mut dz[..positions * c_out * cols],
        );
        (variant.transform_input)(wide, x, g, tiles, rows.clone(), v, &mut scratch);
        (variant.transform_output_grad)(wide, gy, g, tiles, rows, dz, &mut scratch);
        for xi in 0..positions {
            let dz = Operand::new(&dz[xi * c_out * cols..][..c_out * cols], cols);
            let v_t = Operand::t(&v[xi * c_in * cols..][..c_in * cols], cols);
            let du = &mut du[xi * c_out * c_in..][..c_out * c_in];
            gemm_strided(c_out, c_in, cols, dz, v_t, du, c_in, true, false);
        }
    }
    T::give_back(v);
    T::give_back(dz);
    T::give_back(scratch);
    du
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
