//! ReLU on the GPU: one grid-stride launch of relu.cu per pass.

use super::OP;
use crate::cuda::{wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "relu.cu";

pub(super) fn forward(x: &CudaStorage) -> Result<Storage> {
    let gpu = x.backend();
    let n = x.len();
    let y = gpu.alloc::<f32>(n)?;
    // SAFETY: relu_forward(const float* x, float* y, unsigned long long n); both hold n.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "relu_forward"),
            gpu.grid_stride_config(n),
            &[x.arg(), Arg::ptr(&y, 0), Arg::U64(n as u64)],
        )?;
    }
    Ok(wrap(gpu, y))
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage) -> Result<Storage> {
    let gpu = x.backend();
    let grad_out = grad_out.cuda(OP, "grad_out", x.device())?;
    let n = x.len();
    let grad_in = gpu.alloc::<f32>(n)?;
    // SAFETY: relu_backward(const float* x, const float* grad_out, float* grad_in,
    // unsigned long long n); the caller checked that grad_out has n elements.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "relu_backward"),
            gpu.grid_stride_config(n),
            &[
                x.arg(),
                grad_out.arg(),
                Arg::ptr(&grad_in, 0),
                Arg::U64(n as u64),
            ],
        )?;
    }
    Ok(wrap(gpu, grad_in))
}
