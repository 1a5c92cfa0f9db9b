//! 2-D max and average pooling over NCHW input, with PyTorch's semantics.
//!
//! Each output cell reduces one `kernel[0] x kernel[1]` window of its own (batch, channel)
//! plane. Window `(oh, ow)` covers input rows `oh*stride[0] - padding[0] ..` and columns
//! `ow*stride[1] - padding[1] ..`, and the output size is rounded down (`ceil_mode=false`):
//!
//! ```text
//! out_h = (in_h + 2*padding[0] - kernel[0]) / stride[0] + 1      (same for w)
//! max:  y = max over the window, padding counting as -inf
//! avg:  y = sum over the window / divisor, padding counting as 0, where
//!       divisor = kernel[0]*kernel[1]                 if count_include_pad (PyTorch default)
//!               = number of in-bounds window cells   otherwise
//! ```
//!
//! As in PyTorch, `padding <= kernel / 2`, so every window holds at least one input cell:
//! the max never comes from padding and the divisor is never zero. With rounding down
//! a window never reaches past the padded input, so the count_include_pad divisor is
//! always the full kernel area.
//!
//! Backward: average pooling spreads each output gradient evenly (by the same divisor)
//! over its window; max pooling routes it to the window's first maximum in row-major
//! order (ties go to the earliest cell, a NaN wins over numbers, as PyTorch does).
//! [`backward`] recomputes the argmax from the input; [`max_forward_keeping_argmax`] keeps
//! it instead (one byte per output, as PyTorch's `max_pool2d_with_indices`) for
//! [`max_backward_from_argmax`], which then never reads the input again.
//!
//! A bf16 input (an activation stored under autocast) is max pooled on the host into a
//! bf16 output: each window's value and cell are exactly those the f32 kernel picks on the
//! widened input (the value copied, not rounded again: a signalling NaN stays signalling,
//! as in the f32 kernel), and its gradient, from the kept argmax and a bf16 `grad_out`,
//! is bf16: the f32 path's on the widened values, rounded once. Average pooling and, on
//! the host, the recomputing [`backward`] have no bf16 kernel ([`Error::Unsupported`]):
//! under autocast the network only max pools, and keeps the argmax. On the GPU, which
//! keeps no argmax, a bf16 input is max pooled and its gradient recomputed by the same
//! kernels as f32, reading and writing bf16 (same cells, same values, the gradient's sums
//! in f32 rounded once).
//!
//! ```
//! use kernels::{pool2d::{self, PoolKind, Pool2dGeometry}, Storage};
//! let g = Pool2dGeometry::new(PoolKind::Max, &[1, 1, 2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
//! let y = pool2d::forward(&Storage::f32(vec![1.0, 4.0, 3.0, 2.0]), &g).unwrap();
//! assert_eq!(y, Storage::f32(vec![4.0]));
//! ```

mod argmax;
mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{fmt_shape, DType, Device, Element, Error, Result, Storage};

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Largest value of the window; padding counts as -inf.
    Max,
    /// Mean of the window; padding counts as zero. `count_include_pad` decides whether
    /// padded cells count in the divisor (PyTorch's default is `true`).
    Avg { count_include_pad: bool },
}

impl PoolKind {
    /// PyTorch's name for the op, used in error messages.
    pub fn op_name(self) -> &'static str {
        match self {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg { .. } => "avg_pool2d",
        }
    }
}

