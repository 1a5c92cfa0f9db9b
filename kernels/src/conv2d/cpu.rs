use std::ops::Range;

use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::gemm::{gemm, worth_parallel};
use crate::Element;

/// Images with few output pixels are unrolled together until a product has about this
/// many columns: narrower products waste most of each AVX-512 micro-kernel tile.
const TARGET_COLUMNS: usize = 512;

pub struct Grads<T> {
    pub input: Option<Vec<T>>,
    pub weight: Vec<T>,
    pub bias: Option<Vec<T>>,
}

/// Sizes derived once from the geometry.
struct Dims {
    c_in: usize,
    c_out: usize,
    /// Rows of `col`: `C_in * KH * KW`.
    ckk: usize,
    /// Input pixels per channel.
    hw: usize,
    /// Output pixels per channel.
    p: usize,
    /// 1x1 kernel, stride 1, no padding: the image already is its own `col`.
    direct: bool,
}

impl Dims {
    fn new(g: &Conv2dGeometry) -> Dims {
        Dims {
            c_in: g.in_channels,
            c_out: g.out_channels,
            ckk: g.in_channels * g.kernel[0] * g.kernel[1],
            hw: g.in_h * g.in_w,
            p: g.out_h * g.out_w,
            direct: g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0, 0],
        }
    }

    fn in_image(&self) -> usize {
        self.c_in * self.hw
    }

    fn out_image(&self) -> usize {
        self.c_out * self.p
    }

    /// How many images one product covers.
    fn images_per_product(&self, group_len: usize) -> usize {
        TARGET_COLUMNS
            .div_ceil(self.p.max(1))
            .clamp(1, group_len.max(1))
    }
}

/// Splits `0..batch` into one contiguous range per rayon thread (fewer for small batches).
fn groups(batch: usize) -> Vec<Range<usize>> {
    let count = batch.min(rayon::current_num_threads()).max(1);
    (0..count)
        .map(|i| batch * i / count..batch * (i + 1) / count)
        .filter(|r| !r.is_empty())
        .collect()
}

/// Cuts `buf` into the disjoint parts that hold each group's images.
fn split_groups<'a, T>(
    mut buf: &'a mut [T],
    per_image: usize,
    groups: &[Range<usize>],
) -> Vec<&'a mut [T]> {
    groups
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(r.len() * per_image);
            buf = tail;
            head
        })
        .collect()
}

pub fn forward<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Conv2dGeometry) -> Vec<T> {
    let d = Dims::new(g);
    let mut y = vec![T::zero(); g.batch * d.out_image()];
    let groups = groups(g.batch);
    let parallel_gemm = groups.len() == 1;
    let outs = split_groups(&mut y, d.out_image(), &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let x = &x[range.start * d.in_image()..range.end * d.in_image()];
        forward_group(x, w, bias, g, &d, range.len(), out, parallel_gemm);
    });
    y
}

#[allow(clippy::too_many_arguments)]
fn forward_group<T: Element>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    d: &Dims,
    images: usize,
    out: &mut [T],
    parallel_gemm: bool,
) {
    let nb_max = d.images_per_product(images);
    let mut col = Vec::new();
    let mut wide = Vec::new();
    for start in (0..images).step_by(nb_max) {
        let nb = nb_max.min(images - start);
        let cols = nb * d.p;
        let x = &x[start * d.in_image()..(start + nb) * d.in_image()];
        let out = &mut out[start * d.out_image()..(start + nb) * d.out_image()];
        // One image's output [C_out, OH*OW] is exactly the product's layout; several
        // images come out as [C_out, images, OH*OW] and are reordered afterwards.
        let dst: &mut [T] = if nb == 1 {
            out
        } else {
            wide.resize(d.c_out * cols, T::zero());
            &mut wide
        };
        if let Some(bias) = bias {
            for (row, &b) in dst.chunks_exact_mut(cols).zip(bias) {
                row.fill(b);
            }
        }
        let src: &[T] = if d.direct && nb == 1 {
            x
        } else {
            col.resize(d.ckk * cols, T::zero());
            im2col(x, nb, g, &mut col);
            &col
        };
        let parallel = parallel_gemm && worth_parallel(d.c_out, cols, d.ckk);
        gemm(
            d.c_out,
            cols,
            d.ckk,
            w,
            false,
            src,
            false,
            dst,
            bias.is_some(),
            parallel,
        );
        if nb > 1 {
            for (n, image) in out.chunks_exact_mut(d.out_image()).enumerate() {
                for (c, plane) in image.chunks_exact_mut(d.p).enumerate() {
                    plane.copy_from_slice(&wide[c * cols + n * d.p..][..d.p]);
                }
            }
        }
    }
}

