//! 2-D convolution under autocast on the GPU: the f32 lowering of `cuda.rs` with `col`,
//! the weight and `gy_wide` in bf16 and the products summed in f32 by cuBLAS
//! ([`CudaBackend::gemm_bf16`]), as `conv2d::forward_bf16` computes them on the CPU.
//!
//! ```text
//! forward:  col = im2col(x) (bf16)  ->  wide = W_bf16 * col (f32)  ->  y = cnp_to_ncp(wide) + b
//! backward: gy_wide = ncp_to_cnp(gy) (bf16);  dW += gy_wide * col^T (f32)
//!           gcol = W_bf16^T * gy_wide (f32)  ->  dx = col2im(gcol);  db = bias_grad(gy)
//! ```
//!
//! The input and the output gradient may each be f32 (rounded to bf16 as they are
//! unrolled) or bf16 (autocast's activations and their gradients, copied as they are). The
//! output is f32 or bf16 (each sum plus its bias rounded once); the input gradient has the
//! input's dtype; the weight and bias gradients are f32.

use std::sync::Arc;

use super::cuda::{Lowering, COL_BUDGET};
use super::{numel, Conv2dGeometry, Conv2dGrads, OP};
use crate::cuda::{wrap, Arg, CudaBackend, CudaBuffer, DeviceValues};
use crate::{DType, Error, Result, Storage};

/// `im2col` into bf16 columns, for an input of the operand's dtype.
fn im2col_kernel(x: DeviceValues) -> &'static str {
    match x {
        DeviceValues::F32(_) => "conv2d_im2col_f32_to_bf16",
        DeviceValues::Bf16(_) => "conv2d_im2col_bf16",
    }
}

/// A buffer being written in f32 or bf16: the forward's output, the input gradient.
enum Written {
    F32(CudaBuffer<f32>),
    Bf16(CudaBuffer<u16>),
}

impl Written {
    fn alloc(gpu: &CudaBackend, len: usize, dtype: DType) -> Result<Written> {
        match dtype {
            DType::F32 => Ok(Written::F32(gpu.alloc(len)?)),
            DType::BF16 => Ok(Written::Bf16(gpu.alloc(len)?)),
            DType::F64 => Err(Error::invalid(
                OP,
                "a bf16 convolution writes f32 or bf16, not f64",
            )),
        }
    }

    fn arg_at(&self, offset: usize) -> Arg {
        match self {
            Written::F32(b) => Arg::ptr(b, offset),
            Written::Bf16(b) => Arg::ptr(b, offset),
        }
    }

    fn into_storage(self, gpu: &Arc<CudaBackend>) -> Storage {
        match self {
            Written::F32(b) => wrap(gpu, b),
            Written::Bf16(b) => wrap(gpu, b),
        }
    }
}

pub(super) fn forward(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
    output: DType,
) -> Result<Storage> {
    let device = input.device();
    let x = DeviceValues::of(input, OP, "input", device)?;
    let w = weight.cuda(OP, "weight", device)?.to_bf16()?;
    let bias = bias.map(|b| b.cuda(OP, "bias", device)).transpose()?;
    let gpu = x.backend();
    let low = Lowering::new(g, COL_BUDGET)?;
    let c_out = g.out_channels;
    let y = Written::alloc(gpu, numel(&g.output_shape()), output)?;
    let col = gpu.alloc::<u16>(low.ckk * low.chunk * low.pixels)?;
    let mut wide = gpu.alloc::<f32>(c_out * low.chunk * low.pixels)?;
    let to_ncp = match output {
        DType::BF16 => "conv2d_cnp_to_ncp_bf16",
        _ => "conv2d_cnp_to_ncp",
    };
    for (start, images) in low.slices(g.batch) {
        let cols = images * low.pixels;
        let slice = (start, images);
        // SAFETY: x is the batch in the dtype its kernel reads; col holds ckk * chunk *
        // pixels bf16.
        unsafe { low.im2col(gpu, im2col_kernel(x), (x, Arg::ptr(&col, 0)), slice)? };
        gpu.gemm_bf16(
            c_out,
            cols,
            low.ckk,
            &w.buffer().view(),
            false,
            &col.view().slice(0..low.ckk * cols),
            false,
            &mut wide.view_mut().slice_mut(0..c_out * cols),
            false,
        )?;
        let y_at = y.arg_at(start * c_out * low.pixels);
        // SAFETY: wide holds the slice's sums, y the batch's outputs in the type to_ncp
        // writes, bias c_out values.
        unsafe { low.to_ncp(gpu, to_ncp, (&wide, bias, y_at), images)? };
    }
    drop((col, wide, w));
    Ok(y.into_storage(gpu))
}

