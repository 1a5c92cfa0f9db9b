//! The convolution lowered to matrix products. `im2col` unrolls every receptive field of a
//! group of images into a column of `col` (`[C_in*KH*KW, images*OH*OW]`), so that
//!
//! ```text
//! y         = W * col                 W viewed as [C_out, C_in*KH*KW]
//! dL/dW    += dL/dy * col^T
//! dL/dcol   = W^T * dL/dy             then col2im adds each column back onto its receptive field
//! ```
//!
//! A 1x1 kernel with stride 1 and no padding needs no unrolling: the image itself is `col`.
//! The batch is split into one contiguous slice of images per rayon thread, each with its own
//! scratch buffers (kept between calls) and weight-gradient partial sum (summed at the end).
//! Each product covers a few hundred columns: several images at once when they have few
//! output pixels (so the product is wide enough to be fast), a band of output rows of one
//! image when it has many (so the unrolled block is still in L2 when the product reads it).
//! A single image runs its products on all threads instead.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::{groups, packed, split_groups, Scratch};
use crate::conv2d::Conv2dGeometry;
use crate::element::{as_f32, as_f32_mut};
use crate::gemm::{gemm_strided, worth_parallel, Operand};
use crate::Element;

/// Widest product worth aiming for: beyond this many columns the AVX-512 tiles are full
/// and a wider unrolled block only spills out of the L2 cache.
const MAX_COLUMNS: usize = 512;
/// Narrowest product worth aiming for, whatever the cache: narrower ones spend their time
/// re-packing the weight matrix.
const MIN_COLUMNS: usize = 128;
/// Bytes of unrolled columns one product should fill, so that `im2col` writes them and
/// the product packs them while they are still in the (2 MiB per core) L2 cache.
const COLUMN_BYTES: usize = 768 << 10;

/// Columns of one tile of the gemm crate's AVX-512 f32 micro-kernel (4 registers of 16).
const TILE_COLUMNS: usize = 64;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Sizes derived from the geometry, and how the work of one group is cut into products.
struct Plan {
    c_in: usize,
    c_out: usize,
    /// Rows of `col`: `C_in * KH * KW`.
    ckk: usize,
    /// Input pixels per channel.
    hw: usize,
    /// Output pixels per channel.
    p: usize,
    out_h: usize,
    out_w: usize,
    /// 1x1 kernel, stride 1, no padding: the image already is its own `col`.
    direct: bool,
    /// Images per product; above 1 only for images with few output pixels.
    images: usize,
    /// Output rows per product; below `out_h` only for images with many output pixels.
    rows: usize,
}

/// Part of a group's work done by one product: output rows `rows` of images
/// `first..first + images` (counted within the group).
struct Chunk {
    first: usize,
    images: usize,
    rows: Range<usize>,
}

