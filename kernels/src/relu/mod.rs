//! ReLU: `y = max(x, 0)`; the gradient flows where the input is positive.
//!
//! A bf16 input (an activation stored under autocast) gives a bf16 output (exact: each
//! value is kept or replaced by zero) and, in the backward, takes and returns bf16
//! gradients (exact too), as the other layers between two convolutions do, on the host
//! and on the GPU alike.
//!
//! ```
//! use kernels::{relu, Storage};
//! let y = relu::forward(&Storage::f32(vec![-1.0, 2.0])).unwrap();
//! assert_eq!(y, Storage::f32(vec![0.0, 2.0]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use half::bf16;

use crate::bf16_values::widen;
use crate::{Element, Result, Storage};

const OP: &str = "relu";

/// Applies ReLU element-wise; the output has the input's dtype (f32, f64 or bf16).
pub fn forward(x: &Storage) -> Result<Storage> {
    dispatch!(
        OP,
        x,
        cpu::<T> => forward_cpu::<T>(x),
        bf16 => Ok(Storage::bf16(cpu::forward(x.host_bf16(OP, "input")?, bf16_is_positive))),
        cuda(x) => cuda::forward(x),
        cuda_bf16(x) => cuda::forward_bf16(x),
    )
}

/// Gradient of ReLU given its forward input `x`: `grad_out` where `x > 0`, zero elsewhere.
/// (The forward output would serve as well: it is positive at exactly the same elements.)
/// `grad_out` and the gradient have `x`'s dtype (f32, f64 or bf16).
pub fn backward(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    grad_out.expect_len(OP, "grad_out", x.len())?;
    dispatch!(
        OP,
        x,
        cpu::<T> => backward_cpu::<T>(x, grad_out),
        bf16 => {
            let x = x.host_bf16(OP, "input")?;
            let grad_out = grad_out.host_bf16(OP, "grad_out")?;
            Ok(Storage::bf16(cpu::backward(x, grad_out, bf16_is_positive)))
        },
        cuda(x) => cuda::backward(x, grad_out),
        cuda_bf16(x) => cuda::backward_bf16(x, grad_out),
    )
}

fn is_positive<T: Element>(v: T) -> bool {
    v > T::zero()
}

fn bf16_is_positive(v: bf16) -> bool {
    widen(v) > 0.0
}

fn forward_cpu<T: Element>(x: &Storage) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    Ok(T::into_storage(cpu::forward(x, is_positive::<T>)))
}

fn backward_cpu<T: Element>(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    let grad_out = grad_out.host::<T>(OP, "grad_out")?;
    Ok(T::into_storage(cpu::backward(
        x,
        grad_out,
        is_positive::<T>,
    )))
}
