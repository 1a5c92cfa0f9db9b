//! Optimizer updates, in place, matching PyTorch's `torch.optim.SGD` and `torch.optim.Adam`
//! (the default single-tensor algorithms) step for step.
//!
//! Each step is one fused pass over the parameter, its gradient and the optimizer state:
//! the state and parameter are read and written once, with no temporaries. Adam runs over
//! every parameter of the model each step, so this is the difference between streaming the
//! buffers once and five times.
//!
//! Hyper-parameters are checked the way PyTorch checks them, in `validate` on each config,
//! so a caller can reject a user's options before training starts; every step validates
//! again (it is cheap) and checks lengths and dtypes before touching anything, so an `Err`
//! leaves the parameter and the state unchanged.
//!
//! ```
//! use kernels::{optim, Storage};
//! // With a constant gradient Adam moves each parameter by lr * sign(g) per step.
//! let mut p = Storage::f64(vec![1.0]);
//! let (mut m, mut v) = (Storage::f64(vec![0.0]), Storage::f64(vec![0.0]));
//! let cfg = optim::AdamConfig { lr: 0.1, eps: 0.0, ..Default::default() };
//! optim::adam_step(&mut p, &Storage::f64(vec![3.0]), &mut m, &mut v, 1, &cfg).unwrap();
//! assert!((p.to_vec_f64().unwrap()[0] - 0.9).abs() < 1e-15);
//! ```

mod adam;
mod cpu;
mod cuda;
mod sgd;
#[cfg(test)]
mod tests;

pub use adam::{adam_step, AdamConfig};
pub use sgd::{sgd_step, SgdConfig};

use crate::{Error, Result, Storage};

/// Checks that an operand of an optimizer step has as many elements as the parameter.
fn expect_param_len(op: &'static str, operand: &str, s: &Storage, param_len: usize) -> Result<()> {
    if s.len() == param_len {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!(
                "{operand} has {} elements but the parameter has {param_len}",
                s.len()
            ),
        ))
    }
}

/// Rejects NaN, infinities and negatives: PyTorch's `if not 0.0 <= value` check, plus
/// finiteness, since an infinite rate or decay would silently turn the weights into NaN.
fn non_negative(op: &'static str, name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("invalid {name} {value}: must be a finite number >= 0"),
        ))
    }
}
