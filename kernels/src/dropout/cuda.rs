//! Dropout on the GPU: dropout.cu draws the CPU's counter-based mask bit for bit, so the
//! two devices drop the same elements for the same seed.

use super::{Mask, OP};
use crate::cuda::{launch_into_new, Arg, CudaStorage};
use crate::{Result, Storage};

/// `y = keep(i) ? x * scale : 0`, forward (on the input) and backward (on grad_out) alike.
pub(super) fn apply(values: &CudaStorage, mask: &Mask) -> Result<Storage> {
    let (gpu, n) = (values.backend(), values.len());
    // SAFETY: dropout_apply(const float* x, float* y, unsigned long long n,
    // unsigned long long seed, unsigned int threshold, float scale) writes the n elements
    // of y from the n of x.
    unsafe {
        launch_into_new(
            gpu,
            OP,
            ("dropout.cu", "dropout_apply"),
            gpu.grid_stride_config(n),
            n,
            |out| {
                vec![
                    values.arg(),
                    out,
                    Arg::U64(n as u64),
                    Arg::U64(mask.seed),
                    Arg::U32(mask.threshold),
                    Arg::F32(mask.scale as f32),
                ]
            },
        )
    }
}
