//! 2-D convolution (cross-correlation, as in PyTorch), NCHW input, `[C_out, C_in, KH, KW]` weight.
//!
//! ```text
//! y[n, co, oy, ox] = b[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] * x[n, ci, oy*sh + ky - ph, ox*sw + kx - pw]
//! ```
//! with `x` read as zero outside the image, `out = (in + 2*pad - kernel) / stride + 1`.
//!
//! On the CPU (`cpu/`, whose `mod.rs` says which layer takes which path and why) a
//! convolution takes one of four paths:
//!
//! - padded 1x1 stride-1 layers multiply the unpadded image only and fill the border with
//!   the bias (`cpu/pointwise.rs`);
//! - 3x3 stride-1 layers with 16 to 256 channels run Winograd's minimal filtering,
//!   F(4x4, 3x3) from 32x32 outputs (from 15x15 in batches of 128 and more) and F(2x2, 3x3)
//!   below (`cpu/winograd/`);
//! - everything else is lowered to matrix products: `im2col` unrolls receptive fields into
//!   columns, multiplied by a packed AVX-512 kernel (`cpu/packed.rs`) or the `gemm` crate
//!   (`cpu/im2col.rs`).
//!
//! Backward, the weight gradient takes the same paths (Winograd from outputs 12 wide); the
//! input gradient of most stride-1 layers is a convolution of its own (of `dL/dy` with the
//! flipped kernel), which takes its own path, and otherwise is folded back from the
//! unrolled columns (`col2im`). The bias gradient is the sum of `dL/dy` over `n, oy, ox`.
//! Every path splits the batch into one slice per rayon thread.
//!
//! On CUDA (`cuda.rs`, `conv2d.cu`) the convolution is `im2col` on the GPU and a cuBLAS
//! product, a slice of the batch at a time.
//!
//! ```
//! use kernels::{conv2d, Storage};
//! // A 2x2 image, a 1x1 kernel of weight 2, padding 1: the image doubled inside a zero border.
//! let g = conv2d::Conv2dGeometry::new(&[1, 1, 2, 2], &[1, 1, 1, 1], [1, 1], [1, 1]).unwrap();
//! assert_eq!(g.output_shape(), [1, 1, 4, 4]);
//! let x = Storage::f64(vec![1.0, 2.0, 3.0, 4.0]);
//! let y = conv2d::forward(&x, &Storage::f64(vec![2.0]), None, &g).unwrap();
//! assert_eq!(y.to_vec_f64().unwrap()[5..7], [2.0, 4.0]);
//! ```

pub(crate) mod cpu;
mod cuda;
mod cuda_bf16;
#[cfg(test)]
mod tests;

use crate::{fmt_shape, DType, Device, Element, Error, Result, Storage};

const OP: &str = "conv2d";

