//! Log-softmax on the GPU (log_softmax.cu): one warp per row.

use super::{Rows, OP};
use crate::cuda::{launch_into_new, to_i32, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "log_softmax.cu";

pub(super) fn forward(x: &CudaStorage, geom: Rows) -> Result<Storage> {
    let gpu = x.backend();
    let (rows, cols) = (
        to_i32(OP, "rows", geom.rows)?,
        to_i32(OP, "cols", geom.cols)?,
    );
    // SAFETY: log_softmax_forward(const float* x, float* y, int rows, int cols) writes
    // the rows * cols elements of y; x holds as many (checked by the caller).
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, "log_softmax_forward"),
            gpu.warp_per_row_config(geom.rows),
            geom.len(),
            |y| vec![x.arg(), y, Arg::I32(rows), Arg::I32(cols)],
        )
    }
}

pub(super) fn backward(y: &CudaStorage, grad_out: &Storage, geom: Rows) -> Result<Storage> {
    let gpu = y.backend();
    let grad_out = grad_out.cuda(OP, "grad_out", y.device())?;
    let (rows, cols) = (
        to_i32(OP, "rows", geom.rows)?,
        to_i32(OP, "cols", geom.cols)?,
    );
    // SAFETY: log_softmax_backward(const float* y, const float* grad_out, float* grad_in,
    // int rows, int cols) writes the rows * cols elements of grad_in; y and grad_out hold
    // as many (checked by the caller).
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, "log_softmax_backward"),
            gpu.warp_per_row_config(geom.rows),
            geom.len(),
            |grad_in| {
                vec![
                    y.arg(),
                    grad_out.arg(),
                    grad_in,
                    Arg::I32(rows),
                    Arg::I32(cols),
                ]
            },
        )
    }
}
