//! ReLU on the GPU: one grid-stride launch of relu.cu per pass.

use super::OP;
use crate::cuda::{activation_backward, activation_forward, CudaStorage};
use crate::{Result, Storage};

pub(super) fn forward(x: &CudaStorage) -> Result<Storage> {
    activation_forward(OP, ("relu.cu", "relu_forward"), x)
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage) -> Result<Storage> {
    activation_backward(OP, ("relu.cu", "relu_backward"), x, grad_out)
}