pub(super) fn backward(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    let device = input.device();
    let x = DeviceValues::of(input, OP, "input", device)?;
    let gy = DeviceValues::of(grad_out, OP, "grad_out", device)?;
    let w = weight.cuda(OP, "weight", device)?.to_bf16()?;
    let gpu = x.backend();
    let low = Lowering::new(g, COL_BUDGET)?;
    let (c_out, ckk) = (g.out_channels, low.ckk);
    let image_len = g.in_channels * g.in_h * g.in_w;
    let cols_max = low.chunk * low.pixels;
    let col = gpu.alloc::<u16>(ckk * cols_max)?;
    let gy_wide = gpu.alloc::<u16>(c_out * cols_max)?;
    let mut gcol = need_input_grad
        .then(|| gpu.alloc::<f32>(ckk * cols_max))
        .transpose()?;
    let gx = need_input_grad
        .then(|| Written::alloc(gpu, g.batch * image_len, x.dtype()))
        .transpose()?;
    let (to_cnp, col2im) = (
        match gy {
            DeviceValues::F32(_) => "conv2d_ncp_to_cnp_f32_to_bf16",
            DeviceValues::Bf16(_) => "conv2d_ncp_to_cnp_bf16",
        },
        match x {
            DeviceValues::F32(_) => "conv2d_col2im",
            DeviceValues::Bf16(_) => "conv2d_col2im_to_bf16",
        },
    );
    // An empty batch contributes nothing: the weight gradient is zero.
    let mut gw = if g.batch == 0 {
        gpu.alloc_zeros::<f32>(c_out * ckk)?
    } else {
        gpu.alloc::<f32>(c_out * ckk)?
    };
    for (start, images) in low.slices(g.batch) {
        let cols = images * low.pixels;
        let slice = (start, images);
        // SAFETY: x and gy are the batch's input and output gradient in the dtypes their
        // kernels read; col and gy_wide hold ckk and c_out rows of chunk * pixels bf16.
        unsafe {
            low.im2col(gpu, im2col_kernel(x), (x, Arg::ptr(&col, 0)), slice)?;
            low.to_cnp(gpu, to_cnp, (gy, Arg::ptr(&gy_wide, 0)), slice)?;
        }
        gpu.gemm_bf16(
            c_out,
            ckk,
            cols,
            &gy_wide.view().slice(0..c_out * cols),
            false,
            &col.view().slice(0..ckk * cols),
            true,
            &mut gw.view_mut(),
            start > 0,
        )?;
        if let (Some(gcol), Some(gx)) = (gcol.as_mut(), gx.as_ref()) {
            gpu.gemm_bf16(
                ckk,
                cols,
                c_out,
                &w.buffer().view(),
                true,
                &gy_wide.view().slice(0..c_out * cols),
                false,
                &mut gcol.view_mut().slice_mut(0..ckk * cols),
                false,
            )?;
            let dx_at = gx.arg_at(start * image_len);
            // SAFETY: gcol holds the slice's sums; gx the batch's input gradient in the
            // type col2im writes.
            unsafe { low.col2im(gpu, col2im, (gcol, dx_at), images)? };
        }
    }
    let gb = has_bias
        .then(|| super::cuda::bias_grad(gy, g))
        .transpose()?;
    drop((col, gy_wide, gcol, w));
    Ok(Conv2dGrads {
        input: gx.map(|gx| gx.into_storage(gpu)),
        weight: wrap(gpu, gw),
        bias: gb,
    })
}
