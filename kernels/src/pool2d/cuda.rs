//! Max and average pooling on the GPU (pool2d.cu): one thread per output element going
//! forward, one per input element going backward (gathering, so no atomics). A bf16 input
//! (an activation stored under autocast) is max pooled into bf16, its gradient recomputed
//! from the input as the f32 one is, since the GPU keeps no argmax.

use super::{Pool2dGeometry, PoolKind};
use crate::cuda::{launch_into_new_of, to_i32, Arg, CudaElement, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "pool2d.cu";

/// `planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW` as the kernels take them.
fn dims(g: &Pool2dGeometry) -> Result<Vec<Arg>> {
    let op = g.op();
    [
        ("batch * channels", g.batch * g.channels),
        ("height", g.in_h),
        ("width", g.in_w),
        ("kernel height", g.kernel[0]),
        ("kernel width", g.kernel[1]),
        ("stride", g.stride[0]),
        ("stride", g.stride[1]),
        ("padding", g.padding[0]),
        ("padding", g.padding[1]),
        ("output height", g.out_h),
        ("output width", g.out_w),
    ]
    .into_iter()
    .map(|(what, v)| to_i32(op, what, v).map(Arg::I32))
    .collect()
}

pub(super) fn forward(x: &CudaStorage, g: &Pool2dGeometry) -> Result<Storage> {
    let (kernel, count_include_pad) = match g.kind {
        PoolKind::Max => ("max_pool2d_forward", None),
        PoolKind::Avg { count_include_pad } => ("avg_pool2d_forward", Some(count_include_pad)),
    };
    // SAFETY: max_pool2d_forward(const float* x, float* y, <11 ints>) and
    // avg_pool2d_forward(..., int count_include_pad) write every output of the validated
    // geometry into y; x holds its input.
    unsafe {
        launch(
            x,
            g,
            kernel,
            vec![x.arg()],
            count_include_pad,
            g.output_len(),
        )
    }
}

/// Max pooling (the caller checked `g.kind`) of a bf16 input into bf16: each window's
/// first maximum of the widened values, copied as it is stored.
pub(super) fn max_forward_bf16(x: &CudaStorage<u16>, g: &Pool2dGeometry) -> Result<Storage> {
    // SAFETY: max_pool2d_forward_bf16(const bf16* x, bf16* y, <11 ints>) writes every
    // output of the validated geometry into y (g.output_len() values); x holds its input
    // (g.input_len() values, checked by the caller).
    unsafe {
        launch(
            x,
            g,
            "max_pool2d_forward_bf16",
            vec![x.arg()],
            None,
            g.output_len(),
        )
    }
}

/// Gradient of a bf16 max pool (the caller checked `g.kind`), recomputing each window's
/// winner from the input: the bf16 `grad_out` widened, each cell's sum in f32 rounded
/// once to bf16.
pub(super) fn max_backward_bf16(
    x: &CudaStorage<u16>,
    grad_out: &Storage,
    g: &Pool2dGeometry,
) -> Result<Storage> {
    let grad_out = grad_out.cuda_bf16(g.op(), "grad_out", x.device())?;
    // SAFETY: max_pool2d_backward_bf16(const bf16* x, const bf16* dy, bf16* dx, <11 ints>)
    // gathers every input gradient of the validated geometry into dx (g.input_len()
    // values); x holds g.input_len() values and dy g.output_len() (both checked by the
    // caller).
    unsafe {
        launch(
            x,
            g,
            "max_pool2d_backward_bf16",
            vec![x.arg(), grad_out.arg()],
            None,
            g.input_len(),
        )
    }
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage, g: &Pool2dGeometry) -> Result<Storage> {
    let grad_out = grad_out.cuda(g.op(), "grad_out", x.device())?;
    let (kernel, inputs, count_include_pad) = match g.kind {
        PoolKind::Max => ("max_pool2d_backward", vec![x.arg(), grad_out.arg()], None),
        PoolKind::Avg { count_include_pad } => (
            "avg_pool2d_backward",
            vec![grad_out.arg()],
            Some(count_include_pad),
        ),
    };
    // SAFETY: max_pool2d_backward(const float* x, const float* dy, float* dx, <11 ints>)
    // and avg_pool2d_backward(const float* dy, float* dx, <11 ints>, int
    // count_include_pad) gather every input gradient of the validated geometry into dx;
    // x and dy hold its input and output.
    unsafe { launch(x, g, kernel, inputs, count_include_pad, g.input_len()) }
}

/// Launches `kernel` with arguments `inputs, out, dims [, count_include_pad]`, one thread
/// per element of the new `len`-element output, which has `x`'s dtype.
///
/// # Safety
///
/// As [`launch_into_new_of`] for an output of `x`'s type.
unsafe fn launch<T: CudaElement>(
    x: &CudaStorage<T>,
    g: &Pool2dGeometry,
    kernel: &'static str,
    inputs: Vec<Arg>,
    count_include_pad: Option<bool>,
    len: usize,
) -> Result<Storage> {
    let gpu = x.backend();
    let dims = dims(g)?;
    let last = count_include_pad.map(|c| Arg::I32(c as i32));
    let args = |out| [inputs, vec![out], dims, last.into_iter().collect()].concat();
    let (kernel, config) = ((FILE, kernel), gpu.grid_stride_config(len));
    // SAFETY: the caller vouches for the kernel, its inputs and the output length; the
    // output is of x's dtype, as the kernel (named for that dtype) declares it.
    unsafe { launch_into_new_of::<T>(gpu, g.op(), kernel, config, len, args) }
}
