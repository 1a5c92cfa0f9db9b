//! Convolutions in bf16: which lowering takes which layer, and the general ones.
//!
//! - 3x3, stride 1, padding 1, 16+ input channels: implicit GEMM (`conv3x3.rs`), forward,
//!   input gradient and weight gradient.
//! - Stride 1 with at most 16 values per receptive field (airbench94's 2x2 whitening
//!   layer over 3 channels): direct f32 multiply-adds, forward only (`few_taps.rs`).
//! - 1x1, stride 1, any padding ("pointwise"): the image is its own matrix. With padding,
//!   only the image is multiplied and the border of the output is the bias, as in the f32
//!   path (`conv2d/pointwise.rs`): the border reads nothing but padding.
//! - Everything else (the 3-channel first layers, 2x2 kernels, strides): `im2col`, with the
//!   receptive fields read straight into the packed panels (`source.rs`), never
//!   unrolled in f32; the input gradient adds the unrolled gradient back (`col2im`).
//!
//! The forward and input-gradient products run on chunks of images per rayon thread, into a
//! scratch `[channels][chunk pixels]` that is then copied into place; each weight gradient
//! is one product over the whole batch (its depth is every pixel), split over the threads
//! by blocks of the result.
//!
//! The input (an activation) and `dL/dy` may each be f32, rounded to bf16 as it is packed,
//! or bf16 (autocast's activations and their gradients), packed as it is; the weight and
//! the bias are f32. The forward's output, and the input gradient, are f32 or bf16, the
//! latter rounded once from the same f32 sums as they are put in place (for `col2im`, once
//! all of a pixel's contributions are summed). The weight and bias gradients are f32.

use std::mem::MaybeUninit;

use half::bf16;
use rayon::prelude::*;

use super::gemm::{product, MatMut, MatRef};
use super::pack::Packed;
use super::source::{Planes, Values, View};
use super::stored::Stored;
use super::{conv3x3, few_taps};
use super::{groups, split_groups, Cpu};
use crate::conv2d::{Conv2dGeometry, Conv2dGrads};
use crate::{DType, Error, Result, Storage};

const OP: &str = "conv2d";

/// Bytes of the f32 product one chunk of images writes (then copies into place).
const RESULT_BYTES: usize = 512 << 10;
/// Bytes of the packed right operand of one chunk.
const OPERAND_BYTES: usize = 512 << 10;

/// `conv2d::forward_bf16` on operands whose sizes the caller has checked: an f32 or
/// bf16 input, f32 weight and bias, the output stored as `output` (f32 or bf16).
pub(crate) fn forward_storage(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
    output: DType,
) -> Result<Storage> {
    check_output(output)?;
    let x = Values::of(input, OP, "input")?;
    let w = weight.host::<f32>(OP, "weight")?;
    let b = bias.map(|b| b.host::<f32>(OP, "bias")).transpose()?;
    let cpu = Cpu::best()?;
    Ok(match output {
        DType::BF16 => Storage::bf16(forward::<bf16>(cpu, x, w, b, g)),
        _ => Storage::f32(forward::<f32>(cpu, x, w, b, g)),
    })
}

/// Ok for the dtypes a bf16 convolution can store its output as (f32, bf16).
pub(crate) fn check_output(output: DType) -> Result<()> {
    match output {
        DType::F32 | DType::BF16 => Ok(()),
        DType::F64 => Err(Error::invalid(
            OP,
            "a bf16 convolution's output is f32 or bf16, not f64 (its sums are f32)",
        )),
    }
}