impl Plan {
    fn new<T>(g: &Conv2dGeometry, group_len: usize) -> Plan {
        let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
        let p = g.out_h * g.out_w;
        let target = (COLUMN_BYTES / (ckk.max(1) * std::mem::size_of::<T>()))
            .clamp(MIN_COLUMNS, MAX_COLUMNS);
        let (images, rows) = if p >= target {
            let rows = (target / g.out_w).clamp(1, g.out_h);
            // Whole multiples of TILE_COLUMNS when the rows allow it: the gemm crate's
            // edge micro-kernels for a partial tile are markedly slower.
            let step = TILE_COLUMNS / gcd(g.out_w, TILE_COLUMNS);
            (
                1,
                if rows >= step {
                    rows / step * step
                } else {
                    rows
                },
            )
        } else {
            (target.div_ceil(p).clamp(1, group_len.max(1)), g.out_h)
        };
        Plan {
            c_in: g.in_channels,
            c_out: g.out_channels,
            ckk,
            hw: g.in_h * g.in_w,
            p,
            out_h: g.out_h,
            out_w: g.out_w,
            direct: g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0, 0],
            images,
            rows,
        }
    }

    fn in_image(&self) -> usize {
        self.c_in * self.hw
    }

    fn out_image(&self) -> usize {
        self.c_out * self.p
    }

    /// Whether the weight gradient is computed transposed, `dL/dW^T += col * dL/dy^T`,
    /// rather than `dL/dW += dL/dy * col^T`: the same product, but the `gemm` crate runs
    /// it much faster with the destination in that orientation when C_out is small and
    /// the unrolled rows many. Measured on one core (GFLOP/s of the product alone,
    /// C_out x C_in*KH*KW x columns): 64x576x320 127 -> 190, 128x1152x160 152 -> 193,
    /// 128x1152x512 120 -> 179; whole backward at batch 32: layer1.1 45 -> 38 ms,
    /// layer2.1 39 -> 34 ms. For C_out >= 256, 1x1 kernels and the 3-channel first layer
    /// the transpose of the result costs more than the product gains.
    fn transposed_weight_grad(&self) -> bool {
        self.c_out <= 128 && self.ckk >= 2 * self.c_out
    }

    /// Columns of the widest product.
    fn max_cols(&self) -> usize {
        self.images * self.rows * self.out_w
    }

    fn chunks(&self, group_len: usize) -> impl Iterator<Item = Chunk> + '_ {
        (0..group_len).step_by(self.images).flat_map(move |first| {
            let images = self.images.min(group_len - first);
            (0..self.out_h).step_by(self.rows).map(move |y| Chunk {
                first,
                images,
                rows: y..(y + self.rows).min(self.out_h),
            })
        })
    }

    /// Whether a chunk's columns can be read straight from the input image.
    fn reads_image_directly(&self, chunk: &Chunk) -> bool {
        self.direct && chunk.images == 1
    }

    /// Scratch for the unrolled columns of a product (none when the image is used as is).
    fn scratch_col<T: Scratch>(&self) -> Vec<T> {
        if self.direct && self.images == 1 {
            Vec::new()
        } else {
            T::take(self.ckk * self.max_cols())
        }
    }

    /// Scratch for the output (gradient) of several images in product layout.
    fn scratch_wide<T: Scratch>(&self) -> Vec<T> {
        if self.images == 1 {
            Vec::new()
        } else {
            T::take(self.c_out * self.max_cols())
        }
    }
}

/// The output is written once, by copies out of each product's scratch result: no pass
/// zeroing it first (a fresh multi-megabyte buffer costs a full memory pass to zero, 6%
/// of an inference batch's time), and the products store into cache-resident scratch.
pub(super) fn forward<T: Scratch>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
) -> Vec<T> {
    let len = g.batch * g.out_channels * g.out_h * g.out_w;
    let mut y: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    let groups = groups(g.batch);
    let parallel_gemm = groups.len() == 1;
    let plan = Plan::new::<T>(g, groups[0].len());
    let packed = packed_weights(w, &plan);
    let outs = split_groups(
        &mut y.spare_capacity_mut()[..len],
        plan.out_image(),
        &groups,
    );
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let x = &x[range.start * plan.in_image()..range.end * plan.in_image()];
        let w = Weights {
            w,
            packed: packed.as_deref(),
        };
        forward_group(x, w, bias, g, &plan, range.len(), out, parallel_gemm);
    });
    // SAFETY: the groups cover `0..len`, and `forward_group` writes every element of its
    // part (each image's every channel plane, band by band or whole); a panic in a group
    // propagates out of the loop above before this line.
    unsafe { y.set_len(len) };
    y
}

/// The weights of a forward call, and their [`packed`] panels when that path applies.
#[derive(Clone, Copy)]
struct Weights<'a, T> {
    w: &'a [T],
    packed: Option<&'a [f32]>,
}

