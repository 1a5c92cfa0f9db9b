//! Cross-entropy on the GPU (cross_entropy.cu). The labels are the one input that lives
//! on the host: each call uploads them (a few hundred bytes per batch). The loss stays on
//! the device, so a training step only waits for the GPU when the caller reads the loss.

use super::{Batch, CrossEntropy, OP};
use crate::cuda::{launch_into_new, to_i32, wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "cross_entropy.cu";

pub(super) fn forward(
    logits: &CudaStorage,
    labels: &[u32],
    batch: Batch,
    loss_options: CrossEntropy,
) -> Result<(Storage, Storage)> {
    let (_, off) = loss_options.targets(batch.cols);
    let on = 1.0 - loss_options.label_smoothing;
    let gpu = logits.backend();
    let (rows, cols) = (
        to_i32(OP, "rows", batch.rows)?,
        to_i32(OP, "cols", batch.cols)?,
    );
    let labels = gpu.htod(labels)?;
    let probs = gpu.alloc::<f32>(batch.rows * batch.cols)?;
    let row_loss = gpu.alloc::<f32>(batch.rows)?;
    let loss = gpu.alloc::<f32>(1)?;
    // SAFETY: cross_entropy_forward(const float* logits, const unsigned int* labels,
    // int rows, int cols, float on, float off, float* probs, float* row_loss) with
    // rows * cols logits and probs, rows labels (each below cols, checked by Batch::new)
    // and row losses; cross_entropy_reduce(const float* row_loss, int rows, double divisor,
    // float* loss) writes loss[0].
    unsafe {
        gpu.launch(
            OP,
            (FILE, "cross_entropy_forward"),
            gpu.warp_per_row_config(batch.rows),
            &[
                logits.arg(),
                Arg::ptr(&labels, 0),
                Arg::I32(rows),
                Arg::I32(cols),
                Arg::F32(on as f32),
                Arg::F32(off as f32),
                Arg::ptr(&probs, 0),
                Arg::ptr(&row_loss, 0),
            ],
        )?;
        gpu.launch(
            OP,
            (FILE, "cross_entropy_reduce"),
            gpu.single_block_config(),
            &[
                Arg::ptr(&row_loss, 0),
                Arg::I32(rows),
                Arg::F64(loss_options.divisor(batch.rows)),
                Arg::ptr(&loss, 0),
            ],
        )?;
    }
    Ok((wrap(gpu, loss), wrap(gpu, probs)))
}

pub(super) fn backward(
    probs: &CudaStorage,
    labels: &[u32],
    grad_loss: &Storage,
    batch: Batch,
    loss: CrossEntropy,
) -> Result<Storage> {
    let (on_label, off) = loss.targets(batch.cols);
    let gpu = probs.backend();
    let grad_loss = grad_loss.cuda(OP, "grad_loss", probs.device())?;
    let (rows, cols) = (
        to_i32(OP, "rows", batch.rows)?,
        to_i32(OP, "cols", batch.cols)?,
    );
    let labels = gpu.htod(labels)?;
    let n = batch.rows * batch.cols;
    // SAFETY: cross_entropy_backward(const float* probs, const unsigned int* labels,
    // const float* grad_loss, int rows, int cols, double divisor, float on_label,
    // float off, float* grad) writes the rows * cols elements of grad from as many probs,
    // rows labels and one grad_loss element (all checked by the caller).
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, "cross_entropy_backward"),
            gpu.grid_stride_config(n),
            n,
            |grad| {
                vec![
                    probs.arg(),
                    Arg::ptr(&labels, 0),
                    grad_loss.arg(),
                    Arg::I32(rows),
                    Arg::I32(cols),
                    Arg::F64(loss.divisor(batch.rows)),
                    Arg::F32(on_label as f32),
                    Arg::F32(off as f32),
                    grad,
                ]
            },
        )
    }
}