/// `conv2d::backward_bf16` on operands whose sizes the caller has checked: an f32 or bf16
/// input and `dL/dy`, an f32 weight. The input gradient has the input's dtype; the weight
/// gradient and the bias gradient (an f32 sum of `dL/dy`, as under autocast) are f32.
pub(crate) fn backward_storage(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    let x = Values::of(input, OP, "input")?;
    let w = weight.host::<f32>(OP, "weight")?;
    let gy = Values::of(grad_out, OP, "grad_out")?;
    let cpu = Cpu::best()?;
    let (gx, gw) = match x {
        Values::F32(_) => {
            let (gx, gw) = backward::<f32>(cpu, x, w, gy, g, need_input_grad);
            (gx.map(Storage::f32), gw)
        }
        Values::Bf16(_) => {
            let (gx, gw) = backward::<bf16>(cpu, x, w, gy, g, need_input_grad);
            (gx.map(Storage::bf16), gw)
        }
    };
    let gb = has_bias.then(|| match gy {
        Values::F32(gy) => crate::conv2d::cpu::bias_grad(gy, g),
        Values::Bf16(gy) => crate::conv2d::cpu::bias_grad(gy, g),
    });
    Ok(Conv2dGrads {
        input: gx,
        weight: Storage::f32(gw),
        bias: gb.map(Storage::f32),
    })
}

/// Whether the unpadded image is the whole right operand: a 1x1 kernel with stride 1.
fn pointwise(g: &Conv2dGeometry) -> bool {
    g.kernel == [1, 1] && g.stride == [1, 1]
}

/// The planes of the pixels that the product covers: the whole output, or for a padded
/// pointwise convolution the interior that is the image.
fn window(g: &Conv2dGeometry) -> ([usize; 2], [usize; 2]) {
    if pointwise(g) {
        (g.padding, [g.in_h, g.in_w])
    } else {
        ([0, 0], [g.out_h, g.out_w])
    }
}

/// `y = conv(x, w) + b`, `[N, C_out, OH, OW]`, stored as `O`.
pub(crate) fn forward<O: Stored>(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
) -> Vec<O> {
    if conv3x3::applies(g) {
        return conv3x3::forward(cpu, x, w, bias, g);
    }
    if few_taps::applies(g) {
        return few_taps::forward(x, w, bias, g);
    }
    let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
    let weights = MatRef::new(w, g.out_channels, ckk).expect("weight fits");
    let packed = Packed::a(cpu, &View::matrix(weights), true);
    let (origin, size) = window(g);
    let chunking = Chunking {
        batch: g.batch,
        out_image: g.out_channels * g.out_h * g.out_w,
        pixels: size[0] * size[1],
        rows: g.out_channels,
        depth: ckk,
    };
    let in_image = g.in_channels * g.in_h * g.in_w;
    by_chunks(
        cpu,
        &packed,
        &chunking,
        |first, images| {
            Packed::b(
                cpu,
                &right_operand(x.starting_at(first * in_image), images, g),
                false,
            )
        },
        |out, result, images| {
            let plane = [g.out_h, g.out_w];
            place(
                result,
                images,
                g.out_channels,
                plane,
                origin,
                size,
                bias,
                out,
            )
        },
    )
}

/// The right operand of the forward product for `images` images starting at `x`:
/// `[C_in * KH * KW][images * pixels]`.
fn right_operand<'a>(x: Values<'a>, images: usize, g: &Conv2dGeometry) -> View<'a> {
    if pointwise(g) {
        View::planes(
            x,
            Planes {
                images,
                channels: g.in_channels,
                full: [g.in_h, g.in_w],
                origin: [0, 0],
                size: [g.in_h, g.in_w],
            },
        )
    } else {
        View::im2col(
            x,
            Conv2dGeometry {
                batch: images,
                ..*g
            },
        )
    }
}

/// The shape of a chunked product: `rows x depth` times `depth x (images * pixels)`
/// per chunk, written into outputs of `out_image` values per image.
struct Chunking {
    batch: usize,
    out_image: usize,
    pixels: usize,
    rows: usize,
    depth: usize,
}