/// Packs the weights for [`packed::product`] when it applies: f32, AVX-512, and output
/// channels in whole panels, at most 128 of them. Measured per layer at batch 32 on one
/// core, forward ms, `gemm` crate -> packed: layer1.0 1.6 -> 1.2, layer1.1 20.5 -> 18.3,
/// layer2.1 17.8 -> 16.4, layer3.x 6.0 -> 5.8; wider layers lose (layer4.0 4.9 -> 5.1,
/// layer5.0 13.3 -> 14.5: 4.7 MB of weights no longer stream through the caches well).
/// Its products are single-threaded: a batch of one image, whose products run on all
/// threads, keeps the `gemm` crate.
fn packed_weights<T: Element>(w: &[T], plan: &Plan) -> Option<Vec<f32>> {
    let w = as_f32(w)?;
    let fits = plan.c_out.is_multiple_of(packed::ROWS) && plan.c_out <= 128 && plan.ckk > 0;
    (fits && packed::available()).then(|| packed::pack_weights(w, plan.c_out, plan.ckk))
}

#[allow(clippy::too_many_arguments)]
fn forward_group<T: Scratch>(
    x: &[T],
    w: Weights<'_, T>,
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    plan: &Plan,
    images: usize,
    out: &mut [MaybeUninit<T>],
    parallel_gemm: bool,
) {
    let (p, c_out, ckk) = (plan.p, plan.c_out, plan.ckk);
    let mut col = plan.scratch_col::<T>();
    let mut wide = T::take(c_out * plan.max_cols());
    for chunk in plan.chunks(images) {
        let cols = chunk.images * chunk.rows.len() * plan.out_w;
        let offset = chunk.rows.start * plan.out_w;
        let x = &x[chunk.first * plan.in_image()..][..chunk.images * plan.in_image()];
        let out = &mut out[chunk.first * plan.out_image()..][..chunk.images * plan.out_image()];
        // The product comes out as [C_out, cols] (for several images, [C_out, images *
        // OH*OW]) and is copied to its place in the output.
        let (dst, dst_stride) = (&mut wide[..c_out * cols], cols);
        let src = if plan.reads_image_directly(&chunk) {
            Operand::new(&x[offset..], p)
        } else {
            let col = &mut col[..ckk * cols];
            im2col(x, chunk.images, chunk.rows.clone(), g, col);
            Operand::new(&col[..], cols)
        };
        let parallel = parallel_gemm && worth_parallel(c_out, cols, ckk);
        let f32_operands = (
            w.packed,
            as_f32(src.data),
            bias.map(as_f32),
            as_f32_mut(&mut *dst),
        );
        match f32_operands {
            (Some(packed), Some(src_data), bias_f32, Some(dst)) if !parallel => {
                let bias_f32 = bias_f32.flatten();
                let (b_stride, y_stride) = (src.row_stride, dst_stride);
                packed::product(
                    packed, c_out, ckk, src_data, b_stride, cols, bias_f32, dst, y_stride,
                );
            }
            _ => {
                if let Some(bias) = bias {
                    for (c, &b) in bias.iter().enumerate() {
                        dst[c * dst_stride..][..cols].fill(b);
                    }
                }
                gemm_strided(
                    c_out,
                    cols,
                    ckk,
                    Operand::new(w.w, ckk),
                    src,
                    dst,
                    dst_stride,
                    bias.is_some(),
                    parallel,
                );
            }
        }
        // Every element of the chunk's part of `out` is written here: for one image,
        // columns `offset..offset + cols` of each channel plane (the chunks' bands cover
        // the plane); for several, each image's whole planes.
        let pieces = if chunk.images == 1 { cols } else { p };
        for (n, image) in out.chunks_exact_mut(plan.out_image()).enumerate() {
            for (c, plane) in image.chunks_exact_mut(p).enumerate() {
                let src = &wide[c * cols + n * p..][..pieces];
                let dst = if chunk.images == 1 {
                    &mut plane[offset..offset + cols]
                } else {
                    plane
                };
                assert_eq!(dst.len(), src.len());
                // SAFETY: `dst` and `src` are equally long and do not overlap (one is
                // scratch, the other the output); MaybeUninit<T> has T's layout.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        dst.as_mut_ptr().cast::<T>(),
                        src.len(),
                    );
                }
            }
        }
    }
    T::give_back(col);
    T::give_back(wide);
}

