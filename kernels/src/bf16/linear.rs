//! A fully connected layer's products in bf16: `y = x W^T + b`, `dL/dx = dL/dy W`,
//! `dL/dW = dL/dy^T x` (the bias gradient stays an f32 sum, in `linear/`).
//!
//! The forward product is computed transposed, `y^T = W x^T`, so that the weight (the
//! large operand: 8192 x 1024 in the notebook's network) is packed row by row, the cheap
//! direction, and the small batch is the one transposed.
//!
//! The input `x` may be f32 (rounded to bf16 as it is packed) or bf16 (an activation
//! under autocast, packed as it is); the weight and `dL/dy` are f32, and so are the
//! outputs (the logits feed f32 losses).

use super::gemm::{gemm_views, gemm_with, MatMut, MatRef};
use super::source::{Values, View};
use super::Cpu;
use crate::linear::LinearGeometry;
use crate::{Result, Storage};

const OP: &str = "linear";

/// `linear::forward_bf16` on operands whose sizes the caller has checked.
pub(crate) fn forward_storage(
    input: &Storage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &LinearGeometry,
) -> Result<Storage> {
    let x = Values::of(input, OP, "input")?;
    let w = weight.host::<f32>(OP, "weight")?;
    let b = bias.map(|b| b.host::<f32>(OP, "bias")).transpose()?;
    Ok(Storage::f32(forward(Cpu::best()?, x, w, b, g)?))
}

/// `linear::backward_bf16`'s products on operands whose sizes the caller has checked:
/// `(dL/dx if need_input_grad, dL/dW)`.
pub(crate) fn backward_storage(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    need_input_grad: bool,
) -> Result<(Option<Storage>, Storage)> {
    let x = Values::of(input, OP, "input")?;
    let w = weight.host::<f32>(OP, "weight")?;
    let gy = grad_out.host::<f32>(OP, "grad_out")?;
    let cpu = Cpu::best()?;
    let gx = need_input_grad
        .then(|| input_grad(cpu, gy, w, g))
        .transpose()?;
    Ok((
        gx.map(Storage::f32),
        Storage::f32(weight_grad(cpu, gy, x, g)?),
    ))
}

/// `y = x W^T + b`, `[N, out]`.
pub(crate) fn forward(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &LinearGeometry,
) -> Result<Vec<f32>> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    // Start from the bias and accumulate: one pass over y fewer.
    let mut y = match bias {
        Some(b) => b.repeat(n),
        None => vec![0.0; n * o],
    };
    let w = View::matrix(MatRef::new(w, o, i)?);
    let x_t = View::row_major(x, n, i)?.t();
    let y_t = MatMut::strided(&mut y, o, n, 1, o)?;
    gemm_views(cpu.isa(), &w, &x_t, y_t, bias.is_some())?;
    Ok(y)
}

/// `dL/dx = dL/dy W`, `[N, in]`.
pub(crate) fn input_grad(cpu: Cpu, gy: &[f32], w: &[f32], g: &LinearGeometry) -> Result<Vec<f32>> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut gx = vec![0.0; n * i];
    let gy = MatRef::new(gy, n, o)?;
    let w = MatRef::new(w, o, i)?;
    let c = MatMut::new(&mut gx, n, i)?;
    gemm_with(cpu.isa(), gy, w, c, false)?;
    Ok(gx)
}

/// `dL/dW = dL/dy^T x`, `[out, in]`.
pub(crate) fn weight_grad(cpu: Cpu, gy: &[f32], x: Values, g: &LinearGeometry) -> Result<Vec<f32>> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut gw = vec![0.0; o * i];
    let gy_t = View::matrix(MatRef::new(gy, n, o)?.t());
    let x = View::row_major(x, n, i)?;
    let c = MatMut::new(&mut gw, o, i)?;
    gemm_views(cpu.isa(), &gy_t, &x, c, false)?;
    Ok(gw)
}
