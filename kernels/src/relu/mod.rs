//! ReLU: `y = max(x, 0)`; the gradient flows where the input is positive.
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

use crate::{Element, Result, Storage};

const OP: &str = "relu";

/// Applies ReLU element-wise.
pub fn forward(x: &Storage) -> Result<Storage> {
    dispatch!(
        OP,
        x,
        cpu::<T> => forward_cpu::<T>(x),
        cuda(x) => cuda::forward(x),
    )
}

/// Gradient of ReLU given its forward input `x`: `grad_out` where `x > 0`, zero elsewhere.
/// (The forward output would serve as well: it is positive at exactly the same elements.)
pub fn backward(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    grad_out.expect_len(OP, "grad_out", x.len())?;
    dispatch!(
        OP,
        x,
        cpu::<T> => backward_cpu::<T>(x, grad_out),
        cuda(x) => cuda::backward(x, grad_out),
    )
}

fn forward_cpu<T: Element>(x: &Storage) -> Result<Storage> {
    Ok(T::into_storage(cpu::forward(x.host::<T>(OP, "input")?)))
}

fn backward_cpu<T: Element>(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    let grad_out = grad_out.host::<T>(OP, "grad_out")?;
    Ok(T::into_storage(cpu::backward(x, grad_out)))
}