/// The weight gradient of `g`, and its input gradient folded back with [`col2im`] when
/// `input_grad_by_col2im` (the dispatcher computes it otherwise, as a convolution of its
/// own, or was not asked for it): `(input gradient, weight gradient)`.
pub(super) fn backward<T: Scratch>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    input_grad_by_col2im: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    let groups = groups(g.batch);
    let plan = Plan::new::<T>(g, groups.first().map_or(1, |r| r.len()));
    let parallel_gemm = groups.len() == 1;
    let mut gx = input_grad_by_col2im.then(|| vec![T::zero(); g.batch * plan.in_image()]);
    let gx_parts: Vec<Option<&mut [T]>> = match gx.as_mut() {
        Some(gx) => split_groups(gx, plan.in_image(), &groups)
            .into_iter()
            .map(Some)
            .collect(),
        None => groups.iter().map(|_| None).collect(),
    };
    let partial_gw: Vec<Vec<T>> = if plan.out_image() == 0 {
        Vec::new()
    } else {
        groups
            .par_iter()
            .zip(gx_parts)
            .map(|(range, gx)| {
                let x = &x[range.start * plan.in_image()..range.end * plan.in_image()];
                let gy = &gy[range.start * plan.out_image()..range.end * plan.out_image()];
                backward_group(x, w, gy, g, &plan, range.len(), gx, parallel_gemm)
            })
            .collect()
    };
    let mut partial_gw = partial_gw.into_iter();
    let mut gw_t = partial_gw
        .next()
        .unwrap_or_else(|| vec![T::zero(); plan.c_out * plan.ckk]);
    for part in partial_gw {
        for (a, b) in gw_t.iter_mut().zip(part) {
            *a += b;
        }
    }
    let gw = if plan.transposed_weight_grad() {
        transpose(&gw_t, plan.ckk, plan.c_out)
    } else {
        gw_t
    };
    (gx, gw)
}

/// `rows x cols` row-major `a` transposed, in square tiles so that both sides stay in cache.
fn transpose<T: Element>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 16;
    let mut out = vec![T::zero(); rows * cols];
    if out.is_empty() {
        return out;
    }
    // One task per band of TILE output rows (input columns).
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * TILE;
            let width = out.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    for (c, &v) in a[r * cols + c0..][..width].iter().enumerate() {
                        out[c * rows + r] = v;
                    }
                }
            }
        });
    out
}