pub fn backward<T: Element>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Grads<T> {
    let d = Dims::new(g);
    let groups = groups(g.batch);
    let parallel_gemm = groups.len() == 1;
    let mut gx = need_input_grad.then(|| vec![T::zero(); g.batch * d.in_image()]);
    let gx_parts: Vec<Option<&mut [T]>> = match gx.as_mut() {
        Some(gx) => split_groups(gx, d.in_image(), &groups)
            .into_iter()
            .map(Some)
            .collect(),
        None => groups.iter().map(|_| None).collect(),
    };
    let partial_gw: Vec<Vec<T>> = groups
        .par_iter()
        .zip(gx_parts)
        .map(|(range, gx)| {
            let x = &x[range.start * d.in_image()..range.end * d.in_image()];
            let gy = &gy[range.start * d.out_image()..range.end * d.out_image()];
            backward_group(x, w, gy, g, &d, range.len(), gx, parallel_gemm)
        })
        .collect();
    let mut partial_gw = partial_gw.into_iter();
    let mut gw = partial_gw
        .next()
        .unwrap_or_else(|| vec![T::zero(); d.c_out * d.ckk]);
    for part in partial_gw {
        for (a, b) in gw.iter_mut().zip(part) {
            *a += b;
        }
    }
    let gb = has_bias.then(|| bias_grad(gy, g.batch, &d));
    Grads {
        input: gx,
        weight: gw,
        bias: gb,
    }
}

/// The weight-gradient partial sum of one group; writes the group's input gradient.
#[allow(clippy::too_many_arguments)]
fn backward_group<T: Element>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    d: &Dims,
    images: usize,
    mut gx: Option<&mut [T]>,
    parallel_gemm: bool,
) -> Vec<T> {
    let nb_max = d.images_per_product(images);
    let mut gw = vec![T::zero(); d.c_out * d.ckk];
    let mut col = Vec::new();
    let mut wide = Vec::new();
    let mut gcol = Vec::new();
    for start in (0..images).step_by(nb_max) {
        let nb = nb_max.min(images - start);
        let cols = nb * d.p;
        let x = &x[start * d.in_image()..(start + nb) * d.in_image()];
        let gy = &gy[start * d.out_image()..(start + nb) * d.out_image()];
        // dL/dy as a [C_out, images * OH*OW] matrix.
        let gy_mat: &[T] = if nb == 1 {
            gy
        } else {
            wide.resize(d.c_out * cols, T::zero());
            for (n, image) in gy.chunks_exact(d.out_image()).enumerate() {
                for (c, plane) in image.chunks_exact(d.p).enumerate() {
                    wide[c * cols + n * d.p..][..d.p].copy_from_slice(plane);
                }
            }
            &wide
        };
        let src: &[T] = if d.direct && nb == 1 {
            x
        } else {
            col.resize(d.ckk * cols, T::zero());
            im2col(x, nb, g, &mut col);
            &col
        };
        let parallel = parallel_gemm && worth_parallel(d.c_out, cols, d.ckk);
        // dL/dW += dL/dy * col^T
        gemm(
            d.c_out, d.ckk, cols, gy_mat, false, src, true, &mut gw, true, parallel,
        );
        if let Some(gx) = gx.as_deref_mut() {
            let gx = &mut gx[start * d.in_image()..(start + nb) * d.in_image()];
            if d.direct && nb == 1 {
                gemm(
                    d.ckk, cols, d.c_out, w, true, gy_mat, false, gx, false, parallel,
                );
            } else {
                // dL/dcol = W^T * dL/dy, folded back onto the pixels it came from.
                gcol.resize(d.ckk * cols, T::zero());
                gemm(
                    d.ckk, cols, d.c_out, w, true, gy_mat, false, &mut gcol, false, parallel,
                );
                col2im(&gcol, nb, g, gx);
            }
        }
    }
    gw
}

