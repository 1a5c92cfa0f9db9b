//! Winograd's minimal filtering for 3x3 stride-1 convolutions: the driver that F(2x2, 3x3)
//! (`f2x2.rs`) and F(4x4, 3x3) (`f4x4.rs`) share. Which layers take it, and which of the
//! two, is decided in `cpu/mod.rs`.
//!
//! Each tile of outputs (2x2 or 4x4) is computed from the block of inputs it reads (4x4 or
//! 6x6), `Y = A^T [ (G g G^T) . (B^T d B) ] A`. Summed over input channels, the
//! elementwise product `.` becomes one matrix product per position `xi` of the transformed
//! block (16 or 36 of them):
//!
//! ```text
//! M[xi] (C_out x tiles) = U[xi] (C_out x C_in) * V[xi] (C_in x tiles)
//! U = G g G^T per (co, ci)     V = B^T d B per (ci, tile)     y = A^T M A per (co, tile)
//! ```
//!
//! A [`Variant`] brings the transforms; this file cuts the work: per rayon thread a slice of
//! the batch, per chunk of rows of tiles (sized to stay in the L2 cache) the input
//! transform, one product per position (the packed AVX-512 kernel for f32 where it applies,
//! the `gemm` crate otherwise), the output transform. [`weight_grad`] runs the weight
//! gradient the same way.

pub(crate) mod f2x2;
pub(crate) mod f4x4;

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::{groups, packed, split_groups, Scratch};
use crate::columns::{split_columns, split_phases};
use crate::conv2d::Conv2dGeometry;
use crate::element::{as_f32, as_f32_mut};
use crate::gemm::{gemm_strided, Operand};
use crate::simd::has_avx512;
use crate::Element;

/// Bytes of transformed input (`V`, 16 x C_in x tiles) one chunk of tile rows should fill,
/// so that it is still in the L2 cache when the 16 products read it.
const CHUNK_BYTES: usize = 1 << 20;

/// Tiles per image, `rows x cols`, each covering a square of outputs (the last row and
/// column of tiles may overhang the output; their extra outputs are never written).
#[derive(Clone, Copy)]
pub(crate) struct Tiles {
    pub rows: usize,
    pub cols: usize,
    /// Outputs per tile along each side: 2 or 4.
    pub side: usize,
}

impl Tiles {
    /// Tiles of `side x side` outputs.
    pub(crate) fn of_side(g: &Conv2dGeometry, side: usize) -> Tiles {
        assert!(side == 2 || side == 4, "Winograd tiles are 2x2 or 4x4");
        Tiles {
            rows: g.out_h.div_ceil(side),
            cols: g.out_w.div_ceil(side),
            side,
        }
    }

    /// Columns of the transformed data per row of tiles: one per tile, plus a junk one.
    pub(crate) fn stride(self) -> usize {
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

/// What a Winograd variant brings to [`forward`] and [`weight_grad`]: F(2x2, 3x3) in
/// `f2x2.rs`, F(4x4, 3x3) in `f4x4.rs`. The transforms take the `wide` flag of
/// [`crate::simd::wide_loop`] first.
pub(crate) struct Variant<T> {
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

pub(crate) type InputTransform<T> =
    fn(bool, &[T], &Conv2dGeometry, Tiles, Range<usize>, &mut [T], &mut [T]);
pub(crate) type OutputTransform<T> = fn(
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
pub(crate) fn forward<T: Scratch>(
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

/// Zeroes `split` and fills it with the rows that each row of tiles in `rows` reads from
/// `plane(image)` (`[h, w]`, padded by `[ph, pw]`): row `i` of the row of tiles `ty` is
/// padded row `side * ty + i`, split into its `side` column phases (even and odd columns
/// for 2x2 tiles, four phases for 4x4) as runs `side * i..side * (i + 1)`, at
/// `tiles.stride()` columns per row of tiles. `split` holds a tile's input rows (4 or 6)
/// or its gradient's output rows (2 or 4), `side` runs each.
#[inline(always)]
pub(crate) fn split_tile_rows<'a, T: Element>(
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

/// The weight gradient by `variant`'s transforms: with `Z = U . V` and `Y = A^T Z A`,
///
/// ```text
/// dL/dZ = A dY A^T (per output channel and tile)       dL/dU[xi] = sum over tiles of dL/dZ[xi] V[xi]^T
/// dL/dg = G^T dL/dU G (per output and input channel)
/// ```
///
/// one product of `C_out x tiles x C_in` per position instead of one of `C_out x 9 C_in x
/// outputs`. Outputs past the last whole tile and the junk column of each row of tiles
/// have a zero gradient, so they add nothing. Per thread a slice of the batch, per chunk of
/// tile rows both transforms and one product per position, summed over threads, then
/// `G^T . G`.
pub(crate) fn weight_grad<T: Scratch>(
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