/// The weight-gradient partial sum of one group, transposed (`[C_in*KH*KW, C_out]`) when
/// [`Plan::transposed_weight_grad`]; writes the group's input gradient.
#[allow(clippy::too_many_arguments)]
fn backward_group<T: Scratch>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    plan: &Plan,
    images: usize,
    mut gx: Option<&mut [T]>,
    parallel_gemm: bool,
) -> Vec<T> {
    let (p, c_out, ckk) = (plan.p, plan.c_out, plan.ckk);
    let mut gw_t = vec![T::zero(); ckk * c_out];
    let mut col = plan.scratch_col::<T>();
    let mut wide = plan.scratch_wide::<T>();
    let mut gcol = if gx.is_some() {
        plan.scratch_col::<T>()
    } else {
        Vec::new()
    };
    for chunk in plan.chunks(images) {
        let cols = chunk.images * chunk.rows.len() * plan.out_w;
        let offset = chunk.rows.start * plan.out_w;
        let x = &x[chunk.first * plan.in_image()..][..chunk.images * plan.in_image()];
        let gy = &gy[chunk.first * plan.out_image()..][..chunk.images * plan.out_image()];
        // dL/dy of the chunk as a [C_out, cols] matrix.
        let gy_mat = if chunk.images == 1 {
            Operand::new(&gy[offset..], p)
        } else {
            let wide = &mut wide[..c_out * cols];
            for (n, image) in gy.chunks_exact(plan.out_image()).enumerate() {
                for (c, plane) in image.chunks_exact(p).enumerate() {
                    wide[c * cols + n * p..][..p].copy_from_slice(plane);
                }
            }
            Operand::new(&wide[..], cols)
        };
        // col, from the image itself or unrolled.
        let col_mat = if plan.reads_image_directly(&chunk) {
            Operand::new(&x[offset..], p)
        } else {
            let col = &mut col[..ckk * cols];
            im2col(x, chunk.images, chunk.rows.clone(), g, col);
            Operand::new(&col[..], cols)
        };
        let parallel = parallel_gemm && worth_parallel(c_out, cols, ckk);
        if plan.transposed_weight_grad() {
            // dL/dW^T += col * dL/dy^T
            let gy_t = Operand::t(gy_mat.data, gy_mat.row_stride);
            gemm_strided(
                ckk, c_out, cols, col_mat, gy_t, &mut gw_t, c_out, true, parallel,
            );
        } else {
            // dL/dW += dL/dy * col^T
            let col_t = Operand::t(col_mat.data, col_mat.row_stride);
            gemm_strided(
                c_out, ckk, cols, gy_mat, col_t, &mut gw_t, ckk, true, parallel,
            );
        }
        if let Some(gx) = gx.as_deref_mut() {
            let gx = &mut gx[chunk.first * plan.in_image()..][..chunk.images * plan.in_image()];
            let w_t = Operand::t(w, ckk);
            if plan.reads_image_directly(&chunk) {
                gemm_strided(
                    ckk,
                    cols,
                    c_out,
                    w_t,
                    gy_mat,
                    &mut gx[offset..],
                    p,
                    false,
                    parallel,
                );
            } else {
                // dL/dcol = W^T * dL/dy, folded back onto the pixels it came from.
                let gcol = &mut gcol[..ckk * cols];
                gemm_strided(ckk, cols, c_out, w_t, gy_mat, gcol, cols, false, parallel);
                col2im(gcol, chunk.images, chunk.rows.clone(), g, gx);
            }
        }
    }
    T::give_back(col);
    T::give_back(wide);
    T::give_back(gcol);
    gw_t
}

/// The output positions `o` in `0..out_len` whose input position `o*stride + offset - pad`
/// falls inside `0..in_len`; they are contiguous.
fn valid_outputs(
    out_len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    in_len: usize,
) -> Range<usize> {
    let lo = pad.saturating_sub(offset).div_ceil(stride).min(out_len);
    let hi = (in_len + pad)
        .saturating_sub(offset)
        .div_ceil(stride)
        .min(out_len);
    lo..hi.max(lo)
}

