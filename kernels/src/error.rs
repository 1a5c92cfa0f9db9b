//! The one error type every kernel returns.
//!
//! Each variant names the op that refused the call, so a user reading the message
//! knows which layer of their network to look at.

/// What went wrong inside a kernel call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The shapes handed to an op do not fit together.
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    /// A hyper-parameter is out of range (zero stride, dropout probability of 1.5...).
    #[error("{op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
    /// Operands live on different devices or have different element types.
    #[error("{op}: operands disagree: {message}")]
    Mismatch { op: &'static str, message: String },
    /// The CPU or the operating system lacks an instruction set the op needs (bf16
    /// products without AMX or AVX512-BF16); the message names what is missing.
    #[error("{op}: {message}")]
    MissingCpuFeature { op: &'static str, message: String },
    /// The op has no kernel for this element type on this device (f64 on CUDA, bf16
    /// arithmetic on the CPU...).
    #[error("{op}: {dtype} tensors are not supported on {device}{}", unsupported_hint(*.dtype, *.device))]
    Unsupported {
        op: &'static str,
        dtype: DType,
        device: Device,
    },
    /// A CUDA device cannot be used here: no driver, no such device, NVRTC or cuBLAS
    /// missing. `reason` says which, without advice on what to run instead (that is the
    /// caller's to give).
    #[error("CUDA is not available: {reason}")]
    CudaUnavailable { reason: String },
    /// The CUDA driver, NVRTC or cuBLAS reported an error on a device that opened.
    #[error("CUDA: {0}")]
    Cuda(String),
}

fn unsupported_hint(dtype: DType, device: Device) -> &'static str {
    match (dtype, device) {
        (DType::F64, Device::Cuda(_)) => {
            " (the CUDA kernels compute in f32: convert with to_dtype(F32) first, or keep the tensor on the cpu)"
        }
        _ => "",
    }
}

use crate::{DType, Device};

/// Shorthand used by every kernel.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }

    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }

    pub fn missing_cpu_feature(op: &'static str, message: impl Into<String>) -> Self {
        Error::MissingCpuFeature {
            op,
            message: message.into(),
        }
    }

    pub fn unsupported(op: &'static str, dtype: DType, device: Device) -> Self {
        Error::Unsupported { op, dtype, device }
    }

    pub fn cuda_unavailable(reason: impl Into<String>) -> Self {
        Error::CudaUnavailable {
            reason: reason.into(),
        }
    }

    pub fn mismatch(op: &'static str, message: impl Into<String>) -> Self {
        Error::Mismatch {
            op,
            message: message.into(),
        }
    }
}

/// Formats a shape the way PyTorch prints it: `[32, 3, 32, 32]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}