/// The shapes and hyper-parameters of one convolution, validated by [`Conv2dGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`.
    pub stride: [usize; 2],
    /// Zero padding added on both sides, `[PH, PW]`.
    pub padding: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl Conv2dGeometry {
    /// Checks an input `[N, C_in, H, W]` and weight `[C_out, C_in, KH, KW]` against each
    /// other and the hyper-parameters, and works out the output size.
    pub fn new(
        input: &[usize],
        weight: &[usize],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Conv2dGeometry> {
        let shapes = || {
            format!(
                "input {}, weight {}, stride {stride:?}, padding {padding:?}",
                fmt_shape(input),
                fmt_shape(weight)
            )
        };
        let &[batch, in_channels, in_h, in_w] = input else {
            return Err(Error::shape(
                OP,
                format!("input must be 4-D [N, C, H, W], got {}", fmt_shape(input)),
            ));
        };
        let &[out_channels, weight_in, kh, kw] = weight else {
            return Err(Error::shape(
                OP,
                format!(
                    "weight must be 4-D [C_out, C_in, KH, KW], got {}",
                    fmt_shape(weight)
                ),
            ));
        };
        if weight_in != in_channels {
            return Err(Error::shape(
                OP,
                format!(
                    "input has {in_channels} channels but the weight expects {weight_in} ({})",
                    shapes()
                ),
            ));
        }
        if stride.contains(&0) {
            return Err(Error::invalid(
                OP,
                format!("stride must be at least 1 ({})", shapes()),
            ));
        }
        if kh == 0 || kw == 0 {
            return Err(Error::invalid(
                OP,
                format!("kernel {kh}x{kw} is empty ({})", shapes()),
            ));
        }
        let padded = |len: usize, pad: usize| pad.checked_mul(2).and_then(|p| p.checked_add(len));
        let (Some(padded_h), Some(padded_w)) = (padded(in_h, padding[0]), padded(in_w, padding[1]))
        else {
            return Err(Error::invalid(
                OP,
                format!("padding is too large ({})", shapes()),
            ));
        };
        if kh > padded_h || kw > padded_w {
            return Err(Error::shape(
                OP,
                format!(
                    "kernel {kh}x{kw} is larger than the padded input {padded_h}x{padded_w} ({})",
                    shapes()
                ),
            ));
        }
        let g = Conv2dGeometry {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel: [kh, kw],
            stride,
            padding,
            out_h: (padded_h - kh) / stride[0] + 1,
            out_w: (padded_w - kw) / stride[1] + 1,
        };
        // Every buffer the kernels allocate must have a size that fits in memory addressing,
        // so later products of these dimensions cannot overflow.
        let sizes = [
            &g.input_shape()[..],
            &g.weight_shape()[..],
            &g.output_shape()[..],
            // the unrolled columns of the whole batch bound every scratch buffer
            &[in_channels, kh, kw, batch, g.out_h, g.out_w][..],
        ];
        if sizes.iter().any(|dims| checked_numel(dims).is_none()) {
            return Err(Error::invalid(
                OP,
                format!("the tensors would be too large to address ({})", shapes()),
            ));
        }
        Ok(g)
    }

    /// `[N, C_in, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_h, self.in_w]
    }

    /// `[C_out, C_in, KH, KW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// `[N, C_out, OH, OW]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h, self.out_w]
    }

    /// Floating-point operations of the forward pass (2 per multiply-add, bias not counted);
    /// the backward pass costs twice as much (input and weight gradients).
    pub fn forward_flops(&self) -> f64 {
        2.0 * [
            self.batch,
            self.out_channels,
            self.out_h,
            self.out_w,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
        .iter()
        .map(|&d| d as f64)
        .product::<f64>()
    }

    /// Rejects a geometry built by hand whose fields disagree with one another, which
    /// would otherwise index out of bounds.
    fn check(&self) -> Result<()> {
        let derived = Conv2dGeometry::new(
            &self.input_shape(),
            &self.weight_shape(),
            self.stride,
            self.padding,
        )?;
        if derived == *self {
            Ok(())
        } else {
            Err(Error::invalid(
                OP,
                format!(
                    "inconsistent geometry: output {} but input {}, weight {}, stride {:?}, padding {:?} give {}",
                    fmt_shape(&self.output_shape()),
                    fmt_shape(&self.input_shape()),
                    fmt_shape(&self.weight_shape()),
                    self.stride,
                    self.padding,
                    fmt_shape(&derived.output_shape())
                ),
            ))
        }
    }
}

fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Gradients of a convolution; `input` and `bias` are `None` when they were not asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dGrads {
    pub input: Option<Storage>,
    pub weight: Storage,
    pub bias: Option<Storage>,
}

/// `y = conv(x, w) + b`, returning an `[N, C_out, OH, OW]` buffer.
pub fn forward(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
) -> Result<Storage> {
    check_operands(input, weight, g)?;
    if let Some(bias) = bias {
        check_bias(bias, g)?;
    }
    dispatch!(
        OP,
        input,
        cpu::<T> => forward_cpu::<T>(input, weight, bias, g),
        cuda(input) => cuda::forward(input, weight, bias, g),
    )
}

