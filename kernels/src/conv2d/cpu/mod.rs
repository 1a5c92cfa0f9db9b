//! The convolution on the CPU: which path a layer takes, in which order, from which sizes.
//!
//! [`path_for`] picks the first that applies:
//!
//! 1. [`Path::Pointwise`] (`pointwise.rs`): a 1x1 kernel, stride 1, with padding. Only the
//!    unpadded image is multiplied (by the im2col path, for which a 1x1 kernel needs no
//!    unrolling); the border is the bias.
//! 2. [`Path::WinogradF4x4`] (`winograd/f4x4.rs`): a 3x3 kernel, stride 1, padding at most
//!    2, at least [`WINOGRAD_MIN_IN_CHANNELS`] input and at most
//!    [`WINOGRAD_MAX_OUT_CHANNELS`] output channels, and an output at least
//!    [`F4X4_MIN_SIDE`] high and wide ([`F4X4_MIN_SIDE_LARGE_BATCH`] from
//!    [`F4X4_LARGE_BATCH`] images).
//! 3. [`Path::WinogradF2x2`] (`winograd/f2x2.rs`): the same layers with smaller outputs.
//! 4. [`Path::Im2col`] (`im2col.rs`): everything else, `im2col` bands multiplied by the
//!    packed AVX-512 kernel (`packed.rs`: f32, output channels in whole panels of 8, at most
//!    128 of them) or by the `gemm` crate.
//!
//! Backward, [`weight_grad_path_for`] makes the same choice for the weight gradient, except
//! that Winograd takes only outputs at least [`WINOGRAD_WEIGHT_GRAD_MIN_WIDTH`] wide. The
//! input gradient of a stride-1 layer with padding below the kernel size is a convolution
//! of its own ([`input_grad_geometry`]; on the im2col path only where the layer does not
//! widen) and takes whichever path that convolution's geometry picks; the other layers'
//! input gradient is folded back with `col2im` beside the weight gradient in `im2col.rs`.
//!
//! Every path cuts the batch into one slice per rayon thread ([`groups`]), with scratch
//! buffers kept between calls ([`Scratch`]).

mod im2col;
pub(super) mod packed;
mod pointwise;
mod winograd;

use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::bf16_values::Stored;
use crate::Element;
use winograd::{f2x2, f4x4};

/// How a convolution runs on the CPU (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A padded 1x1 stride-1 convolution: the image alone, then the border.
    Pointwise,
    /// Winograd's F(4x4, 3x3).
    WinogradF4x4,
    /// Winograd's F(2x2, 3x3).
    WinogradF2x2,
    /// `im2col` and matrix products.
    Im2col,
}

/// Fewest input channels for which Winograd's transforms pay for themselves (the first
/// layer, with 3, stays direct).
pub const WINOGRAD_MIN_IN_CHANNELS: usize = 16;

/// Most output channels worth Winograd's transforms: beyond, the 16 transformed weight
/// matrices (8 MiB for layer5.0, 256 -> 512) no longer stream through the caches, and the
/// direct product won (layer5.0 forward at batch 32: 6.4 ms direct, 9.0 ms by F(2x2, 3x3)).
pub const WINOGRAD_MAX_OUT_CHANNELS: usize = 256;

/// Narrowest output (in both directions) that takes F(4x4, 3x3) below [`F4X4_LARGE_BATCH`]
/// images; below, F(2x2, 3x3). Measured at batch 32 (forward ms, F(2x2) -> F(4x4)): layer1.1 at 32x32 8.5 -> 6.6, but
/// layer2.0 and layer2.1 at 16x16 3.7 -> 4.2 and 6.6 -> 8.7: with 36 transformed rows per
/// channel a chunk holds few rows of tiles there, and the products get narrow.
pub const F4X4_MIN_SIDE: usize = 32;

/// Batches from which F(4x4, 3x3) takes outputs down to [`F4X4_MIN_SIDE_LARGE_BATCH`]: the
/// transforms and products that cost it more on a few images are paid back over many.
/// Measured with `profile -- --model airbench94 B` (forward/backward ms, F(2x2) -> F(4x4),
/// alternating runs): at 1,024 images, 24 -> 64 at 31x31 152/350 -> 127/273, 64 -> 64 at
/// 15x15 71/154 -> 59/132, 64 -> 256 at 15x15 220/500 -> 166/485; at 128 images the three
/// gain too (19/46 -> 16/34, 9.1/22.6 -> 8.4/18.1, 28.0/67.7 -> 27.4/64.2); at 64 they break
/// even; at 32 the 15x15 layers lose (64 -> 256: 8.0/19.0 -> 12.4/28.5).
pub const F4X4_LARGE_BATCH: usize = 128;

/// Narrowest output that takes F(4x4, 3x3) from [`F4X4_LARGE_BATCH`] images. (At 7x7 it
/// covered 8x8 and measured no faster than F(2x2, 3x3).)
pub const F4X4_MIN_SIDE_LARGE_BATCH: usize = 15;

