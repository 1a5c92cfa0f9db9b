//! Where a buffer lives.

/// A compute device. Dispatch is a plain `match` on this enum: no generics over backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory, kernels parallelised with rayon.
    Cpu,
    /// The CUDA device with this ordinal (`cuda:0` is the first GPU). Buffers there are
    /// f32 only; the backend is opened (driver, NVRTC and cuBLAS loaded) on first use.
    Cuda(usize),
}

impl Device {
    /// Whether this is a CUDA device.
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}