/// Validated shapes and hyper-parameters of one pooling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub kind: PoolKind,
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl Pool2dGeometry {
    /// Checks an NCHW `input` shape against the window and works out the output size.
    ///
    /// Refuses (naming `max_pool2d` / `avg_pool2d` and the shapes) a non-4-D input, zero
    /// channels or spatial size, a zero kernel or stride, padding above half the kernel,
    /// and a kernel larger than the padded input. A zero batch is allowed (empty output).
    pub fn new(
        kind: PoolKind,
        input: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Pool2dGeometry> {
        let op = kind.op_name();
        let &[batch, channels, in_h, in_w] = input else {
            return Err(Error::shape(
                op,
                format!(
                    "expected a 4-D input [batch, channels, height, width], got {}",
                    fmt_shape(input)
                ),
            ));
        };
        if channels == 0 || in_h == 0 || in_w == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "input {} has an empty channel or spatial dimension",
                    fmt_shape(input)
                ),
            ));
        }
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel {}x{} and stride {}x{} must be positive (input {})",
                    kernel[0],
                    kernel[1],
                    stride[0],
                    stride[1],
                    fmt_shape(input)
                ),
            ));
        }
        if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
            return Err(Error::invalid(
                op,
                format!(
                    "padding {}x{} must be at most half the kernel {}x{} (input {})",
                    padding[0],
                    padding[1],
                    kernel[0],
                    kernel[1],
                    fmt_shape(input)
                ),
            ));
        }
        // 2 * padding <= kernel, so only the addition can overflow.
        let (Some(padded_h), Some(padded_w)) = (
            in_h.checked_add(2 * padding[0]),
            in_w.checked_add(2 * padding[1]),
        ) else {
            return Err(Error::shape(
                op,
                format!("padded input overflows (input {})", fmt_shape(input)),
            ));
        };
        let padded = [padded_h, padded_w];
        if kernel[0] > padded[0] || kernel[1] > padded[1] {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {}x{} is larger than the padded input {}x{} (input {}, padding {}x{})",
                    kernel[0],
                    kernel[1],
                    padded[0],
                    padded[1],
                    fmt_shape(input),
                    padding[0],
                    padding[1]
                ),
            ));
        }
        let g = Pool2dGeometry {
            kind,
            batch,
            channels,
            in_h,
            in_w,
            kernel,
            stride,
            padding,
            out_h: (padded[0] - kernel[0]) / stride[0] + 1,
            out_w: (padded[1] - kernel[1]) / stride[1] + 1,
        };
        let sizes = [g.input_shape(), g.output_shape()];
        if sizes.iter().any(|s| {
            s.iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .is_none()
        }) {
            return Err(Error::shape(
                op,
                format!("input {} has too many elements", fmt_shape(input)),
            ));
        }
        Ok(g)
    }

    /// Re-derives the geometry from its inputs, so that a hand-built struct with
    /// inconsistent fields is refused instead of indexing out of bounds.
    fn checked(&self) -> Result<Pool2dGeometry> {
        let g = Pool2dGeometry::new(
            self.kind,
            &self.input_shape(),
            self.kernel,
            self.stride,
            self.padding,
        )?;
        if g != *self {
            return Err(Error::invalid(
                self.op(),
                format!(
                    "inconsistent geometry: input {} with kernel {:?}, stride {:?}, padding {:?} gives output {}, not {}",
                    fmt_shape(&self.input_shape()),
                    self.kernel,
                    self.stride,
                    self.padding,
                    fmt_shape(&g.output_shape()),
                    fmt_shape(&self.output_shape())
                ),
            ));
        }
        Ok(g)
    }

    /// The output shape `[batch, channels, out_h, out_w]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_h, self.out_w]
    }

    /// The input shape `[batch, channels, in_h, in_w]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.in_h, self.in_w]
    }

    fn input_len(&self) -> usize {
        self.batch * self.channels * self.in_h * self.in_w
    }

    /// Whether an input cell can lie in more than one window (a stride below the kernel).
    fn windows_overlap(&self) -> bool {
        self.stride[0] < self.kernel[0] || self.stride[1] < self.kernel[1]
    }

    fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_h * self.out_w
    }

    fn op(&self) -> &'static str {
        self.kind.op_name()
    }
}

/// Pools `input` (NCHW, shape `g.input_shape()`) into a buffer of shape `g.output_shape()`
/// and of the input's dtype (bf16 for max pooling only).
pub fn forward(input: &Storage, g: &Pool2dGeometry) -> Result<Storage> {
    let g = &g.checked()?;
    input.expect_len(g.op(), "input", g.input_len())?;
    dispatch!(
        g.op(),
        input,
        cpu::<T> => forward_cpu::<T>(input, g),
        bf16 => match g.kind {
            PoolKind::Max => Ok(Storage::bf16(cpu::max_forward(input.host_bf16(g.op(), "input")?, g))),
            PoolKind::Avg { .. } => Err(Error::unsupported(g.op(), DType::BF16, Device::Cpu)),
        },
        cuda(input) => cuda::forward(input, g),
        cuda_bf16(input) => match g.kind {
            PoolKind::Max => cuda::max_forward_bf16(input, g),
            PoolKind::Avg { .. } => Err(Error::unsupported(g.op(), DType::BF16, input.device())),
        },
    )
}

/// Gradient w.r.t. the input. Max: recomputes each window's argmax from `input` (first
/// maximum in row-major window order, as PyTorch) so no index buffer is kept. A bf16
/// input on the host is [`Error::Unsupported`] (its max pool keeps the argmax instead);
/// on the GPU, which keeps none, a bf16 max pool's gradient is recomputed here, from a bf16
/// `grad_out` into bf16: the f32 kernel's on the widened values, rounded once.
pub fn backward(input: &Storage, grad_out: &Storage, g: &Pool2dGeometry) -> Result<Storage> {
    let g = &g.checked()?;
    input.expect_len(g.op(), "input", g.input_len())?;
    grad_out.expect_len(g.op(), "grad_out", g.output_len())?;
    dispatch!(
        g.op(),
        input,
        cpu::<T> => backward_cpu::<T>(input, grad_out, g),
        bf16 => Err(Error::unsupported(g.op(), DType::BF16, Device::Cpu)),
        cuda(input) => cuda::backward(input, grad_out, g),
        cuda_bf16(input) => match g.kind {
            PoolKind::Max => cuda::max_backward_bf16(input, grad_out, g),
            PoolKind::Avg { .. } => Err(Error::unsupported(g.op(), DType::BF16, input.device())),
        },
    )
}

/// Each window's winning cell, kept by [`max_forward_keeping_argmax`] for
/// [`max_backward_from_argmax`]: one byte per output, with the geometry it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argmax {
    cells: Vec<u8>,
    geometry: Pool2dGeometry,
    /// The dtype of the input, and so of both gradients.
    grad_dtype: DType,
}

