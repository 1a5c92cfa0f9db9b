//! GELU on the GPU: one grid-stride launch of gelu.cu per pass, on f32 or on bf16
//! (an activation stored under autocast, computed in f32 and rounded once).

use super::OP;
use crate::cuda::{activation_backward, activation_forward, CudaStorage};
use crate::{Result, Storage};

pub(super) fn forward(x: &CudaStorage) -> Result<Storage> {
    activation_forward(OP, ("gelu.cu", "gelu_forward"), x)
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage) -> Result<Storage> {
    activation_backward(OP, ("gelu.cu", "gelu_backward"), x, grad_out)
}

pub(super) fn forward_bf16(x: &CudaStorage<u16>) -> Result<Storage> {
    activation_forward(OP, ("gelu.cu", "gelu_forward_bf16"), x)
}

/// `grad_out` must be bf16 on `x`'s device, as the gradient of a bf16 activation is.
pub(super) fn backward_bf16(x: &CudaStorage<u16>, grad_out: &Storage) -> Result<Storage> {
    activation_backward(OP, ("gelu.cu", "gelu_backward_bf16"), x, grad_out)
}
