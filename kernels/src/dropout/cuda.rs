//! Dropout on the GPU: dropout.cu draws the CPU's counter-based mask bit for bit, so the
//! two devices drop the same elements for the same seed.

use super::{Mask, OP};
use crate::cuda::{wrap, Arg, CudaStorage};
use crate::{Result, Storage};

/// `y = keep(i) ? x * scale : 0`, forward (on the input) and backward (on grad_out) alike.
pub(super) fn apply(values: &CudaStorage, mask: &Mask) -> Result<Storage> {
    let gpu = values.backend();
    let n = values.len();
    let out = gpu.alloc::<f32>(n)?;
    // SAFETY: dropout_apply(const float* x, float* y, unsigned long long n,
    // unsigned long long seed, unsigned int threshold, float scale); both hold n elements.
    unsafe {
        gpu.launch(
            OP,
            ("dropout.cu", "dropout_apply"),
            gpu.grid_stride_config(n),
            &[
                values.arg(),
                Arg::ptr(&out, 0),
                Arg::U64(n as u64),
                Arg::U64(mask.seed),
                Arg::U32(mask.threshold),
                Arg::F32(mask.scale as f32),
            ],
        )?;
    }
    Ok(wrap(gpu, out))
}
