//! The fully connected layer on the GPU: the three products in cuBLAS, the bias and its
//! gradient in linear.cu.

use super::{LinearGeometry, LinearGrads, OP};
use crate::cuda::{
    launch_into_new, to_i32, wrap, Arg, CudaBackend, CudaBuffer, CudaStorage, DeviceValues,
};
use crate::{Result, Storage};

const FILE: &str = "linear.cu";

pub(super) fn forward(
    x: &CudaStorage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    let device = x.device();
    let gpu = x.backend();
    let w = weight.cuda(OP, "weight", device)?;
    let bias = bias.map(|b| b.cuda(OP, "bias", device)).transpose()?;
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut y = gpu.alloc::<f32>(n * o)?;
    // y = x W^T: W is stored [out, in], the transpose of the [in, out] operand.
    gpu.sgemm(
        n,
        o,
        i,
        &x.buffer().view(),
        false,
        &w.buffer().view(),
        true,
        &mut y.view_mut(),
        false,
    )?;
    if let Some(bias) = bias {
        add_bias(gpu, &y, bias, n, o)?;
    }
    Ok(wrap(gpu, y))
}

/// `y[r, c] += bias[c]` over an `n x o` product in place (the caller has checked that
/// `bias` holds `o` elements).
pub(super) fn add_bias(
    gpu: &CudaBackend,
    y: &CudaBuffer<f32>,
    bias: &CudaStorage,
    n: usize,
    o: usize,
) -> Result<()> {
    // SAFETY: linear_bias_add(float* y, const float* bias, int rows, int cols) over the
    // n x o output; bias holds o elements.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "linear_bias_add"),
            gpu.grid_stride_config(n * o),
            &[
                Arg::ptr(y, 0),
                bias.arg(),
                Arg::I32(to_i32(OP, "batch", n)?),
                Arg::I32(to_i32(OP, "out_features", o)?),
            ],
        )
    }
}

pub(super) fn backward(
    x: &CudaStorage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<LinearGrads> {
    let device = x.device();
    let gpu = x.backend();
    let w = weight.cuda(OP, "weight", device)?;
    let gy = grad_out.cuda(OP, "grad_out", device)?;
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let input = if need_input_grad {
        // dL/dx = dL/dy W: [n, o] x [o, i].
        let mut gx = gpu.alloc::<f32>(n * i)?;
        gpu.sgemm(
            n,
            i,
            o,
            &gy.buffer().view(),
            false,
            &w.buffer().view(),
            false,
            &mut gx.view_mut(),
            false,
        )?;
        Some(wrap(gpu, gx))
    } else {
        None
    };
    // dL/dW = dL/dy^T x: [o, n] x [n, i].
    let mut gw = gpu.alloc::<f32>(o * i)?;
    gpu.sgemm(
        o,
        i,
        n,
        &gy.buffer().view(),
        true,
        &x.buffer().view(),
        false,
        &mut gw.view_mut(),
        false,
    )?;
    let bias = has_bias
        .then(|| bias_grad(DeviceValues::F32(gy), n, o))
        .transpose()?;
    Ok(LinearGrads {
        input,
        weight: wrap(gpu, gw),
        bias,
    })
}

/// `dL/db`: the column sums of the `n x o` output gradient `gy`, f32 or bf16 (autocast's),
/// accumulated in f64 either way; an f32 result.
pub(super) fn bias_grad(gy: DeviceValues, n: usize, o: usize) -> Result<Storage> {
    let gpu = gy.backend();
    let (rows, cols) = (to_i32(OP, "batch", n)?, to_i32(OP, "out_features", o)?);
    let kernel = match gy {
        DeviceValues::F32(_) => "linear_bias_grad",
        DeviceValues::Bf16(_) => "linear_bias_grad_bf16",
    };
    // SAFETY: linear_bias_grad[_bf16](const T* gy, int rows, int cols, float* gb) reads
    // the n x o gradient (of gy's type) and writes the o column sums; launched with
    // (32, 8) blocks.
    unsafe {
        launch_into_new(gpu, OP, (FILE, kernel), gpu.column_sum_config(o), o, |gb| {
            vec![gy.arg_at(0), Arg::I32(rows), Arg::I32(cols), gb]
        })
    }
}
