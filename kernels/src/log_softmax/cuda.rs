//! Log-softmax on the GPU (log_softmax.cu): one warp per row.

use super::{Rows, OP};
use crate::cuda::{to_i32, wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "log_softmax.cu";

pub(super) fn forward(x: &CudaStorage, geom: Rows) -> Result<Storage> {
    let gpu = x.backend();
    let (rows, cols) = (
        to_i32(OP, "rows", geom.rows)?,
        to_i32(OP, "cols", geom.cols)?,
    );
    let y = gpu.alloc::<f32>(geom.len())?;
    // SAFETY: log_softmax_forward(const float* x, float* y, int rows, int cols); both
    // buffers hold rows * cols elements (checked by the caller).
    unsafe {
        gpu.launch(
            OP,
            (FILE, "log_softmax_forward"),
            gpu.warp_per_row_config(geom.rows),
            &[x.arg(), Arg::ptr(&y, 0), Arg::I32(rows), Arg::I32(cols)],
        )?;
    }
    Ok(wrap(gpu, y))
}

pub(super) fn backward(y: &CudaStorage, grad_out: &Storage, geom: Rows) -> Result<Storage> {
    let gpu = y.backend();
    let grad_out = grad_out.cuda(OP, "grad_out", y.device())?;
    let (rows, cols) = (
        to_i32(OP, "rows", geom.rows)?,
        to_i32(OP, "cols", geom.cols)?,
    );
    let grad_in = gpu.alloc::<f32>(geom.len())?;
    // SAFETY: log_softmax_backward(const float* y, const float* grad_out, float* grad_in,
    // int rows, int cols); all three hold rows * cols elements.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "log_softmax_backward"),
            gpu.warp_per_row_config(geom.rows),
            &[
                y.arg(),
                grad_out.arg(),
                Arg::ptr(&grad_in, 0),
                Arg::I32(rows),
                Arg::I32(cols),
            ],
        )?;
    }
    Ok(wrap(gpu, grad_in))
}
