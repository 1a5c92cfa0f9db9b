//! GELU in its exact form, PyTorch's `nn.GELU()` default (`approximate='none'`):
//!
//! ```text
//! y      = x Φ(x)                  Φ(x) = ½ (1 + erf(x / √2)), the standard normal cdf
//! dy/dx  = Φ(x) + x φ(x)           φ(x) = exp(-x² / 2) / √(2π)
//! ```
//!
//! The backward pass takes the forward *input*. f64 computes `Φ` from libm's `erfc`; f32
//! from the vectorisable fits in `normal.rs`, whose accuracy is stated there.
//!
//! ```
//! use kernels::{gelu, Storage};
//! let y = gelu::forward(&Storage::f64(vec![0.0, 1.0])).unwrap().to_vec_f64().unwrap();
//! assert_eq!(y[0], 0.0);
//! assert!((y[1] - 0.841_344_746_068_542_9).abs() < 1e-15); // Φ(1)
//! ```

mod cpu;
mod cuda;
pub mod normal;
#[cfg(test)]
mod tests;

use crate::{Result, Storage};

const OP: &str = "gelu";

/// Applies GELU element-wise.
pub fn forward(x: &Storage) -> Result<Storage> {
    dispatch!(
        OP,
        x,
        cpu::<T> => cpu::forward::<T>(x),
        cuda(x) => cuda::forward(x),
    )
}

/// Gradient of GELU with respect to its input `x`, given the gradient of its output.
pub fn backward(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    grad_out.expect_len(OP, "grad_out", x.len())?;
    dispatch!(
        OP,
        x,
        cpu::<T> => cpu::backward::<T>(x, grad_out),
        cuda(x) => cuda::backward(x, grad_out),
    )
}
