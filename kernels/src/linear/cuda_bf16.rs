//! The fully connected layer under autocast on the GPU: the three products of `cuda.rs`
//! on bf16 operands, summed in f32 by cuBLAS ([`CudaBackend::gemm_bf16`]), as
//! `linear::forward_bf16` computes them on the CPU.
//!
//! The input and the output gradient may each be f32 (rounded to bf16 first) or bf16
//! (autocast's, as they are); the weight is f32, rounded to bf16 for the products. The
//! output is f32 (the logits feed f32 losses), and so are the weight and bias gradients;
//! the input gradient has the input's dtype, a bf16 one rounded once from its f32 sums.
//!
//! [`CudaBackend::gemm_bf16`]: crate::cuda::CudaBackend::gemm_bf16

use super::{LinearGeometry, LinearGrads, OP};
use crate::cuda::{wrap, DeviceValues};
use crate::{Result, Storage};

pub(super) fn forward(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    let device = input.device();
    let x = DeviceValues::of(input, OP, "input", device)?.to_bf16()?;
    let w = weight.cuda(OP, "weight", device)?.to_bf16()?;
    let bias = bias.map(|b| b.cuda(OP, "bias", device)).transpose()?;
    let gpu = x.backend();
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut y = gpu.alloc::<f32>(n * o)?;
    // y = x W^T: W is stored [out, in], the transpose of the [in, out] operand.
    gpu.gemm_bf16(
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
        super::cuda::add_bias(gpu, &y, bias, n, o)?;
    }
    Ok(wrap(gpu, y))
}

pub(super) fn backward(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<LinearGrads> {
    let device = input.device();
    let x = DeviceValues::of(input, OP, "input", device)?;
    let gy = DeviceValues::of(grad_out, OP, "grad_out", device)?;
    let w = weight.cuda(OP, "weight", device)?.to_bf16()?;
    let gy16 = gy.to_bf16()?;
    let gpu = w.backend();
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let input_grad = if need_input_grad {
        // dL/dx = dL/dy W: [n, o] x [o, i], in f32, then in the input's dtype.
        let mut gx = gpu.alloc::<f32>(n * i)?;
        gpu.gemm_bf16(
            n,
            i,
            o,
            &gy16.buffer().view(),
            false,
            &w.buffer().view(),
            false,
            &mut gx.view_mut(),
            false,
        )?;
        let gx = wrap(gpu, gx);
        Some(gx.to_dtype(x.dtype())?)
    } else {
        None
    };
    // dL/dW = dL/dy^T x: [o, n] x [n, i].
    let x16 = x.to_bf16()?;
    let mut gw = gpu.alloc::<f32>(o * i)?;
    gpu.gemm_bf16(
        o,
        i,
        n,
        &gy16.buffer().view(),
        true,
        &x16.buffer().view(),
        false,
        &mut gw.view_mut(),
        false,
    )?;
    let bias = has_bias
        .then(|| super::cuda::bias_grad(gy, n, o))
        .transpose()?;
    Ok(LinearGrads {
        input: input_grad,
        weight: wrap(gpu, gw),
        bias,
    })
}
