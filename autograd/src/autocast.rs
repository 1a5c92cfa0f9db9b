//! Mixed precision: while an [`AutocastGuard`] for [`Precision::Bf16`] lives, convolutions
//! and linear layers on this thread multiply in bf16, PyTorch's
//! `torch.autocast("cpu" | "cuda", dtype=torch.bfloat16)`.
//!
//! What changes, and what does not:
//! - [`Tensor::conv2d`](crate::Tensor::conv2d) rounds its input and weight to bf16, sums
//!   the products in f32, adds the bias in f32 and returns the result rounded to **bf16**
//!   (`kernels::conv2d::forward_bf16`), as PyTorch's autocast does.
//! - The layers that follow a convolution, max pooling, batch norm, GELU and ReLU, take
//!   that bf16 tensor and return bf16: each computes in f32 on the widened values (batch
//!   norm's statistics, its running statistics and its parameters are f32) and rounds its
//!   output once. A flatten keeps bf16.
//! - [`Tensor::linear`](crate::Tensor::linear) takes an f32 or bf16 input, multiplies in
//!   bf16 the same way and returns **f32** (PyTorch returns bf16 logits and then computes
//!   the loss in f32; ours skip the rounding). Softmax / cross-entropy and the loss are f32.
//! - Every gradient has its tensor's dtype, as in PyTorch: the gradient of a bf16
//!   activation is bf16, so the backward of the layers between convolutions reads and
//!   writes half the bytes too. Each backward computes in f32 on the widened values and
//!   rounds a bf16 gradient once as it stores it; two gradients of one bf16 tensor are
//!   added in f32 and rounded once. Convolution and linear backward multiply bf16
//!   operands (`dL/dy` and the saved activation, or the weight rounded to bf16) and sum in
//!   f32; their weight and bias gradients are f32. The precision is recorded with the node
//!   when the forward runs, so a backward pass after the guard is gone still matches its
//!   forward.
//! - Parameters ("master weights"), their gradients and the optimiser's state stay f32:
//!   the bf16 copies of the weights are made inside the kernels for one call (PyTorch
//!   rounds the weight gradients to bf16 on their way back through its cast; ours are the
//!   f32 sums).
//! - Any other op handed a bf16 tensor is [`Error::Unsupported`] naming the op and bf16.
//!
//! Stored for backward: the activations between convolutions in bf16 (half the bytes of
//! f32; the network's input stays f32), max pooling's winning cells (one byte per output),
//! batch norm's f32 statistics.
//!
//! bf16 runs on the CPU (Intel AMX, else AVX512-BF16) and on CUDA devices (cuBLAS's bf16
//! products summed in f32, the kernels between convolutions on bf16 storage, with the same
//! rounding as the CPU's): [`Precision::check`] says before a run starts whether `device`
//! can run it.
//!
//! ```
//! use autograd::{autocast, current_precision, Precision};
//! {
//!     let _bf16 = autocast(Precision::Bf16);
//!     assert_eq!(current_precision(), Precision::Bf16);
//! }
//! assert_eq!(current_precision(), Precision::F32);
//! ```

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use kernels::{DType, Device, Error, Result};

use crate::Tensor;

/// The arithmetic of convolutions and linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Convolutions and linear layers on bf16-rounded operands, summed in f32.
    Bf16,
}

impl Precision {
    /// The name the command line uses: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Ok when `device` can run this precision; else the one error that says why (a CPU
    /// without AMX or AVX512-BF16: [`Error::MissingCpuFeature`] naming what it lacks). Any
    /// CUDA device runs bf16 (cuBLAS's bf16 products need compute capability 8.0 or later
    /// to run fast, and still run, more slowly, before that).
    pub fn check(self, device: Device) -> Result<()> {
        match (self, device) {
            (Precision::F32, _) | (Precision::Bf16, Device::Cuda(_)) => Ok(()),
            (Precision::Bf16, Device::Cpu) => kernels::bf16::Isa::best().map(|_| ()),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(text: &str) -> Result<Precision> {
        match text {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::invalid(
                "precision",
                format!("{other:?} is not a precision: use f32 or bf16"),
            )),
        }
    }
}

/// The precision an op runs in on `input` now: bf16 under a bf16 guard for f32 and bf16
/// tensors, on either device; f32 otherwise, for f64 tensors too (as in PyTorch, autocast
/// leaves f64 alone).
pub(crate) fn precision_for(input: &Tensor) -> Precision {
    match (current_precision(), input.dtype()) {
        (Precision::Bf16, DType::F32 | DType::BF16) => Precision::Bf16,
        _ => Precision::F32,
    }
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision convolutions and linear layers on this thread use now.
pub fn current_precision() -> Precision {
    PRECISION.with(Cell::get)
}

/// Makes convolutions and linear layers on this thread use `precision` until the returned
/// guard is dropped (guards nest; dropping one restores the precision before it).
pub fn autocast(precision: Precision) -> AutocastGuard {
    let previous = PRECISION.with(|p| p.replace(precision));
    AutocastGuard { previous }
}

/// Restores the previous precision when dropped.
#[must_use = "the precision reverts as soon as the guard is dropped"]
pub struct AutocastGuard {
    previous: Precision,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        PRECISION.with(|p| p.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_restore() {
        assert_eq!(current_precision(), Precision::F32);
        let outer = autocast(Precision::Bf16);
        {
            let _inner = autocast(Precision::F32);
            assert_eq!(current_precision(), Precision::F32);
        }
        assert_eq!(current_precision(), Precision::Bf16);
        drop(outer);
        assert_eq!(current_precision(), Precision::F32);
    }

    #[test]
    fn names_parse_back_and_a_bad_one_is_one_clear_error() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(
            err,
            "precision: \"fp16\" is not a precision: use f32 or bf16"
        );
    }

    #[test]
    fn bf16_is_accepted_on_cuda_and_f32_everywhere() {
        // No GPU is needed to ask: a device that fails to open says so when it is used.
        assert!(Precision::Bf16.check(Device::Cuda(0)).is_ok());
        assert!(Precision::F32.check(Device::Cuda(0)).is_ok());
        assert!(Precision::F32.check(Device::Cpu).is_ok());
    }
}
