//! Fully connected layer, PyTorch layout: `y = x W^T + b`, x `[N, in]`, W `[out, in]`, b `[out]`.
//!
//! ```text
//! dL/dx = dL/dy W          [N, out] x [out, in]
//! dL/dW = dL/dy^T x        [out, N] x [N, in]
//! dL/db = sum over the batch of dL/dy
//! ```
//!
//! ```
//! use kernels::{linear, Storage};
//! let g = linear::LinearGeometry::new(&[1, 2], &[1, 2]).unwrap();
//! let y = linear::forward(
//!     &Storage::f64(vec![1.0, 2.0]),
//!     &Storage::f64(vec![3.0, 4.0]),
//!     Some(&Storage::f64(vec![0.5])),
//!     &g,
//! )
//! .unwrap();
//! assert_eq!(y, Storage::f64(vec![11.5]));
//! ```

mod cpu;
mod cuda;
mod cuda_bf16;
#[cfg(test)]
mod tests;

use crate::{fmt_shape, DType, Device, Element, Error, Result, Storage};

const OP: &str = "linear";

/// The sizes of one fully connected layer, validated by [`LinearGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeometry {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearGeometry {
    /// Checks an input `[N, in]` against a weight `[out, in]`.
    pub fn new(input: &[usize], weight: &[usize]) -> Result<LinearGeometry> {
        let &[batch, in_features] = input else {
            return Err(Error::shape(
                OP,
                format!("input must be 2-D [N, in], got {}", fmt_shape(input)),
            ));
        };
        let &[out_features, weight_in] = weight else {
            return Err(Error::shape(
                OP,
                format!("weight must be 2-D [out, in], got {}", fmt_shape(weight)),
            ));
        };
        if weight_in != in_features {
            return Err(Error::shape(
                OP,
                format!(
                    "input {} has {in_features} features but weight {} expects {weight_in}",
                    fmt_shape(input),
                    fmt_shape(weight)
                ),
            ));
        }
        let g = LinearGeometry {
            batch,
            in_features,
            out_features,
        };
        g.sizes()?;
        Ok(g)
    }

    /// Floating-point operations of the forward pass (2 per multiply-add); backward is twice that.
    pub fn forward_flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.in_features as f64 * self.out_features as f64
    }

    /// Element counts of input, weight and output, or an error if they overflow.
    fn sizes(&self) -> Result<[usize; 3]> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        match (n.checked_mul(i), o.checked_mul(i), n.checked_mul(o)) {
            (Some(x), Some(w), Some(y)) => Ok([x, w, y]),
            _ => Err(Error::invalid(
                OP,
                format!("the tensors would be too large to address ({self:?})"),
            )),
        }
    }
}

/// Gradients of a linear layer; `input` and `bias` are `None` when they were not asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads {
    pub input: Option<Storage>,
    pub weight: Storage,
    pub bias: Option<Storage>,
}

/// `y = x W^T + b`, an `[N, out]` buffer.
pub fn forward(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    check_operands(input, weight, g)?;
    if let Some(bias) = bias {
        if bias.len() != g.out_features {
            return Err(Error::shape(
                OP,
                format!(
                    "bias has {} elements but weight [{}, {}] has {} outputs",
                    bias.len(),
                    g.out_features,
                    g.in_features,
                    g.out_features
                ),
            ));
        }
    }
    dispatch!(
        OP,
        input,
        cpu::<T> => forward_cpu::<T>(input, weight, bias, g),
        cuda(input) => cuda::forward(input, weight, bias, g),
    )
}