/// Narrowest output whose weight gradient Winograd computes faster than the direct
/// product. Rows of few tiles carry a junk column each and make short products: measured
/// at batch 32 (backward ms, direct -> F(2x2, 3x3)), layer2.0 at 16x16 8.4 -> 6.8, layer2.1
/// 14.3 -> 12.4, layer1.1 at 32x32 15.7 -> 14.7, but layer3.x at 9x9 5.8 -> 6.1 and
/// layer4.0 at 6x6 5.6 -> 5.8.
pub const WINOGRAD_WEIGHT_GRAD_MIN_WIDTH: usize = 12;

/// The path [`forward`] takes for `g`.
pub fn path_for(g: &Conv2dGeometry) -> Path {
    if g.kernel == [1, 1] && g.stride == [1, 1] && g.padding != [0, 0] {
        return Path::Pointwise;
    }
    let winograd = g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.padding[0] <= 2
        && g.padding[1] <= 2
        && g.in_channels >= WINOGRAD_MIN_IN_CHANNELS
        && g.out_channels <= WINOGRAD_MAX_OUT_CHANNELS
        && g.out_channels > 0
        && g.out_h > 0
        && g.out_w > 0;
    if !winograd {
        return Path::Im2col;
    }
    let min_side = if g.batch >= F4X4_LARGE_BATCH {
        F4X4_MIN_SIDE_LARGE_BATCH
    } else {
        F4X4_MIN_SIDE
    };
    if g.out_h >= min_side && g.out_w >= min_side {
        Path::WinogradF4x4
    } else {
        Path::WinogradF2x2
    }
}

/// The path [`backward`] takes for the weight gradient of `g` (and for the input gradient
/// too where that is not a convolution of its own, see [`input_grad_geometry`]).
pub fn weight_grad_path_for(g: &Conv2dGeometry) -> Path {
    match path_for(g) {
        Path::WinogradF4x4 | Path::WinogradF2x2 if g.out_w < WINOGRAD_WEIGHT_GRAD_MIN_WIDTH => {
            Path::Im2col
        }
        path => path,
    }
}

/// `y = conv(x, w) + b` by the path [`path_for`] picks.
pub fn forward<T: Scratch>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Conv2dGeometry) -> Vec<T> {
    match path_for(g) {
        Path::Pointwise => pointwise::padded_forward(x, w, bias, g),
        Path::WinogradF4x4 => winograd::forward(x, w, bias, g, &f4x4::variant(g)),
        Path::WinogradF2x2 => winograd::forward(x, w, bias, g, &f2x2::variant(g)),
        Path::Im2col => im2col::forward(x, w, bias, g),
    }
}

/// What [`backward`] computes; `input` and `bias` are `None` when they were not asked for.
pub struct Grads<T> {
    pub input: Option<Vec<T>>,
    pub weight: Vec<T>,
    pub bias: Option<Vec<T>>,
}

/// The gradients of `sum(y * gy)`: the weight's by the path [`weight_grad_path_for`]
/// picks, the input's (when `need_input_grad`) as a convolution of its own where
/// [`input_grad_geometry`] gives one, by `col2im` otherwise.
pub fn backward<T: Scratch>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Grads<T> {
    let path = weight_grad_path_for(g);
    if path == Path::Pointwise {
        return pointwise::padded_backward(x, w, gy, g, has_bias, need_input_grad);
    }
    let gx = need_input_grad
        .then(|| input_grad_geometry(g))
        .flatten()
        .map(|gt| forward(gy, &flipped_weights(w, g), None, &gt));
    let (gx, gw) = match path {
        Path::WinogradF4x4 => (gx, winograd::weight_grad(x, gy, g, &f4x4::variant(g))),
        Path::WinogradF2x2 => (gx, winograd::weight_grad(x, gy, g, &f2x2::variant(g))),
        // (A padded 1x1 layer returned above; im2col would compute it correctly too.)
        Path::Im2col | Path::Pointwise => {
            let (gx_by_col2im, gw) = im2col::backward(x, w, gy, g, need_input_grad && gx.is_none());
            (gx.or(gx_by_col2im), gw)
        }
    };
    Grads {
        input: gx,
        weight: gw,
        bias: has_bias.then(|| bias_grad(gy, g)),
    }
}

