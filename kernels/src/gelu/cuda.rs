//! GELU on the GPU: one grid-stride launch of gelu.cu per pass.

use super::OP;
use crate::cuda::{activation_backward, activation_forward, CudaStorage};
use crate::{Result, Storage};

pub(super) fn forward(x: &CudaStorage) -> Result<Storage> {
    activation_forward(OP, ("gelu.cu", "gelu_forward"), x)
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage) -> Result<Storage> {
    activation_backward(OP, ("gelu.cu", "gelu_backward"), x, grad_out)
}
