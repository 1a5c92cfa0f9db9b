//! ReLU on the GPU: one grid-stride launch of relu.cu per pass.

use super::OP;
use crate::cuda::{launch_into_new, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "relu.cu";

pub(super) fn forward(x: &CudaStorage) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    // SAFETY: relu_forward(const float* x, float* y, unsigned long long n) writes the n
    // elements of y from the n of x.
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, "relu_forward"),
            gpu.grid_stride_config(n),
            n,
            |y| vec![x.arg(), y, Arg::U64(n as u64)],
        )
    }
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    let grad_out = grad_out.cuda(OP, "grad_out", x.device())?;
    // SAFETY: relu_backward(const float* x, const float* grad_out, float* grad_in,
    // unsigned long long n) writes the n elements of grad_in; the caller checked that
    // grad_out has n elements.
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, "relu_backward"),
            gpu.grid_stride_config(n),
            n,
            |grad_in| vec![x.arg(), grad_out.arg(), grad_in, Arg::U64(n as u64)],
        )
    }
}
