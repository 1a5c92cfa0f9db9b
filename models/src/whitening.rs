//! Patch whitening: the initialisation of airbench's first convolution.
//!
//! Every `k x k` patch of the images, flattened in the convolution weight's order
//! (channel, row, column), is a vector `x` of `d = channels * k * k` values. Their second
//! moment `Σ = (1/n) Σ x xᵀ` (not centred: the patches' mean is not subtracted, as airbench
//! does) is symmetric positive semi-definite; its eigenvectors `v_i`, scaled by
//! `1 / sqrt(λ_i + eps)`, are filters whose responses over those patches are decorrelated
//! with variance `λ_i / (λ_i + eps)`. Airbench stacks them, largest eigenvalue first, with
//! their negatives: `2d` filters.
//!
//! ```
//! use models::whitening::{patch_moments, PatchWhitening};
//! // One 1-channel 2x2 image: a single 2x2 patch x = (1, 2, 3, 4), so Σ = x xᵀ, whose only
//! // non-zero eigenvalue is |x|² = 30 with eigenvector x / |x|.
//! let moments = patch_moments(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2], 2)?;
//! let whitening = PatchWhitening::of(&moments)?;
//! assert!((whitening.eigenvalues[0] - 30.0).abs() < 1e-12);
//! let v = &whitening.eigenvectors[0];
//! assert!((v[3] - 4.0 / 30f64.sqrt()).abs() < 1e-12);
//! # Ok::<(), autograd::Error>(())
//! ```

use autograd::{Error, Result};
use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;

const OP: &str = "whitening";

/// The non-centred second moment of all `kernel x kernel` patches (stride 1, no padding) of
/// a batch of NCHW images, accumulated in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchMoments {
    /// Patch length `channels * kernel * kernel`.
    pub dim: usize,
    /// `dim x dim`, row-major: `Σ x xᵀ / n`.
    pub matrix: Vec<f64>,
    /// Number of patches `n`.
    pub patches: usize,
    pub channels: usize,
    pub kernel: usize,
}

/// [`PatchMoments`] of `images` (`shape` = `[n, c, h, w]`, row-major), in parallel over
/// images.
pub fn patch_moments(images: &[f32], shape: [usize; 4], kernel: usize) -> Result<PatchMoments> {
    let [n, c, h, w] = shape;
    if images.len() != n * c * h * w {
        return Err(Error::shape(
            OP,
            format!(
                "{} values cannot be images of shape {shape:?}",
                images.len()
            ),
        ));
    }
    if kernel == 0 || kernel > h || kernel > w || n == 0 || c == 0 {
        return Err(Error::shape(
            OP,
            format!("{kernel}x{kernel} patches of images of shape {shape:?}: there are none"),
        ));
    }
    let dim = c * kernel * kernel;
    let (out_h, out_w) = (h - kernel + 1, w - kernel + 1);
    let image_len = c * h * w;
    // Upper triangle only; one accumulator per rayon task.
    let sums = images
        .par_chunks(image_len)
        .fold(
            || vec![0.0f64; dim * dim],
            |mut sums, image| {
                let mut patch = vec![0.0f64; dim];
                for y in 0..out_h {
                    for x in 0..out_w {
                        let mut i = 0;
                        for ch in 0..c {
                            for dy in 0..kernel {
                                let row = ch * h * w + (y + dy) * w + x;
                                for dx in 0..kernel {
                                    patch[i] = image[row + dx] as f64;
                                    i += 1;
                                }
                            }
                        }
                        for a in 0..dim {
                            let pa = patch[a];
                            let sums_row = &mut sums[a * dim..(a + 1) * dim];
                            for b in a..dim {
                                sums_row[b] += pa * patch[b];
                            }
                        }
                    }
                }
                sums
            },
        )
        .reduce(
            || vec![0.0f64; dim * dim],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            },
        );
    let patches = n * out_h * out_w;
    let mut matrix = vec![0.0; dim * dim];
    for a in 0..dim {
        for b in a..dim {
            let value = sums[a * dim + b] / patches as f64;
            matrix[a * dim + b] = value;
            matrix[b * dim + a] = value;
        }
    }
    Ok(PatchMoments {
        dim,
        matrix,
        patches,
        channels: c,
        kernel,
    })
}

/// The eigendecomposition of a [`PatchMoments`] matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchWhitening {
    /// Descending.
    pub eigenvalues: Vec<f64>,
    /// `eigenvectors[i]` belongs to `eigenvalues[i]`, unit length. Sign convention: its
    /// component of largest magnitude (the first such) is positive. (LAPACK, and so
    /// NumPy and PyTorch, fix no sign; the filters' signs do not matter to the network,
    /// since each is stacked with its negative.)
    pub eigenvectors: Vec<Vec<f64>>,
    pub channels: usize,
    pub kernel: usize,
}

impl PatchWhitening {
    /// Eigenvalues and eigenvectors of the symmetric `moments.matrix`, by nalgebra's
    /// symmetric eigensolver (Householder tridiagonalisation, implicit QR).
    pub fn of(moments: &PatchMoments) -> Result<PatchWhitening> {
        let dim = moments.dim;
        if moments.matrix.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                OP,
                "the patch covariance is not finite: the images hold NaN or infinity",
            ));
        }
        let matrix = DMatrix::from_row_slice(dim, dim, &moments.matrix);
        let eigen = SymmetricEigen::new(matrix);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let eigenvalues = order.iter().map(|&i| eigen.eigenvalues[i]).collect();
        let eigenvectors = order
            .iter()
            .map(|&i| {
                let mut v: Vec<f64> = eigen.eigenvectors.column(i).iter().copied().collect();
                let mut largest = 0;
                for (j, x) in v.iter().enumerate() {
                    if x.abs() > v[largest].abs() {
                        largest = j;
                    }
                }
                if v[largest] < 0.0 {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            })
            .collect();
        Ok(PatchWhitening {
            eigenvalues,
            eigenvectors,
            channels: moments.channels,
            kernel: moments.kernel,
        })
    }

    /// The `2d` filters, shape `[2d, channels, kernel, kernel]` row-major: `v_i /
    /// sqrt(λ_i + eps)` for each `i` in descending eigenvalue order, then their negatives
    /// (airbench's `torch.cat((eigenvectors_scaled, -eigenvectors_scaled))`).
    pub fn filters(&self, eps: f64) -> Vec<f32> {
        let scaled: Vec<Vec<f64>> = self
            .eigenvalues
            .iter()
            .zip(&self.eigenvectors)
            .map(|(&lambda, v)| {
                let scale = 1.0 / (lambda + eps).sqrt();
                v.iter().map(|x| x * scale).collect()
            })
            .collect();
        let positive = scaled.iter().flatten().map(|&x| x as f32);
        let negative = scaled.iter().flatten().map(|&x| -x as f32);
        positive.chain(negative).collect()
    }

    /// The shape [`filters`](Self::filters) has.
    pub fn filter_shape(&self) -> [usize; 4] {
        [
            2 * self.eigenvalues.len(),
            self.channels,
            self.kernel,
            self.kernel,
        ]
    }
}
