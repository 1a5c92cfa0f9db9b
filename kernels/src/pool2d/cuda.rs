//! Max and average pooling on the GPU (pool2d.cu): one thread per output element going
//! forward, one per input element going backward (gathering, so no atomics).

use super::{Pool2dGeometry, PoolKind};
use crate::cuda::{to_i32, wrap, Arg, CudaStorage};
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
    let gpu = x.backend();
    let y = gpu.alloc::<f32>(g.output_len())?;
    let mut args = vec![x.arg(), Arg::ptr(&y, 0)];
    args.extend(dims(g)?);
    let kernel = match g.kind {
        PoolKind::Max => "max_pool2d_forward",
        PoolKind::Avg { count_include_pad } => {
            args.push(Arg::I32(count_include_pad as i32));
            "avg_pool2d_forward"
        }
    };
    // SAFETY: max_pool2d_forward(const float* x, float* y, <11 ints>) and
    // avg_pool2d_forward(..., int count_include_pad); x holds the input and y the output
    // of the validated geometry.
    unsafe {
        gpu.launch(
            g.op(),
            (FILE, kernel),
            gpu.grid_stride_config(g.output_len()),
            &args,
        )?;
    }
    Ok(wrap(gpu, y))
}

pub(super) fn backward(x: &CudaStorage, grad_out: &Storage, g: &Pool2dGeometry) -> Result<Storage> {
    let gpu = x.backend();
    let grad_out = grad_out.cuda(g.op(), "grad_out", x.device())?;
    let dx = gpu.alloc::<f32>(g.input_len())?;
    let (kernel, mut args) = match g.kind {
        PoolKind::Max => (
            "max_pool2d_backward",
            vec![x.arg(), grad_out.arg(), Arg::ptr(&dx, 0)],
        ),
        PoolKind::Avg { .. } => (
            "avg_pool2d_backward",
            vec![grad_out.arg(), Arg::ptr(&dx, 0)],
        ),
    };
    args.extend(dims(g)?);
    if let PoolKind::Avg { count_include_pad } = g.kind {
        args.push(Arg::I32(count_include_pad as i32));
    }
    // SAFETY: max_pool2d_backward(const float* x, const float* dy, float* dx, <11 ints>)
    // and avg_pool2d_backward(const float* dy, float* dx, <11 ints>, int
    // count_include_pad); the buffers hold the validated geometry's input and output.
    unsafe {
        gpu.launch(
            g.op(),
            (FILE, kernel),
            gpu.grid_stride_config(g.input_len()),
            &args,
        )?;
    }
    Ok(wrap(gpu, dx))
}