/// Unrolls output rows `band` of `nb` images into `col` (`[C_in*KH*KW, nb*band*OW]`):
/// row `(ci, ky, kx)`, column `(n, oy, ox)` holds `x[n, ci, oy*sh + ky - ph, ox*sw + kx - pw]`,
/// zero in the padding.
fn im2col<T: Element>(x: &[T], nb: usize, band: Range<usize>, g: &Conv2dGeometry, col: &mut [T]) {
    let (h, w) = (g.in_h, g.in_w);
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let ow = g.out_w;
    let per_image = band.len() * ow;
    let mut rows = col.chunks_exact_mut(nb * per_image);
    for ci in 0..g.in_channels {
        for ky in 0..kh {
            let oy_valid = valid_outputs(g.out_h, sh, ky, ph, h);
            let oys = band.start.max(oy_valid.start)..band.end.min(oy_valid.end);
            for kx in 0..kw {
                let ox_valid = valid_outputs(ow, sw, kx, pw, w);
                let row = rows.next().expect("col has C_in*KH*KW rows");
                for (n, dst) in row.chunks_exact_mut(per_image).enumerate() {
                    let plane = &x[(n * g.in_channels + ci) * h * w..][..h * w];
                    if oys.is_empty() || ox_valid.is_empty() {
                        dst.fill(T::zero());
                    } else if sh == 1 && sw == 1 && w == ow {
                        // A "same" convolution: input and output rows are equally long, so
                        // all the rows this tap reads are one shifted run of the plane.
                        // Copy it whole, then clear what it wrapped into the padding.
                        let d0 = (oys.start - band.start) * ow + ox_valid.start;
                        let d1 = (oys.end - 1 - band.start) * ow + ox_valid.end;
                        let s0 = (oys.start + ky - ph) * w + ox_valid.start + kx - pw;
                        dst[d0..d1].copy_from_slice(&plane[s0..s0 + (d1 - d0)]);
                        for (oy, dst) in band.clone().zip(dst.chunks_exact_mut(ow)) {
                            if oys.contains(&oy) {
                                dst[..ox_valid.start].fill(T::zero());
                                dst[ox_valid.end..].fill(T::zero());
                            } else {
                                dst.fill(T::zero());
                            }
                        }
                    } else {
                        for (oy, dst) in band.clone().zip(dst.chunks_exact_mut(ow)) {
                            if !oys.contains(&oy) {
                                dst.fill(T::zero());
                                continue;
                            }
                            let src = &plane[(oy * sh + ky - ph) * w..][..w];
                            dst[..ox_valid.start].fill(T::zero());
                            dst[ox_valid.end..].fill(T::zero());
                            let first = ox_valid.start * sw + kx - pw;
                            let dst = &mut dst[ox_valid.clone()];
                            if sw == 1 {
                                dst.copy_from_slice(&src[first..first + dst.len()]);
                            } else {
                                for (d, s) in dst.iter_mut().zip(src[first..].iter().step_by(sw)) {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` onto the input pixel it was read
/// from (padding entries are dropped). `gx` holds the `nb` images. `col` is used as
/// scratch: its padding entries are zeroed.
fn col2im<T: Element>(
    col: &mut [T],
    nb: usize,
    band: Range<usize>,
    g: &Conv2dGeometry,
    gx: &mut [T],
) {
    let (h, w) = (g.in_h, g.in_w);
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let ow = g.out_w;
    let per_image = band.len() * ow;
    let mut rows = col.chunks_exact_mut(nb * per_image);
    for ci in 0..g.in_channels {
        for ky in 0..kh {
            let oy_valid = valid_outputs(g.out_h, sh, ky, ph, h);
            let oys = band.start.max(oy_valid.start)..band.end.min(oy_valid.end);
            for kx in 0..kw {
                let ox_valid = valid_outputs(ow, sw, kx, pw, w);
                let row = rows.next().expect("col has C_in*KH*KW rows");
                if oys.is_empty() || ox_valid.is_empty() {
                    continue;
                }
                let first = ox_valid.start * sw + kx - pw;
                for (n, src) in row.chunks_exact_mut(per_image).enumerate() {
                    let plane = &mut gx[(n * g.in_channels + ci) * h * w..][..h * w];
                    if sh == 1 && sw == 1 && w == ow {
                        // As in im2col: one shifted run, once the entries that would wrap
                        // onto a neighbouring row (padding taps) are cleared.
                        for oy in oys.clone() {
                            let src = &mut src[(oy - band.start) * ow..][..ow];
                            src[..ox_valid.start].fill(T::zero());
                            src[ox_valid.end..].fill(T::zero());
                        }
                        let d0 = (oys.start - band.start) * ow + ox_valid.start;
                        let d1 = (oys.end - 1 - band.start) * ow + ox_valid.end;
                        let s0 = (oys.start + ky - ph) * w + first;
                        for (d, &s) in plane[s0..s0 + (d1 - d0)].iter_mut().zip(&src[d0..d1]) {
                            *d += s;
                        }
                        continue;
                    }
                    for oy in oys.clone() {
                        let src = &src[(oy - band.start) * ow..][ox_valid.clone()];
                        let dst = &mut plane[(oy * sh + ky - ph) * w..][..w];
                        if sw == 1 {
                            for (d, &s) in dst[first..first + src.len()].iter_mut().zip(src) {
                                *d += s;
                            }
                        } else {
                            for (d, &s) in dst[first..].iter_mut().step_by(sw).zip(src) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}
