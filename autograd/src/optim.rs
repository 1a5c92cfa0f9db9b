//! In-place parameter updates from accumulated gradients: the arithmetic of SGD and Adam.
//!
//! The optimizers themselves (which parameters, what state, saving and loading it) live in
//! the `models` crate; this module applies one update to one parameter.

use kernels::{optim, Error, Result, Storage};

pub use kernels::optim::{AdamConfig, SgdConfig};

use crate::tensor::lock;
use crate::Tensor;

fn check_state(op: &'static str, param: &Tensor, name: &str, state: &Tensor) -> Result<()> {
    if state.shape() == param.shape() {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!(
                "{name} has shape {:?} but the parameter has shape {:?}",
                state.shape(),
                param.shape()
            ),
        ))
    }
}

/// One Adam step on `param` using its accumulated gradient. Returns `false` (and changes
/// nothing) when the parameter has no gradient, as PyTorch skips such parameters.
pub fn adam_update(
    param: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: u64,
    config: &AdamConfig,
) -> Result<bool> {
    check_state("adam", param, "exp_avg", exp_avg)?;
    check_state("adam", param, "exp_avg_sq", exp_avg_sq)?;
    let grad = lock(&param.0.grad);
    let Some(grad) = grad.as_ref() else {
        return Ok(false);
    };
    optim::adam_step(
        &mut param.storage_mut(),
        grad,
        &mut exp_avg.storage_mut(),
        &mut exp_avg_sq.storage_mut(),
        step,
        config,
    )?;
    Ok(true)
}

/// One SGD step on `param` using its accumulated gradient. The momentum buffer is created
/// on the first step when momentum is used. Returns `false` when there is no gradient.
pub fn sgd_update(
    param: &Tensor,
    momentum_buffer: &mut Option<Tensor>,
    config: &SgdConfig,
) -> Result<bool> {
    if let Some(buffer) = momentum_buffer {
        check_state("sgd", param, "momentum_buffer", buffer)?;
    }
    let grad = lock(&param.0.grad);
    let Some(grad) = grad.as_ref() else {
        return Ok(false);
    };
    let mut param_storage = param.storage_mut();
    match momentum_buffer {
        Some(buffer) => {
            let mut guard = buffer.storage_mut();
            let mut state = Some(std::mem::replace(&mut *guard, Storage::f32(Vec::new())));
            let result = optim::sgd_step(&mut param_storage, grad, &mut state, config);
            if let Some(state) = state {
                *guard = state;
            }
            result?;
        }
        None => {
            let mut state = None;
            optim::sgd_step(&mut param_storage, grad, &mut state, config)?;
            if let Some(state) = state {
                *momentum_buffer = Some(Tensor::from_storage(state, param.shape())?);
            }
        }
    }
    Ok(true)
}
