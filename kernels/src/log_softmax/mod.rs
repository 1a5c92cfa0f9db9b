//! Log-softmax over the last axis of a `rows x cols` matrix:
//! `y[r, j] = x[r, j] - logsumexp(x[r, :])`, with `logsumexp(x) = m + ln(sum_j exp(x_j - m))`
//! and `m = max_j x_j`, so every exponent is <= 0 and logits of ±1e4 stay finite.
//!
//! Backward, from the forward output: `dy_j/dx_k = [j = k] - softmax_k`, so
//! `grad_x[k] = g[k] - exp(y[k]) * sum_j g[j]`.
//!
//! ```
//! use kernels::{log_softmax, Storage};
//! // Two equal logits: each gets probability 1/2.
//! let y = log_softmax::forward(&Storage::f64(vec![0.0, 0.0]), 1, 2).unwrap();
//! assert_eq!(y, Storage::f64(vec![-std::f64::consts::LN_2; 2]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{Element, Error, Result, Storage};

const OP: &str = "log_softmax";

/// A `rows x cols` matrix, softmax taken along each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rows {
    rows: usize,
    cols: usize,
}

impl Rows {
    fn new(rows: usize, cols: usize) -> Result<Self> {
        rows.checked_mul(cols)
            .ok_or_else(|| Error::shape(OP, format!("{rows} x {cols} elements overflow usize")))?;
        Ok(Rows { rows, cols })
    }

    fn len(&self) -> usize {
        self.rows * self.cols
    }

    fn expect(&self, storage: &Storage, operand: &str) -> Result<()> {
        if storage.len() == self.len() {
            Ok(())
        } else {
            Err(Error::shape(
                OP,
                format!(
                    "{operand} has {} elements, expected {} x {} = {}",
                    storage.len(),
                    self.rows,
                    self.cols,
                    self.len()
                ),
            ))
        }
    }
}

/// `log_softmax` of each row of the `rows x cols` matrix `x`.
pub fn forward(x: &Storage, rows: usize, cols: usize) -> Result<Storage> {
    let geom = Rows::new(rows, cols)?;
    geom.expect(x, "input")?;
    dispatch!(
        OP,
        x,
        cpu::<T> => forward_cpu::<T>(x, geom),
        cuda(x) => cuda::forward(x, geom),
    )
}

/// Given the forward output `y = log_softmax(x)` and `grad_out = dL/dy`, returns
/// `dL/dx = g - exp(y) * rowsum(g)`.
pub fn backward(y: &Storage, grad_out: &Storage, rows: usize, cols: usize) -> Result<Storage> {
    let geom = Rows::new(rows, cols)?;
    geom.expect(y, "output")?;
    geom.expect(grad_out, "grad_out")?;
    dispatch!(
        OP,
        y,
        cpu::<T> => backward_cpu::<T>(y, grad_out, geom),
        cuda(y) => cuda::backward(y, grad_out, geom),
    )
}

fn forward_cpu<T: Element>(x: &Storage, geom: Rows) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    Ok(T::into_storage(cpu::forward(x, geom.cols)))
}

fn backward_cpu<T: Element>(y: &Storage, grad_out: &Storage, geom: Rows) -> Result<Storage> {
    let y = y.host::<T>(OP, "output")?;
    let grad_out = grad_out.host::<T>(OP, "grad_out")?;
    Ok(T::into_storage(cpu::backward(y, grad_out, geom.cols)))
}