/// Max pooling (`g.kind` must be [`PoolKind::Max`]) that also returns each window's
/// winning cell, where it can keep one: on the host, for windows of at most 256 cells.
/// Elsewhere the argmax is `None` and the backward is [`backward`], from the input (which
/// has no bf16 kernel on the host: there a bf16 input needs windows of at most 256 cells
/// to be trained; on the GPU it has one).
/// The output has the input's dtype (f32, f64 or bf16).
///
/// ```
/// use kernels::{pool2d::{self, PoolKind, Pool2dGeometry}, Storage};
/// let g = Pool2dGeometry::new(PoolKind::Max, &[1, 1, 2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let (y, argmax) = pool2d::max_forward_keeping_argmax(&Storage::f32(vec![1.0, 4.0, 3.0, 2.0]), &g).unwrap();
/// assert_eq!(y, Storage::f32(vec![4.0]));
/// let dx = pool2d::max_backward_from_argmax(&argmax.unwrap(), &Storage::f32(vec![1.0])).unwrap();
/// assert_eq!(dx, Storage::f32(vec![0.0, 1.0, 0.0, 0.0]));
/// ```
pub fn max_forward_keeping_argmax(
    input: &Storage,
    g: &Pool2dGeometry,
) -> Result<(Storage, Option<Argmax>)> {
    let g = &g.checked()?;
    if g.kind != PoolKind::Max {
        return Err(Error::invalid(
            g.op(),
            "only max pooling has an argmax to keep; use pool2d::forward",
        ));
    }
    input.expect_len(g.op(), "input", g.input_len())?;
    if input.device() != crate::Device::Cpu || g.kernel[0] * g.kernel[1] > argmax::MAX_CELLS {
        return Ok((forward(input, g)?, None));
    }
    let (output, cells) = dispatch!(
        g.op(),
        input,
        cpu::<T> => {
            let (y, cells) = argmax::forward::<T>(input.host::<T>(g.op(), "input")?, g);
            Ok((T::into_storage(y), cells))
        },
        bf16 => {
            let (y, cells) = argmax::forward(input.host_bf16(g.op(), "input")?, g);
            Ok((Storage::bf16(y), cells))
        },
        cuda(_input) => Err(Error::unsupported(g.op(), input.dtype(), input.device())),
    )?;
    let grad_dtype = input.dtype();
    Ok((
        output,
        Some(Argmax {
            cells,
            geometry: *g,
            grad_dtype,
        }),
    ))
}

/// Gradient w.r.t. the input of the max pool that produced `argmax`, from `grad_out`
/// (shape `output_shape()`, on the host, of the input's dtype): each gradient added to its
/// window's winning cell. The gradient has the input's dtype; a bf16 one is the f32
/// kernel's on the widened `grad_out`, rounded once (exact unless windows overlap and a
/// cell wins more than one).
pub fn max_backward_from_argmax(argmax: &Argmax, grad_out: &Storage) -> Result<Storage> {
    let g = &argmax.geometry;
    grad_out.expect_len(g.op(), "grad_out", g.output_len())?;
    if grad_out.dtype() != argmax.grad_dtype {
        return Err(Error::mismatch(
            g.op(),
            format!(
                "grad_out is {} on {}, expected {} on cpu (the gradient of the pooled input)",
                grad_out.dtype(),
                grad_out.device(),
                argmax.grad_dtype
            ),
        ));
    }
    dispatch!(
        g.op(),
        grad_out,
        cpu::<T> => {
            let dy = grad_out.host::<T>(g.op(), "grad_out")?;
            Ok(T::into_storage(argmax::backward(&argmax.cells, dy, g)))
        },
        bf16 => {
            let dy = grad_out.host_bf16(g.op(), "grad_out")?;
            if g.windows_overlap() {
                // Sums of several gradients: added in f32, rounded once, as the contract
                // says; no network here pools with overlapping windows in bf16.
                let wide: Vec<f32> = dy.iter().map(|&v| crate::bf16_values::widen(v)).collect();
                let dx = argmax::backward(&argmax.cells, &wide, g);
                Ok(Storage::bf16(dx.into_iter().map(crate::bf16_values::narrow).collect()))
            } else {
                Ok(Storage::bf16(argmax::backward(&argmax.cells, dy, g)))
            }
        },
        cuda(_grad) => Err(Error::unsupported(g.op(), grad_out.dtype(), grad_out.device())),
    )
}

fn forward_cpu<T: Element>(input: &Storage, g: &Pool2dGeometry) -> Result<Storage> {
    let x = input.host::<T>(g.op(), "input")?;
    Ok(T::into_storage(cpu::forward(x, g)))
}

fn backward_cpu<T: Element>(
    input: &Storage,
    grad_out: &Storage,
    g: &Pool2dGeometry,
) -> Result<Storage> {
    let x = input.host::<T>(g.op(), "input")?;
    let dy = grad_out.host::<T>(g.op(), "grad_out")?;
    Ok(T::into_storage(cpu::backward(x, dy, g)))
}