/// Runs `a * operand(first, images)` for chunks of images on every thread and lets
/// `write` put each chunk's f32 `[rows][images * pixels]` result into its images' part of
/// the output; `write` must initialise all of that part.
fn by_chunks<O: Stored>(
    cpu: Cpu,
    a: &Packed,
    shape: &Chunking,
    operand: impl Fn(usize, usize) -> Packed + Sync,
    write: impl Fn(&mut [MaybeUninit<O>], &[f32], usize) + Sync,
) -> Vec<O> {
    let len = shape.batch * shape.out_image;
    let mut y: Vec<O> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    let groups = groups(shape.batch);
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], shape.out_image, &groups);
    let cols =
        (RESULT_BYTES / (4 * shape.rows.max(1))).min(OPERAND_BYTES / (2 * shape.depth.max(1)));
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let per_chunk = (cols / shape.pixels.max(1)).clamp(1, range.len());
        let mut result = Vec::new();
        for first in range.clone().step_by(per_chunk) {
            let images = per_chunk.min(range.end - first);
            let b = operand(first, images);
            let cols = images * shape.pixels;
            result.resize(shape.rows * cols, 0.0f32);
            let mut c = MatMut::new(&mut result, shape.rows, cols).expect("result fits");
            product(cpu, a, &b, shape.depth, &mut c, false, false);
            let out =
                &mut out[(first - range.start) * shape.out_image..][..images * shape.out_image];
            write(out, &result, images);
        }
    });
    // SAFETY: every chunk's `write` initialises its images' whole part of the output
    // (its contract), and the chunks cover every group, the groups the batch.
    unsafe { y.set_len(len) };
    y
}

/// Copies a `[channels][images * size]` result into the window `origin`, `size` of each
/// `plane`-sized channel plane of `images` images, and fills the rest of each plane
/// (and adds to the window) with the channel's bias, stored as `O`.
#[allow(clippy::too_many_arguments)]
fn place<O: Stored>(
    result: &[f32],
    images: usize,
    channels: usize,
    plane: [usize; 2],
    origin: [usize; 2],
    size: [usize; 2],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<O>],
) {
    let (pixels, cols) = (size[0] * size[1], images * size[0] * size[1]);
    let plane_len = plane[0] * plane[1];
    for (n, image) in out.chunks_exact_mut(channels * plane_len).enumerate() {
        for (c, dst) in image.chunks_exact_mut(plane_len).enumerate() {
            let b = bias.map_or(0.0, |b| b[c]);
            let border = MaybeUninit::new(O::from_sum(b));
            let src = &result[c * cols + n * pixels..][..pixels];
            for (y, row) in dst.chunks_exact_mut(plane[1]).enumerate() {
                let inside = y >= origin[0] && y < origin[0] + size[0];
                if !inside {
                    row.fill(border);
                    continue;
                }
                let src = &src[(y - origin[0]) * size[1]..][..size[1]];
                row[..origin[1]].fill(border);
                for (d, &s) in row[origin[1]..origin[1] + size[1]].iter_mut().zip(src) {
                    *d = MaybeUninit::new(O::from_sum(s + b));
                }
                row[origin[1] + size[1]..].fill(border);
            }
        }
    }
}

/// `dL/dx` (when `need_input_grad`), stored as `O`, and `dL/dW` (`[C_out, C_in, KH, KW]`).
pub(crate) fn backward<O: Stored>(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    gy: Values,
    g: &Conv2dGeometry,
    need_input_grad: bool,
) -> (Option<Vec<O>>, Vec<f32>) {
    if conv3x3::applies(g) {
        return conv3x3::backward(cpu, x, w, gy, g, need_input_grad);
    }
    let gx = need_input_grad.then(|| input_grad(cpu, w, gy, g));
    (gx, weight_grad(cpu, x, gy, g))
}

/// `dL/dy` of `images` images from `gy`, restricted to the window the product covers,
/// as `[C_out][images * pixels]`.
fn grad_planes<'a>(gy: Values<'a>, images: usize, g: &Conv2dGeometry) -> View<'a> {
    let (origin, size) = window(g);
    View::planes(
        gy,
        Planes {
            images,
            channels: g.out_channels,
            full: [g.out_h, g.out_w],
            origin,
            size,
        },
    )
}

