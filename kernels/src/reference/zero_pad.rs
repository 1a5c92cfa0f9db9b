//! Padding the borders of a batch of images, and its adjoint (cropping the border off).

use super::Array4;

/// Surrounds every image with `pad` rows and columns of zeros (notebook 4.2).
///
/// `(m, n_H, n_W, n_C)` becomes `(m, n_H + 2 pad, n_W + 2 pad, n_C)`, like
/// `np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), 'constant')`.
pub fn zero_pad(x: &Array4, pad: usize) -> Array4 {
    pad_with(x, pad, 0.0)
}

/// [`zero_pad`] with another fill value (max pooling pads with `-inf`).
pub(super) fn pad_with(x: &Array4, pad: usize, value: f64) -> Array4 {
    let [m, n_h, n_w, n_c] = x.shape;
    let mut x_pad = Array4::from_vec(
        [m, n_h + 2 * pad, n_w + 2 * pad, n_c],
        vec![value; m * (n_h + 2 * pad) * (n_w + 2 * pad) * n_c],
    );
    for i in 0..m {
        for h in 0..n_h {
            for w in 0..n_w {
                for c in 0..n_c {
                    x_pad.set([i, h + pad, w + pad, c], x.get([i, h, w, c]));
                }
            }
        }
    }
    x_pad
}

/// Drops the `pad`-wide border: `x_pad[:, pad:-pad, pad:-pad, :]`.
///
/// This is the backward pass of padding: a padded cell is not an input, so the
/// gradient that reached it is discarded.
pub(super) fn strip_pad(x_pad: &Array4, pad: usize) -> Array4 {
    let [m, n_h_pad, n_w_pad, n_c] = x_pad.shape;
    assert!(
        n_h_pad >= 2 * pad && n_w_pad >= 2 * pad,
        "strip_pad: shape {:?} is smaller than a border of {pad}",
        x_pad.shape
    );
    let (n_h, n_w) = (n_h_pad - 2 * pad, n_w_pad - 2 * pad);
    let mut x = Array4::zeros([m, n_h, n_w, n_c]);
    for i in 0..m {
        for h in 0..n_h {
            for w in 0..n_w {
                for c in 0..n_c {
                    x.set([i, h, w, c], x_pad.get([i, h + pad, w + pad, c]));
                }
            }
        }
    }
    x
}
