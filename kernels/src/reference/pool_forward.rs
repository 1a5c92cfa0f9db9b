//! The forward pass of a pooling layer (notebook 4.4), with PyTorch-style padding.
//!
//! Each output summarises one `f x f` window of one channel:
//!
//! ```text
//! A[i, h, w, c] = max  or  mean  of  A_prev_pad[i, h*stride .. h*stride+f, w*stride .. w*stride+f, c]
//! ```
//!
//! with `n_H = (n_H_prev + 2 pad - f) / stride + 1` (rounded down), same for `n_W`.
//! The notebook has no padding (`pad = 0`). With padding we follow PyTorch's
//! `max_pool2d` / `avg_pool2d` defaults: max pooling pads with `-inf` (a padded cell
//! never wins), average pooling pads with zeros and always divides by `f * f`
//! (`count_include_pad = true`).

use super::zero_pad::pad_with;
use super::Array4;

/// Which summary a pooling window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// The largest value (`np.max`).
    Max,
    /// The mean value (`np.average`), padded zeros included.
    Average,
}

/// The notebook's `hparameters` for pooling, plus PyTorch's padding.
///
/// `pad` follows PyTorch: max pooling pads with `-inf`, average pooling counts the
/// padded zeros (`count_include_pad = true`); `pad = 0` is the notebook's pooling.
#[derive(Clone, Copy, Debug)]
pub struct PoolParams {
    /// Window side.
    pub f: usize,
    /// Step between two windows (at least 1).
    pub stride: usize,
    /// Border added around each image; at most `f / 2`, as PyTorch requires, so that
    /// every window holds at least one real input.
    pub pad: usize,
}

/// Pools every channel of `a_prev` `(m, n_H_prev, n_W_prev, n_C)` into
/// `(m, n_H, n_W, n_C)`.
///
/// # Panics
///
/// If `f` or the stride is 0, `pad > f / 2`, or the window is larger than the padded
/// input.
pub fn pool_forward(a_prev: &Array4, hp: PoolParams, mode: PoolMode) -> Array4 {
    let [m, n_h, n_w, n_c] = pool_output_shape("pool_forward", a_prev, hp);
    let a_prev_pad = pad_for_pooling(a_prev, hp, mode);
    let mut a = Array4::zeros([m, n_h, n_w, n_c]);
    for i in 0..m {
        for h in 0..n_h {
            let vert_start = h * hp.stride;
            for x in 0..n_w {
                let horiz_start = x * hp.stride;
                for c in 0..n_c {
                    let a_prev_slice =
                        pool_window(&a_prev_pad, i, vert_start, horiz_start, hp.f, c);
                    let value = match mode {
                        PoolMode::Max => a_prev_slice[first_argmax(&a_prev_slice)],
                        PoolMode::Average => {
                            a_prev_slice.iter().sum::<f64>() / a_prev_slice.len() as f64
                        }
                    };
                    a.set([i, h, x, c], value);
                }
            }
        }
    }
    a
}

/// Checks the pooling hyper-parameters against `a_prev` and returns the output shape.
pub(super) fn pool_output_shape(name: &str, a_prev: &Array4, hp: PoolParams) -> [usize; 4] {
    let [m, n_h_prev, n_w_prev, n_c] = a_prev.shape;
    let PoolParams { f, stride, pad } = hp;
    assert!(
        f >= 1 && stride >= 1,
        "{name}: window {f} and stride {stride} must be at least 1"
    );
    assert!(
        pad <= f / 2,
        "{name}: pad {pad} is more than half the window {f}x{f}"
    );
    assert!(
        f <= n_h_prev + 2 * pad && f <= n_w_prev + 2 * pad,
        "{name}: window {f}x{f} does not fit the padded input {}x{} (a_prev {:?}, pad {pad})",
        n_h_prev + 2 * pad,
        n_w_prev + 2 * pad,
        a_prev.shape
    );
    [
        m,
        (n_h_prev + 2 * pad - f) / stride + 1,
        (n_w_prev + 2 * pad - f) / stride + 1,
        n_c,
    ]
}

/// Pads `a_prev` with the value that makes padded cells neutral for `mode`.
pub(super) fn pad_for_pooling(a_prev: &Array4, hp: PoolParams, mode: PoolMode) -> Array4 {
    let fill = match mode {
        PoolMode::Max => f64::NEG_INFINITY,
        PoolMode::Average => 0.0,
    };
    pad_with(a_prev, hp.pad, fill)
}

/// `a_pad[i, vert_start:vert_start+f, horiz_start:horiz_start+f, c]` in row-major order.
pub(super) fn pool_window(
    a_pad: &Array4,
    i: usize,
    vert_start: usize,
    horiz_start: usize,
    f: usize,
    c: usize,
) -> Vec<f64> {
    let mut slice = Vec::with_capacity(f * f);
    for dy in 0..f {
        for dx in 0..f {
            slice.push(a_pad.get([i, vert_start + dy, horiz_start + dx, c]));
        }
    }
    slice
}

/// Position of the maximum; on ties the first one wins, and a NaN beats any number
/// (so the max of a window holding NaN is NaN, as with `np.max` and PyTorch).
pub(super) fn first_argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in values.iter().enumerate() {
        let current = values[best];
        if v > current || (v.is_nan() && !current.is_nan()) {
            best = k;
        }
    }
    best
}
