//! The whole-buffer sum and its backward broadcast on the GPU (reduce.cu).
//!
//! The sum takes two launches, accumulating in f64 like the CPU code: one f64 partial
//! sum per block of a grid-stride pass, then one block adds the partials. The grid size
//! depends only on the length and the device, so a given buffer sums the same way on
//! every run.

use crate::cuda::{launch_into_new, wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "reduce.cu";

pub(super) fn sum(x: &CudaStorage) -> Result<Storage> {
    const OP: &str = "sum";
    let gpu = x.backend();
    let n = x.len();
    let config = gpu.grid_stride_config(n);
    let blocks = config.grid_dim.0;
    let partials = gpu.alloc::<f64>(blocks as usize)?;
    let out = gpu.alloc::<f32>(1)?;
    // SAFETY: reduce_sum_partials(const float* x, unsigned long long n, double* partials)
    // writes partials[blockIdx.x] for each of the `blocks` blocks; reduce_sum_finish(
    // const double* partials, unsigned int count, float* out) reads `blocks` partials and
    // writes out[0].
    unsafe {
        gpu.launch(
            OP,
            (FILE, "reduce_sum_partials"),
            config,
            &[x.arg(), Arg::U64(n as u64), Arg::ptr(&partials, 0)],
        )?;
        gpu.launch(
            OP,
            (FILE, "reduce_sum_finish"),
            gpu.single_block_config(),
            &[Arg::ptr(&partials, 0), Arg::U32(blocks), Arg::ptr(&out, 0)],
        )?;
    }
    Ok(wrap(gpu, out))
}

pub(super) fn broadcast_scalar(
    op: &'static str,
    scalar: &CudaStorage,
    len: usize,
    factor: f64,
) -> Result<Storage> {
    let gpu = scalar.backend();
    // SAFETY: reduce_broadcast_scalar(const float* scalar, double factor, float* out,
    // unsigned long long n) reads scalar[0] (the caller checked it has one element) and
    // writes the n elements of out.
    unsafe {
        launch_into_new(
            gpu,
            op,
            (FILE, "reduce_broadcast_scalar"),
            gpu.grid_stride_config(len),
            len,
            |out| vec![scalar.arg(), Arg::F64(factor), out, Arg::U64(len as u64)],
        )
    }
}