/// Gradients of the loss with respect to the input (when `need_input_grad`), the weight,
/// and the bias (when `has_bias`), given the gradient with respect to the output.
pub fn backward(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    check_operands(input, weight, g)?;
    grad_out.expect_len(OP, "grad_out", numel(&g.output_shape()))?;
    dispatch!(
        OP,
        input,
        cpu::<T> => backward_cpu::<T>(input, weight, grad_out, g, has_bias, need_input_grad),
        cuda(input) => cuda::backward(input, weight, grad_out, g, has_bias, need_input_grad),
    )
}

/// The bias gradient alone, each output channel's sum of `grad_out`: for layers whose
/// input and weight need no gradient, such as a frozen first layer with a trained bias,
/// where [`backward`] would compute both for nothing. A bf16 `grad_out` (the gradient of
/// a bf16 output under autocast) is summed in f32 and gives an f32 gradient, as
/// [`backward_bf16`]'s bias gradient.
pub fn bias_grad(grad_out: &Storage, g: &Conv2dGeometry) -> Result<Storage> {
    g.check()?;
    grad_out.expect_len(OP, "grad_out", numel(&g.output_shape()))?;
    dispatch!(
        OP,
        grad_out,
        cpu::<T> => Ok(T::into_storage(cpu::bias_grad(grad_out.host::<T>(OP, "grad_out")?, g))),
        bf16 => Ok(Storage::f32(cpu::bias_grad(grad_out.host_bf16(OP, "grad_out")?, g))),
        cuda(gy) => cuda::bias_grad(crate::cuda::DeviceValues::F32(gy), g),
        cuda_bf16(gy) => cuda::bias_grad(crate::cuda::DeviceValues::Bf16(gy), g),
    )
}

/// [`forward`] with PyTorch autocast's bf16 semantics: `x`, `w` are rounded to bf16, the
/// products summed in f32, the bias added in f32. On the CPU it runs on AMX or
/// AVX512-BF16 (`kernels::bf16`), and fails with `Error::MissingCpuFeature` elsewhere; on a
/// CUDA device the products run in cuBLAS on bf16 operands, summed in f32.
///
/// `input` is an f32 or a bf16 buffer (an activation stored under autocast, read as it
/// is: half the bytes, nothing to round); `weight` and `bias` are f32, on the same device. `output` says how
/// the f32 sums are stored: [`DType::F32`], or [`DType::BF16`], each value rounded once
/// (to nearest, ties to even) as it is written, as PyTorch's autocast convolution returns
/// it. [`DType::F64`] is an `Error::InvalidArgument`.
///
/// ```
/// use kernels::{conv2d, DType, Storage};
/// # if kernels::bf16::Isa::best().is_err() { return; }
/// // A 1x1 kernel of weight 3 over a bf16 image: 1.5 * 3 = 4.5, exact in bf16.
/// let g = conv2d::Conv2dGeometry::new(&[1, 1, 1, 2], &[1, 1, 1, 1], [1, 1], [0, 0]).unwrap();
/// let x = Storage::f32(vec![1.5, -2.0]).to_dtype(DType::BF16).unwrap();
/// let y = conv2d::forward_bf16(&x, &Storage::f32(vec![3.0]), None, &g, DType::BF16).unwrap();
/// assert_eq!(y.dtype(), DType::BF16);
/// assert_eq!(y.to_vec_f32().unwrap(), [4.5, -6.0]);
/// ```
pub fn forward_bf16(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
    output: DType,
) -> Result<Storage> {
    crate::bf16::conv::check_output(output)?;
    check_operands(input, weight, g)?;
    if let Some(bias) = bias {
        check_bias(bias, g)?;
    }
    match input.device() {
        Device::Cpu => crate::bf16::conv::forward_storage(input, weight, bias, g, output),
        Device::Cuda(_) => cuda_bf16::forward(input, weight, bias, g, output),
    }
}

