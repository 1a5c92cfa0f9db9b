//! What a program above the kernels needs of a GPU: open it, read its name, choose whether
//! its matrix products may use TF32, wait for it. The launch machinery stays in `kernels`.
//!
//! ```
//! use autograd::{CudaDevice, Error};
//! match CudaDevice::open(0) {
//!     Ok(gpu) => println!("{} is {}", gpu.device(), gpu.name()),
//!     // No GPU here: `reason` says what is missing (driver, device, NVRTC or cuBLAS).
//!     Err(Error::CudaUnavailable { reason }) => println!("cpu only: {reason}"),
//!     Err(other) => panic!("{other}"),
//! }
//! ```

use std::sync::Arc;

use kernels::cuda::CudaBackend;

use crate::{Device, Result};

/// An opened CUDA device. Opening is done once per process and device (the driver,
/// NVRTC and cuBLAS are loaded on first use); later opens share it.
#[derive(Clone)]
pub struct CudaDevice {
    backend: Arc<CudaBackend>,
}

impl CudaDevice {
    /// Opens device `ordinal`, or says why it cannot be used
    /// ([`Error::CudaUnavailable`](crate::Error::CudaUnavailable)).
    pub fn open(ordinal: usize) -> Result<CudaDevice> {
        Ok(CudaDevice {
            backend: kernels::cuda::open(ordinal)?,
        })
    }

    /// For tests: device 0 with TF32 off, or why not. Where `REQUIRE_CUDA=1` (the GPU
    /// machine's scripts/gpu-check.sh) a missing device panics, naming `test`.
    pub fn open_for_test(test: &str) -> Result<CudaDevice> {
        Ok(CudaDevice {
            backend: kernels::cuda::open_for_test(test)?,
        })
    }

    /// For tests: [`CudaDevice::open_for_test`], or `None` after printing
    /// `SKIPPED: no CUDA device (<reason>) [<test>]`.
    pub fn open_or_skip(test: &str) -> Option<CudaDevice> {
        kernels::cuda::open_or_skip(test).map(|backend| CudaDevice { backend })
    }

    /// `Device::Cuda(ordinal)`, for placing tensors on it.
    pub fn device(&self) -> Device {
        Device::Cuda(self.backend.ordinal())
    }

    /// The device's name, e.g. `NVIDIA H200`.
    pub fn name(&self) -> &str {
        self.backend.name()
    }

    /// Lets cuBLAS use TF32 tensor cores for f32 products (about 3 significant digits per
    /// product, much faster); off by default, when results match the CPU's to f32 rounding.
    pub fn set_tf32(&self, enabled: bool) -> Result<()> {
        self.backend.set_tf32(enabled)
    }

    /// `(free, total)` bytes of device memory, as the driver reports them.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.backend
            .context()
            .mem_get_info()
            .map_err(|e| crate::Error::Cuda(format!("could not read the free memory: {e}")))
    }

    /// Waits until every kernel queued on the device has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.device(), self.name())
    }
}