/// `dL/dW = dL/dy * B^T` over the whole batch: one product whose depth is every pixel.
fn weight_grad(cpu: Cpu, x: Values, gy: Values, g: &Conv2dGeometry) -> Vec<f32> {
    let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
    let a = Packed::a(cpu, &grad_planes(gy, g.batch, g), true);
    let b = right_operand(x, g.batch, g).t();
    let depth = b.rows();
    let b = Packed::b(cpu, &b, true);
    let mut gw = vec![0.0f32; g.out_channels * ckk];
    let mut c = MatMut::new(&mut gw, g.out_channels, ckk).expect("weight gradient fits");
    product(cpu, &a, &b, depth, &mut c, false, true);
    gw
}

/// `dL/dx`, stored as `O`: `W^T * dL/dy` per chunk of images; for a pointwise convolution
/// that is the gradient of the image itself, otherwise the unrolled gradient added back
/// onto the pixels each column was read from.
fn input_grad<O: Stored>(cpu: Cpu, w: &[f32], gy: Values, g: &Conv2dGeometry) -> Vec<O> {
    let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
    let w_t = MatRef::new(w, g.out_channels, ckk)
        .expect("weight fits")
        .t();
    let packed = Packed::a(cpu, &View::matrix(w_t), true);
    let (_, size) = window(g);
    let chunking = Chunking {
        batch: g.batch,
        out_image: g.in_channels * g.in_h * g.in_w,
        pixels: size[0] * size[1],
        rows: ckk,
        depth: g.out_channels,
    };
    let out_image = g.out_channels * g.out_h * g.out_w;
    by_chunks(
        cpu,
        &packed,
        &chunking,
        |first, images| {
            Packed::b(
                cpu,
                &grad_planes(gy.starting_at(first * out_image), images, g),
                false,
            )
        },
        |out, result, images| {
            if pointwise(g) {
                let image = [g.in_h, g.in_w];
                place(
                    result,
                    images,
                    g.in_channels,
                    image,
                    [0, 0],
                    image,
                    None,
                    out,
                );
            } else {
                fold_back(result, images, g, out);
            }
        },
    )
}

/// [`col2im`] of a chunk's unrolled gradient into its images' part of `dL/dx`, stored as
/// `O`: an f32 output is summed in place; a bf16 one is summed in an f32 scratch and
/// rounded once, after every contribution to a pixel has been added.
fn fold_back<O: Stored>(
    gcol: &[f32],
    images: usize,
    g: &Conv2dGeometry,
    out: &mut [MaybeUninit<O>],
) {
    if let Some(sums) = O::in_place(out.as_mut_ptr().cast()) {
        // SAFETY: `in_place` gives a pointer only for an f32 output, where `out` is
        // `out.len()` MaybeUninit<f32>, borrowed mutably for this call.
        let sums = unsafe { std::slice::from_raw_parts_mut(sums.cast(), out.len()) };
        col2im(gcol, images, g, zeroed(sums));
        return;
    }
    let mut sums = vec![0.0f32; out.len()];
    col2im(gcol, images, g, &mut sums);
    for (d, &s) in out.iter_mut().zip(&sums) {
        *d = MaybeUninit::new(O::from_sum(s));
    }
}

/// Zeroes `out` and returns it initialised.
fn zeroed(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    out.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was just initialised; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Adds the unrolled gradient `gcol` (`[C_in * KH * KW][images * OH * OW]`) onto the
/// input pixels each entry was read from (padding entries are dropped).
fn col2im(gcol: &[f32], images: usize, g: &Conv2dGeometry, gx: &mut [f32]) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let (p, cols) = (g.out_h * g.out_w, images * g.out_h * g.out_w);
    for (row, src) in gcol.chunks_exact(cols).enumerate() {
        let (ci, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
        for n in 0..images {
            let plane = &mut gx[(n * g.in_channels + ci) * g.in_h * g.in_w..][..g.in_h * g.in_w];
            for oy in 0..g.out_h {
                let iy = (oy * sh + ky).wrapping_sub(ph);
                if iy >= g.in_h {
                    continue;
                }
                let src = &src[n * p + oy * g.out_w..][..g.out_w];
                for (ox, &v) in src.iter().enumerate() {
                    let ix = (ox * sw + kx).wrapping_sub(pw);
                    if ix < g.in_w {
                        plane[iy * g.in_w + ix] += v;
                    }
                }
            }
        }
    }
}
