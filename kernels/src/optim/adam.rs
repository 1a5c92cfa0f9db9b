//! Adam with L2 weight decay folded into the gradient (`torch.optim.Adam`, not AdamW).

use super::{cpu, expect_param_len, non_negative};
use crate::{Element, Error, Result, Storage};

const OP: &str = "adam";

/// The hyper-parameters of `torch.optim.Adam` (no `amsgrad`, no `maximize`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// PyTorch's checks: `lr >= 0`, `eps >= 0`, `weight_decay >= 0` and both betas in
    /// `[0, 1)`; all values must also be finite.
    pub fn validate(&self) -> Result<()> {
        non_negative(OP, "learning rate", self.lr)?;
        non_negative(OP, "epsilon", self.eps)?;
        non_negative(OP, "weight_decay", self.weight_decay)?;
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid(
                    OP,
                    format!("invalid {name} {beta}: must be in [0, 1)"),
                ));
            }
        }
        Ok(())
    }
}

/// One PyTorch Adam step, in place; `step` is the 1-based count *after* incrementing
/// (1 on the first call), and `exp_avg` / `exp_avg_sq` start as zeros:
///
/// ```text
/// g  = grad + weight_decay * p
/// m  = beta1 * m + (1 - beta1) * g
/// v  = beta2 * v + (1 - beta2) * g^2
/// p -= (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
/// ```
pub fn adam_step(
    param: &mut Storage,
    grad: &Storage,
    exp_avg: &mut Storage,
    exp_avg_sq: &mut Storage,
    step: u64,
    cfg: &AdamConfig,
) -> Result<()> {
    cfg.validate()?;
    if step == 0 {
        return Err(Error::invalid(
            OP,
            "invalid step 0: the step count is 1-based (incremented before the update)",
        ));
    }
    let len = param.len();
    expect_param_len(OP, "grad", grad, len)?;
    expect_param_len(OP, "exp_avg", exp_avg, len)?;
    expect_param_len(OP, "exp_avg_sq", exp_avg_sq, len)?;
    dispatch!(
        OP,
        param,
        cpu::<T> => adam_cpu::<T>(param, grad, exp_avg, exp_avg_sq, step, cfg),
        cuda(param) => super::cuda::adam(param, grad, exp_avg, exp_avg_sq, step, cfg),
    )
}

fn adam_cpu<T: Element>(
    param: &mut Storage,
    grad: &Storage,
    exp_avg: &mut Storage,
    exp_avg_sq: &mut Storage,
    step: u64,
    cfg: &AdamConfig,
) -> Result<()> {
    let grad = grad.host::<T>(OP, "grad")?;
    let exp_avg = exp_avg.host_mut::<T>(OP, "exp_avg")?;
    let exp_avg_sq = exp_avg_sq.host_mut::<T>(OP, "exp_avg_sq")?;
    let param = param.host_mut::<T>(OP, "param")?;
    // The bias corrections are per-step scalars: form them in f64 as PyTorch does in
    // Python floats, and round once to the element type.
    let steps = step as f64;
    let bias_correction1 = 1.0 - cfg.beta1.powf(steps);
    let bias_correction2 = 1.0 - cfg.beta2.powf(steps);
    let coeffs = cpu::AdamCoeffs {
        beta1: T::of(cfg.beta1),
        one_minus_beta1: T::of(1.0 - cfg.beta1),
        beta2: T::of(cfg.beta2),
        one_minus_beta2: T::of(1.0 - cfg.beta2),
        step_size: T::of(cfg.lr / bias_correction1),
        bias_correction2_sqrt: T::of(bias_correction2.sqrt()),
        eps: T::of(cfg.eps),
        weight_decay: (cfg.weight_decay != 0.0).then(|| T::of(cfg.weight_decay)),
    };
    cpu::adam(param, grad, exp_avg, exp_avg_sq, coeffs);
    Ok(())
}
