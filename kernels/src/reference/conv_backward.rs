//! The backward pass of a convolutional layer (not in the notebook).
//!
//! Each output `Z[i, h, w, c]` is `b[c]` plus a sum of products
//! `A_prev_pad[i, h*stride + dy, w*stride + dx, k] * W[dy, dx, k, c]`, so its gradient
//! `dZ[i, h, w, c]` flows back along every product:
//!
//! ```text
//! dA_prev_pad[i, h*stride + dy, w*stride + dx, k] += W[dy, dx, k, c]          * dZ[i, h, w, c]
//! dW[dy, dx, k, c]                                += A_prev_pad[i, h*stride + dy, w*stride + dx, k] * dZ[i, h, w, c]
//! db[c]                                           += dZ[i, h, w, c]
//! ```
//!
//! and `dA_prev` is `dA_prev_pad` with the padded border cut off (padding is not an
//! input, the gradient that reaches it goes nowhere).

use super::conv_forward::conv_output_shape;
use super::zero_pad::strip_pad;
use super::{zero_pad, Array4, ConvParams};

/// The gradients of a convolution's loss with respect to its three inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGrads {
    /// Same shape as `a_prev`: `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub da_prev: Array4,
    /// Same shape as `w`: `(f, f, n_C_prev, n_C)`.
    pub dw: Array4,
    /// One value per filter.
    pub db: Vec<f64>,
}

/// Back-propagates `dz` (the gradient of the loss with respect to the output of
/// [`conv_forward`](super::conv_forward)`(a_prev, w, b, hp)`) to `a_prev`, `w` and `b`.
///
/// # Panics
///
/// On the operand errors [`conv_forward`](super::conv_forward) panics on, or if `dz`
/// does not have that call's output shape.
// Index loops on purpose: each line below is one of the formulas in the module doc.
#[allow(clippy::needless_range_loop)]
pub fn conv_backward(dz: &Array4, a_prev: &Array4, w: &Array4, hp: ConvParams) -> ConvGrads {
    let z_shape = conv_output_shape("conv_backward", a_prev, w, hp);
    assert_eq!(
        dz.shape, z_shape,
        "conv_backward: dz {:?} is not the output shape {z_shape:?} of a_prev {:?} * w {:?} (stride {}, pad {})",
        dz.shape, a_prev.shape, w.shape, hp.stride, hp.pad
    );
    let [m, n_h, n_w, n_c] = z_shape;
    let [f, _, n_c_prev, _] = w.shape;

    let a_prev_pad = zero_pad(a_prev, hp.pad);
    let mut da_prev_pad = Array4::zeros(a_prev_pad.shape);
    let mut dw = Array4::zeros(w.shape);
    let mut db = vec![0.0; n_c];
    for i in 0..m {
        for h in 0..n_h {
            let vert_start = h * hp.stride;
            // The notebook's `w` loop; here `w` names the weights.
            for x in 0..n_w {
                let horiz_start = x * hp.stride;
                for c in 0..n_c {
                    let g = dz.get([i, h, x, c]);
                    for dy in 0..f {
                        for dx in 0..f {
                            for k in 0..n_c_prev {
                                let input = [i, vert_start + dy, horiz_start + dx, k];
                                da_prev_pad.accumulate(input, w.get([dy, dx, k, c]) * g);
                                dw.accumulate([dy, dx, k, c], a_prev_pad.get(input) * g);
                            }
                        }
                    }
                    db[c] += g;
                }
            }
        }
    }
    ConvGrads {
        da_prev: strip_pad(&da_prev_pad, hp.pad),
        dw,
        db,
    }
}