fn bias_grad<T: Element>(gy: &[T], batch: usize, d: &Dims) -> Vec<T> {
    (0..d.c_out)
        .into_par_iter()
        .map(|c| {
            (0..batch)
                .map(|n| {
                    gy[n * d.out_image() + c * d.p..][..d.p]
                        .iter()
                        .copied()
                        .sum::<T>()
                })
                .sum()
        })
        .collect()
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

/// Unrolls `nb` images into `col` (`[C_in*KH*KW, nb*OH*OW]`): row `(ci, ky, kx)`, column
/// `(n, oy, ox)` holds `x[n, ci, oy*sh + ky - ph, ox*sw + kx - pw]`, zero in the padding.
fn im2col<T: Element>(x: &[T], nb: usize, g: &Conv2dGeometry, col: &mut [T]) {
    let (h, w) = (g.in_h, g.in_w);
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let (oh, ow) = (g.out_h, g.out_w);
    let p = oh * ow;
    let mut rows = col.chunks_exact_mut(nb * p);
    for ci in 0..g.in_channels {
        for ky in 0..kh {
            let oy_valid = valid_outputs(oh, sh, ky, ph, h);
            for kx in 0..kw {
                let ox_valid = valid_outputs(ow, sw, kx, pw, w);
                let row = rows.next().expect("col has C_in*KH*KW rows");
                for (n, dst) in row.chunks_exact_mut(p).enumerate() {
                    let plane = &x[(n * g.in_channels + ci) * h * w..][..h * w];
                    for (oy, dst) in dst.chunks_exact_mut(ow).enumerate() {
                        if !oy_valid.contains(&oy) {
                            dst.fill(T::zero());
                            continue;
                        }
                        let src = &plane[(oy * sh + ky - ph) * w..][..w];
                        dst[..ox_valid.start].fill(T::zero());
                        dst[ox_valid.end..].fill(T::zero());
                        if ox_valid.is_empty() {
                            continue;
                        }
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

/// The adjoint of [`im2col`]: adds every entry of `col` onto the input pixel it was read
/// from (padding entries are dropped). `gx` must hold `nb` images.
fn col2im<T: Element>(col: &[T], nb: usize, g: &Conv2dGeometry, gx: &mut [T]) {
    let (h, w) = (g.in_h, g.in_w);
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let (oh, ow) = (g.out_h, g.out_w);
    let p = oh * ow;
    let mut rows = col.chunks_exact(nb * p);
    for ci in 0..g.in_channels {
        for ky in 0..kh {
            let oy_valid = valid_outputs(oh, sh, ky, ph, h);
            for kx in 0..kw {
                let ox_valid = valid_outputs(ow, sw, kx, pw, w);
                let row = rows.next().expect("col has C_in*KH*KW rows");
                if ox_valid.is_empty() {
                    continue;
                }
                for (n, src) in row.chunks_exact(p).enumerate() {
                    let plane = &mut gx[(n * g.in_channels + ci) * h * w..][..h * w];
                    for oy in oy_valid.clone() {
                        let src = &src[oy * ow..][ox_valid.clone()];
                        let dst = &mut plane[(oy * sh + ky - ph) * w..][..w];
                        let first = ox_valid.start * sw + kx - pw;
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