/// [`backward`] with [`forward_bf16`]'s semantics: both gradients are products of bf16
/// operands summed in f32; the bias gradient is an f32 sum of `grad_out`.
///
/// `input` is the forward's, f32 or bf16; `weight` is f32; `grad_out` has the dtype of
/// the forward's output, f32 or bf16 (autocast's), and is read as it is: an f32 one is
/// rounded to bf16 for the products, a bf16 one needs no rounding, and the two give the
/// same gradients when they hold the same values. Every gradient has its tensor's dtype:
/// the input gradient is the input's (a bf16 one rounded once, to nearest even, from its
/// f32 sums), the weight and bias gradients are f32. Any other dtype is an
/// `Error::Mismatch` naming the operand.
///
/// ```
/// use kernels::{conv2d, DType, Storage};
/// # if kernels::bf16::Isa::best().is_err() { return; }
/// // A 1x1 kernel of weight 3: dL/dx = 3 dL/dy, dL/dw = sum x dL/dy = 1.5 - 1 = 0.5.
/// let g = conv2d::Conv2dGeometry::new(&[1, 1, 1, 2], &[1, 1, 1, 1], [1, 1], [0, 0]).unwrap();
/// let bf16 = |v: Vec<f32>| Storage::f32(v).to_dtype(DType::BF16).unwrap();
/// let (x, gy) = (bf16(vec![1.5, -2.0]), bf16(vec![1.0, 0.5]));
/// let grads = conv2d::backward_bf16(&x, &Storage::f32(vec![3.0]), &gy, &g, true, true).unwrap();
/// let gx = grads.input.unwrap();
/// assert_eq!(gx.dtype(), DType::BF16);
/// assert_eq!(gx.to_vec_f32().unwrap(), [3.0, 1.5]);
/// assert_eq!(grads.weight, Storage::f32(vec![0.5]));
/// assert_eq!(grads.bias, Some(Storage::f32(vec![1.5])));
/// ```
pub fn backward_bf16(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    check_operands(input, weight, g)?;
    grad_out.expect_len(OP, "grad_out", numel(&g.output_shape()))?;
    match input.device() {
        Device::Cpu => crate::bf16::conv::backward_storage(
            input,
            weight,
            grad_out,
            g,
            has_bias,
            need_input_grad,
        ),
        Device::Cuda(_) => {
            cuda_bf16::backward(input, weight, grad_out, g, has_bias, need_input_grad)
        }
    }
}

fn check_operands(input: &Storage, weight: &Storage, g: &Conv2dGeometry) -> Result<()> {
    g.check()?;
    input.expect_len(OP, "input", numel(&g.input_shape()))?;
    weight.expect_len(OP, "weight", numel(&g.weight_shape()))
}

fn check_bias(bias: &Storage, g: &Conv2dGeometry) -> Result<()> {
    if bias.len() == g.out_channels {
        Ok(())
    } else {
        Err(Error::shape(
            OP,
            format!(
                "bias has {} elements but weight {} has {} output channels",
                bias.len(),
                fmt_shape(&g.weight_shape()),
                g.out_channels
            ),
        ))
    }
}

fn forward_cpu<T: cpu::Scratch>(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
) -> Result<Storage> {
    let x = input.host::<T>(OP, "input")?;
    let w = weight.host::<T>(OP, "weight")?;
    let b = bias.map(|b| b.host::<T>(OP, "bias")).transpose()?;
    Ok(T::into_storage(cpu::forward(x, w, b, g)))
}

fn backward_cpu<T: cpu::Scratch>(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    let x = input.host::<T>(OP, "input")?;
    let w = weight.host::<T>(OP, "weight")?;
    let gy = grad_out.host::<T>(OP, "grad_out")?;
    let grads = cpu::backward(x, w, gy, g, has_bias, need_input_grad);
    Ok(Conv2dGrads {
        input: grads.input.map(T::into_storage),
        weight: T::into_storage(grads.weight),
        bias: grads.bias.map(T::into_storage),
    })
}
