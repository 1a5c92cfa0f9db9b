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
    /// The CPU or the operating system lacks what the op needs (bf16 products without
    /// AMX or AVX512-BF16); the message names what is missing.
    #[error("{op}: {message}")]
    Unsupported { op: &'static str, message: String },
    /// The CUDA driver, NVRTC or cuBLAS reported an error.
    #[error("CUDA: {0}")]
    Cuda(String),
}

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

    pub fn unsupported(op: &'static str, message: impl Into<String>) -> Self {
        Error::Unsupported {
            op,
            message: message.into(),
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
