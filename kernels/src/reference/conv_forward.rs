//! The forward pass of a convolutional layer (notebook 4.3).
//!
//! For every image `i`, output position `(h, w)` and filter `c`:
//!
//! ```text
//! Z[i, h, w, c] = sum over (dy, dx, k) of
//!                 A_prev_pad[i, h*stride + dy, w*stride + dx, k] * W[dy, dx, k, c]  + b[c]
//! ```
//!
//! with `n_H = (n_H_prev + 2 pad - f) / stride + 1` (rounded down), same for `n_W`.
//! Like every deep-learning "convolution" this is a cross-correlation: the filter is
//! not flipped.

use super::{conv_single_step, zero_pad, Array4};

/// The notebook's `hparameters` for a convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvParams {
    /// Step between two windows, in both directions (at least 1).
    pub stride: usize,
    /// Rows/columns of zeros added around each image before sliding the filter.
    pub pad: usize,
}

/// Convolves `a_prev` `(m, n_H_prev, n_W_prev, n_C_prev)` with the filters `w`
/// `(f, f, n_C_prev, n_C)` and adds the biases `b` (`n_C` values).
///
/// Returns `Z` of shape `(m, n_H, n_W, n_C)`.
///
/// # Panics
///
/// If the filter is not square, its channel count differs from the input's, `b` does
/// not hold one value per filter, the stride is 0, or the filter is larger than the
/// padded input.
pub fn conv_forward(a_prev: &Array4, w: &Array4, b: &[f64], hp: ConvParams) -> Array4 {
    let [m, n_h, n_w, n_c] = conv_output_shape("conv_forward", a_prev, w, hp);
    let f = w.shape[0];
    assert_eq!(
        b.len(),
        n_c,
        "conv_forward: {} biases for {n_c} filters (w {:?})",
        b.len(),
        w.shape
    );

    let a_prev_pad = zero_pad(a_prev, hp.pad);
    let filters: Vec<Vec<f64>> = (0..n_c).map(|c| filter(w, c)).collect();
    let mut z = Array4::zeros([m, n_h, n_w, n_c]);
    for i in 0..m {
        for h in 0..n_h {
            let vert_start = h * hp.stride;
            // The notebook's `w` loop; here `w` names the weights.
            for x in 0..n_w {
                let horiz_start = x * hp.stride;
                let a_slice_prev = window(&a_prev_pad, i, vert_start, horiz_start, f);
                for c in 0..n_c {
                    z.set(
                        [i, h, x, c],
                        conv_single_step(&a_slice_prev, &filters[c], b[c]),
                    );
                }
            }
        }
    }
    z
}

/// Checks the operands of a convolution and returns the output shape `(m, n_H, n_W, n_C)`.
pub(super) fn conv_output_shape(
    name: &str,
    a_prev: &Array4,
    w: &Array4,
    hp: ConvParams,
) -> [usize; 4] {
    let [m, n_h_prev, n_w_prev, n_c_prev] = a_prev.shape;
    let [f, f2, w_c_prev, n_c] = w.shape;
    assert!(
        f == f2,
        "{name}: filters must be square, got w {:?}",
        w.shape
    );
    assert!(
        w_c_prev == n_c_prev,
        "{name}: w {:?} expects {w_c_prev} input channels, a_prev {:?} has {n_c_prev}",
        w.shape,
        a_prev.shape
    );
    assert!(hp.stride >= 1, "{name}: stride must be at least 1");
    assert!(
        f >= 1 && f <= n_h_prev + 2 * hp.pad && f <= n_w_prev + 2 * hp.pad,
        "{name}: filter {f}x{f} does not fit the padded input {}x{} (a_prev {:?}, pad {})",
        n_h_prev + 2 * hp.pad,
        n_w_prev + 2 * hp.pad,
        a_prev.shape,
        hp.pad
    );
    [
        m,
        (n_h_prev + 2 * hp.pad - f) / hp.stride + 1,
        (n_w_prev + 2 * hp.pad - f) / hp.stride + 1,
        n_c,
    ]
}

/// `a_pad[i, vert_start:vert_start+f, horiz_start:horiz_start+f, :]`, flattened in C order.
pub(super) fn window(
    a_pad: &Array4,
    i: usize,
    vert_start: usize,
    horiz_start: usize,
    f: usize,
) -> Vec<f64> {
    let n_c = a_pad.shape[3];
    let mut slice = Vec::with_capacity(f * f * n_c);
    for dy in 0..f {
        for dx in 0..f {
            for k in 0..n_c {
                slice.push(a_pad.get([i, vert_start + dy, horiz_start + dx, k]));
            }
        }
    }
    slice
}

/// Filter `c`, `w[:, :, :, c]`, flattened in C order (the same order as [`window`]).
pub(super) fn filter(w: &Array4, c: usize) -> Vec<f64> {
    let [f, _, n_c_prev, _] = w.shape;
    let mut weights = Vec::with_capacity(f * f * n_c_prev);
    for dy in 0..f {
        for dx in 0..f {
            for k in 0..n_c_prev {
                weights.push(w.get([dy, dx, k, c]));
            }
        }
    }
    weights
}
