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
//! A bf16 input (an activation stored under autocast) is computed in f32: the forward
//! returns bf16, the f32 kernel's value rounded once; the backward takes a bf16 `grad_out`
//! (a gradient has its activation's dtype, as in PyTorch) and returns the f32 kernel's
//! gradient at the widened values, rounded once to bf16. Both read those results from
//! tables of every bf16 input's (`table.rs`), computed once by the f32 kernel. On the GPU
//! a bf16 input runs the f32 kernels' code on the widened values, rounded once: the same
//! bits.
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
mod table;
#[cfg(test)]
mod tests;

use crate::{Element, Result, Storage};

const OP: &str = "gelu";

/// Applies GELU element-wise; the output has the input's dtype (f32, f64 or bf16).
pub fn forward(x: &Storage) -> Result<Storage> {
    dispatch!(
        OP,
        x,
        cpu::<T> => Ok(T::into_storage(cpu::forward(x.host::<T>(OP, "input")?))),
        bf16 => Ok(Storage::bf16(table::forward(x.host_bf16(OP, "input")?))),
        cuda(x) => cuda::forward(x),
        cuda_bf16(x) => cuda::forward_bf16(x),
    )
}

/// Gradient of GELU with respect to its input `x`, given the gradient of its output; both
/// gradients have `x`'s dtype (f32, f64 or bf16).
pub fn backward(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    grad_out.expect_len(OP, "grad_out", x.len())?;
    dispatch!(
        OP,
        x,
        cpu::<T> => backward_cpu::<T>(x, grad_out),
        bf16 => Ok(Storage::bf16(table::backward(
            x.host_bf16(OP, "input")?,
            grad_out.host_bf16(OP, "grad_out")?,
        ))),
        cuda(x) => cuda::backward(x, grad_out),
        cuda_bf16(x) => cuda::backward_bf16(x, grad_out),
    )
}

fn backward_cpu<T: cpu::Activation>(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    let x = T::from_host(x, OP, "input")?;
    let grad_out = T::from_host(grad_out, OP, "grad_out")?;
    Ok(T::to_storage(cpu::backward(x, grad_out)))
}
