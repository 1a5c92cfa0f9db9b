//! A fully connected layer's products in bf16: `y = x W^T + b`, `dL/dx = dL/dy W`,
//! `dL/dW = dL/dy^T x` (the bias gradient is an f32 sum, in `linear/`).
//!
//! The forward product is computed transposed, `y^T = W x^T`, so that the weight (the
//! large operand: 8192 x 1024 in the notebook's network) is packed row by row, the cheap
//! direction, and the small batch is the one transposed.
//!
//! The input `x` and `dL/dy` may each be f32 (rounded to bf16 as they are packed) or bf16
//! (an activation under autocast and its gradient, packed as they are); the weight is f32.
//! The output is f32 (the logits feed f32 losses), and so is the weight gradient; the
//! input gradient has the input's dtype, a bf16 one rounded once from its f32 sums.

use super::gemm::{gemm_views, MatMut, MatRef};
use super::source::{Values, View};
use super::Cpu;
use crate::bf16_values::narrow;
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
/// `(dL/dx if need_input_grad, in the input's dtype; dL/dW, f32)`.
pub(crate) fn backward_storage(
    input: &Storage,
    weight: &Storage,
    grad_out: &Storage,
    g: &LinearGeometry,
    need_input_grad: bool,
) -> Result<(Option<Storage>, Storage)> {
    let x = Values::of(input, OP, "input")?;
    let w = weight.host::<f32>(OP, "weight")?;
    let gy = Values::of(grad_out, OP, "grad_out")?;
    let cpu = Cpu::best()?;
    let gx = need_input_grad
        .then(|| input_grad(cpu, gy, w, g))
        .transpose()?;
    // The product writes f32 sums; a bf16 input's gradient (at most a batch of feature
    // vectors) is rounded once from them.
    let gx = gx.map(|gx| match x {
        Values::F32(_) => Storage::f32(gx),
        Values::Bf16(_) => Storage::bf16(gx.into_iter().map(narrow).collect()),
    });
    Ok((gx, Storage::f32(weight_grad(cpu, gy, x, g)?)))
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

/// `dL/dx = dL/dy W`, `[N, in]`, as f32 sums.
pub(crate) fn input_grad(cpu: Cpu, gy: Values, w: &[f32], g: &LinearGeometry) -> Result<Vec<f32>> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut gx = vec![0.0; n * i];
    let gy = View::row_major(gy, n, o)?;
    let w = View::matrix(MatRef::new(w, o, i)?);
    let c = MatMut::new(&mut gx, n, i)?;
    gemm_views(cpu.isa(), &gy, &w, c, false)?;
    Ok(gx)
}

/// `dL/dW = dL/dy^T x`, `[out, in]`.
pub(crate) fn weight_grad(cpu: Cpu, gy: Values, x: Values, g: &LinearGeometry) -> Result<Vec<f32>> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut gw = vec![0.0; o * i];
    let gy_t = View::row_major(gy, n, o)?.t();
    let x = View::row_major(x, n, i)?;
    let c = MatMut::new(&mut gw, o, i)?;
    gemm_views(cpu.isa(), &gy_t, &x, c, false)?;
    Ok(gw)
}
