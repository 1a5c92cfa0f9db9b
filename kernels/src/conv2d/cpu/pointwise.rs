//! A 1x1 convolution with stride 1 and zero padding, as the network's `layer3`–`layer5`
//! use it (`Conv2d(C, C', 1, padding=1)`), computed on the image alone.
//!
//! Every output pixel in the padding border reads only padding, so it is the bias (or
//! zero) and contributes nothing to the weight or input gradients. The unpadded image is
//! a 1x1 convolution without padding, which needs no unrolling at all (the image is its
//! own `col`); the border is filled in around it. At the network's shapes the border is a
//! third to a half of the output (9x9 -> 11x11, 6x6 -> 8x8, 5x5 -> 7x7), products the
//! padded lowering multiplies with zeros.
//!
//! ```text
//! y[n, co, p + i, p + j] = b[co] + sum_ci w[co, ci] * x[n, ci, i, j]     (the interior)
//! y[n, co, border]       = b[co]
//! dL/dW, dL/dx           = those of the unpadded convolution, given dL/dy's interior
//! dL/db                  = sum of all of dL/dy, border included
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{backward, bias_grad, forward, Grads, Scratch};
use crate::conv2d::Conv2dGeometry;

/// The unpadded convolution of the image, for `g` a padded 1x1, stride-1 convolution.
fn interior(g: &Conv2dGeometry) -> Conv2dGeometry {
    debug_assert!(g.kernel == [1, 1] && g.stride == [1, 1]);
    Conv2dGeometry {
        padding: [0, 0],
        out_h: g.in_h,
        out_w: g.in_w,
        ..*g
    }
}

pub(super) fn padded_forward<T: Scratch>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
) -> Vec<T> {
    let inner = interior(g);
    let inside = forward(x, w, bias, &inner);
    let (out_plane, in_plane) = (g.out_h * g.out_w, inner.out_h * inner.out_w);
    let len = g.batch * g.out_channels * out_plane;
    let mut y: Vec<T> = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(out_plane)
        .zip(inside.par_chunks(in_plane))
        .enumerate()
        .for_each(|(plane, (out, inside))| {
            let fill = bias.map_or(T::zero(), |b| b[plane % g.out_channels]);
            embed(inside, out, g, fill);
        });
    // SAFETY: the planes cover `0..len` and `embed` writes every element of its plane.
    unsafe { y.set_len(len) };
    y
}

/// Writes `inside` (`in_h x in_w`) into the middle of the padded plane `out` and `fill`
/// everywhere around it.
fn embed<T: Scratch>(inside: &[T], out: &mut [MaybeUninit<T>], g: &Conv2dGeometry, fill: T) {
    let ([ph, pw], w) = (g.padding, g.out_w);
    let mut rows = out.chunks_exact_mut(w);
    for row in rows.by_ref().take(ph) {
        row.fill(MaybeUninit::new(fill));
    }
    for (row, src) in rows.by_ref().take(g.in_h).zip(inside.chunks_exact(g.in_w)) {
        let (left, rest) = row.split_at_mut(pw);
        let (middle, right) = rest.split_at_mut(g.in_w);
        left.fill(MaybeUninit::new(fill));
        for (d, &s) in middle.iter_mut().zip(src) {
            *d = MaybeUninit::new(s);
        }
        right.fill(MaybeUninit::new(fill));
    }
    for row in rows {
        row.fill(MaybeUninit::new(fill));
    }
}

pub(super) fn padded_backward<T: Scratch>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Grads<T> {
    let inner = interior(g);
    let ([ph, pw], out_w) = (g.padding, g.out_w);
    let (out_plane, in_plane) = (g.out_h * out_w, g.in_h * g.in_w);
    let mut gy_inside = vec![T::zero(); g.batch * g.out_channels * in_plane];
    gy_inside
        .par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .for_each(|(inside, plane)| {
            for (dst, row) in inside
                .chunks_exact_mut(g.in_w)
                .zip(plane.chunks_exact(out_w).skip(ph))
            {
                dst.copy_from_slice(&row[pw..pw + g.in_w]);
            }
        });
    let grads = backward(x, w, &gy_inside, &inner, false, need_input_grad);
    let bias = has_bias.then(|| bias_grad(gy, g));
    Grads { bias, ..grads }
}
