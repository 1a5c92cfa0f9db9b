//! The backward pass of a pooling layer (not in the notebook).
//!
//! - Max: only the window's maximum reached the output, so it alone receives the
//!   gradient, `dA_prev_pad[argmax] += dA[i, h, w, c]`. On ties the first maximum in
//!   row-major window order takes it all, as in PyTorch.
//! - Average: every cell contributed `1 / (f * f)` of the output, so each receives
//!   `dA[i, h, w, c] / (f * f)`; padded cells absorb their share, which is dropped.
//!
//! Overlapping windows (stride < f) add up in `dA_prev`.

use super::pool_forward::{first_argmax, pad_for_pooling, pool_output_shape, pool_window};
use super::zero_pad::strip_pad;
use super::{Array4, PoolMode, PoolParams};

/// Back-propagates `da` (the gradient of the loss with respect to the output of
/// [`pool_forward`](super::pool_forward)`(a_prev, hp, mode)`) to `a_prev`.
///
/// # Panics
///
/// On the hyper-parameter errors [`pool_forward`](super::pool_forward) panics on, or if
/// `da` does not have that call's output shape.
pub fn pool_backward(da: &Array4, a_prev: &Array4, hp: PoolParams, mode: PoolMode) -> Array4 {
    let a_shape = pool_output_shape("pool_backward", a_prev, hp);
    assert_eq!(
        da.shape, a_shape,
        "pool_backward: da {:?} is not the output shape {a_shape:?} of pooling a_prev {:?} ({hp:?})",
        da.shape, a_prev.shape
    );
    let [m, n_h, n_w, n_c] = a_shape;
    let f = hp.f;

    let a_prev_pad = pad_for_pooling(a_prev, hp, mode);
    let mut da_prev_pad = Array4::zeros(a_prev_pad.shape);
    for i in 0..m {
        for h in 0..n_h {
            let vert_start = h * hp.stride;
            for x in 0..n_w {
                let horiz_start = x * hp.stride;
                for c in 0..n_c {
                    let g = da.get([i, h, x, c]);
                    match mode {
                        PoolMode::Max => {
                            let slice = pool_window(&a_prev_pad, i, vert_start, horiz_start, f, c);
                            let k = first_argmax(&slice);
                            let (dy, dx) = (k / f, k % f);
                            da_prev_pad.accumulate([i, vert_start + dy, horiz_start + dx, c], g);
                        }
                        PoolMode::Average => {
                            let share = g / (f * f) as f64;
                            for dy in 0..f {
                                for dx in 0..f {
                                    let cell = [i, vert_start + dy, horiz_start + dx, c];
                                    da_prev_pad.accumulate(cell, share);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    strip_pad(&da_prev_pad, hp.pad)
}
