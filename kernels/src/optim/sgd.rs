//! Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.

use super::{cpu, expect_param_len, non_negative};
use crate::{Element, Error, Result, Storage};

const OP: &str = "sgd";

/// The hyper-parameters of `torch.optim.SGD` (no `maximize`; PyTorch has no default `lr`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdConfig {
    /// PyTorch's checks: `lr >= 0`, `momentum >= 0`, `weight_decay >= 0`, and Nesterov only
    /// with `momentum > 0` and `dampening == 0`; all values must also be finite.
    pub fn validate(&self) -> Result<()> {
        non_negative(OP, "learning rate", self.lr)?;
        non_negative(OP, "momentum", self.momentum)?;
        non_negative(OP, "weight_decay", self.weight_decay)?;
        if !self.dampening.is_finite() {
            return Err(Error::invalid(
                OP,
                format!("invalid dampening {}: must be finite", self.dampening),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                OP,
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening 0, got momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }
}

/// One PyTorch SGD step, in place:
///
/// ```text
/// g = grad + weight_decay * p
/// if momentum != 0:
///     buf = g                                        on the first step (buffer is None)
///     buf = momentum * buf + (1 - dampening) * g     afterwards
///     g = g + momentum * buf  if nesterov  else  buf
/// p -= lr * g
/// ```
///
/// `momentum_buffer` is the per-parameter state: start with `None`; it is created on the
/// first step when momentum is non-zero and left alone (and unchecked) when it is zero.
pub fn sgd_step(
    param: &mut Storage,
    grad: &Storage,
    momentum_buffer: &mut Option<Storage>,
    cfg: &SgdConfig,
) -> Result<()> {
    cfg.validate()?;
    expect_param_len(OP, "grad", grad, param.len())?;
    if cfg.momentum != 0.0 {
        if let Some(buf) = momentum_buffer {
            expect_param_len(OP, "momentum buffer", buf, param.len())?;
        }
    }
    dispatch!(
        OP,
        param,
        cpu::<T> => sgd_cpu::<T>(param, grad, momentum_buffer, cfg),
        cuda(param) => super::cuda::sgd(param, grad, momentum_buffer, cfg),
    )
}

fn sgd_cpu<T: Element>(
    param: &mut Storage,
    grad: &Storage,
    momentum_buffer: &mut Option<Storage>,
    cfg: &SgdConfig,
) -> Result<()> {
    let grad = grad.host::<T>(OP, "grad")?;
    let coeffs = cpu::SgdCoeffs {
        lr: T::of(cfg.lr),
        weight_decay: (cfg.weight_decay != 0.0).then(|| T::of(cfg.weight_decay)),
        momentum: T::of(cfg.momentum),
        one_minus_dampening: T::of(1.0 - cfg.dampening),
        nesterov: cfg.nesterov,
    };
    if cfg.momentum == 0.0 {
        cpu::sgd(param.host_mut::<T>(OP, "param")?, grad, coeffs);
        return Ok(());
    }
    match momentum_buffer {
        Some(buf) => {
            let buf = buf.host_mut::<T>(OP, "momentum buffer")?;
            let param = param.host_mut::<T>(OP, "param")?;
            cpu::sgd_momentum(param, grad, buf, false, coeffs);
        }
        None => {
            let param = param.host_mut::<T>(OP, "param")?;
            let mut buf = vec![T::zero(); param.len()];
            cpu::sgd_momentum(param, grad, &mut buf, true, coeffs);
            *momentum_buffer = Some(T::into_storage(buf));
        }
    }
    Ok(())
}