/// For a stride-1 convolution with padding below the kernel size, the geometry of the
/// convolution that computes its input gradient:
///
/// ```text
/// dL/dx[n, ci, y, x] = sum_{co, ky, kx} w[co, ci, KH-1-ky, KW-1-kx] * dL/dy[n, co, y + ky - (KH-1-PH), x + kx - (KW-1-PW)]
/// ```
///
/// a convolution of `dL/dy` (C_out channels in, C_in out) with the kernel flipped and
/// its channel axes swapped ([`flipped_weights`]), padding `K-1-P`. It runs on the forward
/// path: products as deep as `C_out*KH*KW` instead of `C_out` (64 for the network's first
/// layers), and a copy-only unrolling instead of `col2im`'s scattered additions; a 3x3
/// layer's is a 3x3 stride-1 convolution too, which Winograd takes.
pub fn input_grad_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    let ([kh, kw], [ph, pw]) = (g.kernel, g.padding);
    let empty = g.input_shape().contains(&0) || g.out_channels == 0;
    // Measured per layer on one core, with direct products: faster where C_out <= C_in
    // (128 -> 128 at 16x16: 39 -> 36 ms at batch 32), slower where the layer widens
    // (64 -> 128: 19 -> 21 ms). Winograd's layers take it whatever their widths.
    let winograd = matches!(
        weight_grad_path_for(g),
        Path::WinogradF4x4 | Path::WinogradF2x2
    );
    let widens = g.out_channels > g.in_channels && !winograd;
    if empty || widens || g.stride != [1, 1] || ph >= kh || pw >= kw {
        return None;
    }
    let gt = Conv2dGeometry::new(
        &[g.batch, g.out_channels, g.out_h, g.out_w],
        &[g.in_channels, g.out_channels, kh, kw],
        [1, 1],
        [kh - 1 - ph, kw - 1 - pw],
    )
    .ok()?;
    debug_assert_eq!(gt.output_shape(), g.input_shape());
    Some(gt)
}

/// The weights of [`input_grad_geometry`]'s convolution: `w` (`[C_out][C_in][KH][KW]`) with
/// each kernel turned half a turn and the channel axes swapped, `[C_in][C_out][KH][KW]`.
fn flipped_weights<T: Element>(w: &[T], g: &Conv2dGeometry) -> Vec<T> {
    let (c_in, c_out, [kh, kw]) = (g.in_channels, g.out_channels, g.kernel);
    let mut out = vec![T::zero(); w.len()];
    for (ci, out) in out.chunks_exact_mut(c_out * kh * kw).enumerate() {
        for (co, out) in out.chunks_exact_mut(kh * kw).enumerate() {
            let taps = &w[(co * c_in + ci) * kh * kw..][..kh * kw];
            for (o, &v) in out.iter_mut().zip(taps.iter().rev()) {
                *o = v;
            }
        }
    }
    out
}

/// `dL/db[c]`: the sum of `dL/dy` over the batch and the output pixels of channel `c`,
/// in `S`'s compute type: a bf16 `dL/dy` (autocast's) is widened as it is read, so its
/// sums are, bit for bit, those of an f32 `dL/dy` holding the same values.
pub(crate) fn bias_grad<S: Stored>(gy: &[S], g: &Conv2dGeometry) -> Vec<S::Compute> {
    let p = g.out_h * g.out_w;
    let out_image = g.out_channels * p;
    (0..g.out_channels)
        .into_par_iter()
        .map(|c| {
            (0..g.batch)
                .map(|n| sum(&gy[n * out_image + c * p..][..p]))
                .sum()
        })
        .collect()
}

/// A sum the compiler can vectorise (eight running sums instead of one dependent chain).
fn sum<S: Stored>(xs: &[S]) -> S::Compute {
    let mut acc = [S::Compute::of(0.0); 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x.load();
        }
    }
    acc.iter().copied().sum::<S::Compute>() + chunks.remainder().iter().map(|x| x.load()).sum()
}

/// Splits `0..batch` into one contiguous range per rayon thread (fewer for small batches).
pub(crate) fn groups(batch: usize) -> Vec<Range<usize>> {
    let count = batch.min(rayon::current_num_threads()).max(1);
    (0..count)
        .map(|i| batch * i / count..batch * (i + 1) / count)
        .filter(|r| !r.is_empty())
        .collect()
}

/// Cuts `buf` into the disjoint parts that hold each group's images.
pub(crate) fn split_groups<'a, T>(
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

/// Scratch buffers kept per thread between calls: a training step convolves the same
/// shapes again and again, and fresh multi-megabyte buffers would cost a page fault per
/// 4 KiB on every call.
pub trait Scratch: Element {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;

    /// A buffer of exactly `len` elements with unspecified contents.
    fn take(len: usize) -> Vec<Self> {
        let mut buf = Self::pool()
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_default();
        if buf.capacity() < len {
            // Growing would copy contents nobody reads.
            buf = Vec::with_capacity(len);
        }
        buf.resize(len, Self::zero());
        buf.truncate(len);
        buf
    }

    fn give_back(buf: Vec<Self>) {
        if buf.capacity() == 0 {
            return;
        }
        Self::pool().with(|pool| {
            let mut pool = pool.borrow_mut();
            // A group uses three buffers; keep no more than that per thread.
            if pool.len() < 3 {
                pool.push(buf);
            }
        });
    }
}

thread_local! {
    static POOL_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static POOL_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Scratch for f32 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &POOL_F32
    }
}

impl Scratch for f64 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f64>>>> {
        &POOL_F64
    }
}
