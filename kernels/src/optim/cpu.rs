//! The fused update loops. Buffers are cut into `PAR_MIN_LEN` blocks, one rayon task each
//! (a buffer of one block runs on the caller's thread: biases and batch-norm weights are
//! too small to repay a trip through the pool). Each block is a plain zip loop over
//! equal-length slices with the coefficients passed *by value*: read through a reference,
//! LLVM cannot prove they are not aliased by the stores and reloads them every element,
//! which blocks vectorisation (measured 3x slower).

use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

/// SGD hyper-parameters in the element type. `weight_decay` is `None` when it is zero, as
/// PyTorch skips the `grad + 0 * p` term (which would turn an infinite weight into NaN).
#[derive(Clone, Copy)]
pub struct SgdCoeffs<T> {
    pub lr: T,
    pub weight_decay: Option<T>,
    pub momentum: T,
    pub one_minus_dampening: T,
    pub nesterov: bool,
}

/// `p -= lr * (g + wd * p)`: SGD without momentum.
pub fn sgd<T: Element>(param: &mut [T], grad: &[T], c: SgdCoeffs<T>) {
    if param.len() <= PAR_MIN_LEN {
        return sgd_block(param, grad, c);
    }
    param
        .par_chunks_mut(PAR_MIN_LEN)
        .zip(grad.par_chunks(PAR_MIN_LEN))
        .for_each(|(param, grad)| sgd_block(param, grad, c));
}

#[inline]
fn sgd_block<T: Element>(param: &mut [T], grad: &[T], c: SgdCoeffs<T>) {
    let SgdCoeffs {
        lr, weight_decay, ..
    } = c;
    for (p, &g) in param.iter_mut().zip(grad) {
        let g = decayed(g, *p, weight_decay);
        *p -= lr * g;
    }
}

/// SGD with momentum; `first` says the buffer holds nothing yet and is to be set to `g`.
pub fn sgd_momentum<T: Element>(
    param: &mut [T],
    grad: &[T],
    buf: &mut [T],
    first: bool,
    c: SgdCoeffs<T>,
) {
    if param.len() <= PAR_MIN_LEN {
        return sgd_momentum_block(param, grad, buf, first, c);
    }
    param
        .par_chunks_mut(PAR_MIN_LEN)
        .zip(buf.par_chunks_mut(PAR_MIN_LEN))
        .zip(grad.par_chunks(PAR_MIN_LEN))
        .for_each(|((param, buf), grad)| sgd_momentum_block(param, grad, buf, first, c));
}

#[inline]
fn sgd_momentum_block<T: Element>(
    param: &mut [T],
    grad: &[T],
    buf: &mut [T],
    first: bool,
    c: SgdCoeffs<T>,
) {
    let SgdCoeffs {
        lr,
        weight_decay,
        momentum,
        one_minus_dampening,
        nesterov,
    } = c;
    for ((p, b), &g) in param.iter_mut().zip(buf.iter_mut()).zip(grad) {
        let g = decayed(g, *p, weight_decay);
        *b = if first {
            g
        } else {
            momentum * *b + one_minus_dampening * g
        };
        let step = if nesterov { g + momentum * *b } else { *b };
        *p -= lr * step;
    }
}

/// Adam hyper-parameters in the element type, with the step's bias corrections folded in.
#[derive(Clone, Copy)]
pub struct AdamCoeffs<T> {
    pub beta1: T,
    pub one_minus_beta1: T,
    pub beta2: T,
    pub one_minus_beta2: T,
    /// `lr / (1 - beta1^step)`.
    pub step_size: T,
    /// `sqrt(1 - beta2^step)`.
    pub bias_correction2_sqrt: T,
    pub eps: T,
    pub weight_decay: Option<T>,
}

/// The whole Adam update in one pass: each element of the four buffers is loaded once
/// and `p`, `m`, `v` stored once.
pub fn adam<T: Element>(
    param: &mut [T],
    grad: &[T],
    exp_avg: &mut [T],
    exp_avg_sq: &mut [T],
    c: AdamCoeffs<T>,
) {
    if param.len() <= PAR_MIN_LEN {
        return adam_block(param, grad, exp_avg, exp_avg_sq, c);
    }
    param
        .par_chunks_mut(PAR_MIN_LEN)
        .zip(exp_avg.par_chunks_mut(PAR_MIN_LEN))
        .zip(exp_avg_sq.par_chunks_mut(PAR_MIN_LEN))
        .zip(grad.par_chunks(PAR_MIN_LEN))
        .for_each(|(((param, exp_avg), exp_avg_sq), grad)| {
            adam_block(param, grad, exp_avg, exp_avg_sq, c)
        });
}

#[inline]
fn adam_block<T: Element>(
    param: &mut [T],
    grad: &[T],
    exp_avg: &mut [T],
    exp_avg_sq: &mut [T],
    c: AdamCoeffs<T>,
) {
    let AdamCoeffs {
        beta1,
        one_minus_beta1,
        beta2,
        one_minus_beta2,
        step_size,
        bias_correction2_sqrt,
        eps,
        weight_decay,
    } = c;
    for (((p, m), v), &g) in param
        .iter_mut()
        .zip(exp_avg.iter_mut())
        .zip(exp_avg_sq.iter_mut())
        .zip(grad)
    {
        let g = decayed(g, *p, weight_decay);
        *m = beta1 * *m + one_minus_beta1 * g;
        *v = beta2 * *v + one_minus_beta2 * g * g;
        let denom = v.sqrt() / bias_correction2_sqrt + eps;
        // PyTorch's addcdiv order: step_size * (m / denom).
        *p -= step_size * (*m / denom);
    }
}

#[inline(always)]
fn decayed<T: Element>(g: T, p: T, weight_decay: Option<T>) -> T {
    match weight_decay {
        Some(wd) => g + wd * p,
        None => g,
    }
}