/// Gradients with respect to the input (when `need_input_grad`), the weight, and the bias
/// (when `has_bias`), given `grad_out` `[N, out]`.
pub fn backward(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<LinearGrads> {
    let [_, _, out_len] = check_operands(input, weight, g)?;
    grad_out.expect_len(OP, "grad_out", out_len)?;
    dispatch!(
        OP,
        input,
        cpu::<T> => backward_cpu::<T>(input, weight, grad_out, g, has_bias, need_input_grad),
        cuda(input) => cuda::backward(input, weight, grad_out, g, has_bias, need_input_grad),
    )
}

/// [`forward`] with PyTorch autocast's bf16 semantics: `x`, `W` are rounded to bf16, the
/// products summed in f32, the bias added in f32. `input` is an f32 or a bf16 CPU buffer
/// (an activation stored under autocast, read as it is); `weight`, `bias` and the output
/// are f32 (the logits feed f32 losses). On the CPU it runs on AMX or AVX512-BF16
/// (`kernels::bf16`), and fails with `Error::MissingCpuFeature` elsewhere; on a CUDA device
/// the products run in cuBLAS on bf16 operands, summed in f32.
pub fn forward_bf16(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    check_operands(input, weight, g)?;
    if let Some(bias) = bias {
        bias.expect_len(OP, "bias", g.out_features)?;
    }
    match input.device() {
        Device::Cpu => crate::bf16::linear::forward_storage(input, weight, bias, g),
        Device::Cuda(_) => cuda_bf16::forward(input, weight, bias, g),
    }
}

/// [`backward`] with [`forward_bf16`]'s semantics: both gradients are products of bf16
/// operands summed in f32; the bias gradient is an f32 sum.
///
/// `input` is the forward's, f32 or bf16; `weight` is f32; `grad_out` is f32 (the logits'
/// gradient under autocast) or bf16, read as it is, the values it holds giving the same
/// gradients either way. Every gradient has its tensor's dtype: the input gradient is the
/// input's (a bf16 one rounded once from its f32 sums), the weight and bias gradients are
/// f32. Any other dtype is an `Error::Mismatch` naming the operand.
pub fn backward_bf16(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<LinearGrads> {
    let [_, _, out_len] = check_operands(input, weight, g)?;
    grad_out.expect_len(OP, "grad_out", out_len)?;
    if let Device::Cuda(_) = input.device() {
        return cuda_bf16::backward(input, weight, grad_out, g, has_bias, need_input_grad);
    }
    let (input_grad, weight_grad) =
        crate::bf16::linear::backward_storage(input, weight, grad_out, g, need_input_grad)?;
    let (n, o) = (g.batch, g.out_features);
    // backward_storage has checked that grad_out is f32 or bf16 on the CPU.
    let bias = match has_bias {
        false => None,
        true if grad_out.dtype() == DType::BF16 => {
            Some(cpu::bias_grad(grad_out.host_bf16(OP, "grad_out")?, n, o))
        }
        true => Some(cpu::bias_grad(grad_out.host::<f32>(OP, "grad_out")?, n, o)),
    };
    Ok(LinearGrads {
        input: input_grad,
        weight: weight_grad,
        bias: bias.map(Storage::f32),
    })
}

fn check_operands(input: &Storage, weight: &Storage, g: &LinearGeometry) -> Result<[usize; 3]> {
    let sizes = g.sizes()?;
    input.expect_len(OP, "input", sizes[0])?;
    weight.expect_len(OP, "weight", sizes[1])?;
    Ok(sizes)
}

fn forward_cpu<T: Element>(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    let x = input.host::<T>(OP, "input")?;
    let w = weight.host::<T>(OP, "weight")?;
    let b = bias.map(|b| b.host::<T>(OP, "bias")).transpose()?;
    Ok(T::into_storage(cpu::forward(x, w, b, g)))
}

fn backward_cpu<T: Element>(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<LinearGrads> {
    let x = input.host::<T>(OP, "input")?;
    let w = weight.host::<T>(OP, "weight")?;
    let gy = grad_out.host::<T>(OP, "grad_out")?;
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let grad_input = need_input_grad.then(|| cpu::input_grad(gy, w, n, i, o));
    Ok(LinearGrads {
        input: grad_input.map(T::into_storage),
        weight: T::into_storage(cpu::weight_grad(gy, x, n, i, o)),
        bias: has_bias.then(|| T::into_storage(cpu::bias_grad(gy, n, o))),
    })
}
