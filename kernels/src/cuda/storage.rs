//! The device side of [`crate::Storage`]: a buffer in GPU memory, f32 or bf16, and the
//! backend that owns it.

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

use super::{Arg, CudaBackend, CudaBuffer, LaunchConfig};
use crate::{DType, Device, Error, Result, Storage};

/// An element type a device buffer holds: f32, which every kernel computes in, or bf16,
/// an activation (or its gradient) stored under autocast, which the kernels that take it
/// widen as they load and round once as they store. A device bf16 is held as its bits, a
/// `u16` (`half::bf16::to_bits`), as the `.cu` files declare it.
pub trait CudaElement:
    DeviceRepr + ValidAsZeroBits + Default + Clone + Copy + PartialEq + Send + Sync + 'static
{
    const DTYPE: DType;

    /// The `Storage` variant holding a device buffer of this type.
    fn into_storage(values: CudaStorage<Self>) -> Storage;

    /// Borrows an operand of `op` that must be stored as this type on `device`, or says
    /// what and where it is instead.
    fn operand<'a>(
        storage: &'a Storage,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<&'a CudaStorage<Self>>;
}

impl CudaElement for f32 {
    const DTYPE: DType = DType::F32;

    fn into_storage(values: CudaStorage<f32>) -> Storage {
        Storage::Cuda(values)
    }

    fn operand<'a>(
        storage: &'a Storage,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<&'a CudaStorage<f32>> {
        storage.cuda(op, operand, device)
    }
}

impl CudaElement for u16 {
    const DTYPE: DType = DType::BF16;

    fn into_storage(values: CudaStorage<u16>) -> Storage {
        Storage::CudaBf16(values)
    }

    fn operand<'a>(
        storage: &'a Storage,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<&'a CudaStorage<u16>> {
        storage.cuda_bf16(op, operand, device)
    }
}

/// Wraps a buffer that a kernel of `backend` has written as a `Storage::Cuda` (f32) or
/// `Storage::CudaBf16` (bf16 bits).
pub(crate) fn wrap<T: CudaElement>(backend: &Arc<CudaBackend>, buffer: CudaBuffer<T>) -> Storage {
    T::into_storage(CudaStorage::new(buffer, backend.clone()))
}

/// The launch most ops make: a new f32 buffer of `len` elements, written in full by one
/// launch of `kernel` (`(file, name)`) over `config`. `args` is given the new buffer's
/// pointer and returns the kernel's arguments in the order it declares them.
///
/// # Safety
///
/// As [`CudaBackend::launch`]; besides, the kernel must write all `len` elements of the
/// output, which starts with whatever the allocator's last user left there.
pub(crate) unsafe fn launch_into_new(
    gpu: &Arc<CudaBackend>,
    op: &'static str,
    kernel: (&'static str, &'static str),
    config: LaunchConfig,
    len: usize,
    args: impl FnOnce(Arg) -> Vec<Arg>,
) -> Result<Storage> {
    // SAFETY: the caller's contract, for an f32 output.
    unsafe { launch_into_new_of::<f32>(gpu, op, kernel, config, len, args) }
}

/// [`launch_into_new`] for an output of `T`: f32, or bf16 bits (a `bf16*` parameter).
///
/// # Safety
///
/// As [`launch_into_new`], the kernel's output parameter being a `T*`.
pub(crate) unsafe fn launch_into_new_of<T: CudaElement>(
    gpu: &Arc<CudaBackend>,
    op: &'static str,
    kernel: (&'static str, &'static str),
    config: LaunchConfig,
    len: usize,
    args: impl FnOnce(Arg) -> Vec<Arg>,
) -> Result<Storage> {
    let out = gpu.alloc::<T>(len)?;
    let args = args(Arg::ptr(&out, 0));
    // SAFETY: the caller vouches for the arguments and for the kernel writing `out`.
    unsafe { gpu.launch(op, kernel, config, &args)? };
    Ok(wrap(gpu, out))
}

/// The forward pass of an element-wise activation (ReLU, GELU): one launch of
/// `kernel(const T* x, T* y, unsigned long long n)` (`T` float, or bf16 under autocast),
/// which must write every `y[i]` from `x[i]` alone.
pub(crate) fn activation_forward<T: CudaElement>(
    op: &'static str,
    kernel: (&'static str, &'static str),
    x: &CudaStorage<T>,
) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    // SAFETY: the kernel declares (const T* x, T* y, unsigned long long n) and writes the
    // n elements of y from the n of x (the caller's contract).
    unsafe {
        launch_into_new_of::<T>(gpu, op, kernel, gpu.grid_stride_config(n), n, |y| {
            vec![x.arg(), y, Arg::U64(n as u64)]
        })
    }
}

/// The backward pass of an element-wise activation from its forward input: one launch of
/// `kernel(const T* x, const T* grad_out, T* grad_in, unsigned long long n)`, which must
/// write every `grad_in[i]` from `x[i]` and `grad_out[i]`. The gradient has the
/// activation's dtype (as under PyTorch's autocast): another `grad_out` is an error naming
/// it.
pub(crate) fn activation_backward<T: CudaElement>(
    op: &'static str,
    kernel: (&'static str, &'static str),
    x: &CudaStorage<T>,
    grad_out: &Storage,
) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    let grad_out = T::operand(grad_out, op, "grad_out", x.device())?;
    grad_out.check_len(op, "grad_out", n)?;
    // SAFETY: the kernel declares (const T* x, const T* grad_out, T* grad_in,
    // unsigned long long n) and writes the n elements of grad_in; grad_out holds n.
    unsafe {
        launch_into_new_of::<T>(gpu, op, kernel, gpu.grid_stride_config(n), n, |grad_in| {
            vec![x.arg(), grad_out.arg(), grad_in, Arg::U64(n as u64)]
        })
    }
}

/// A buffer on one CUDA device: f32 (the payload of `Storage::Cuda`) or bf16 bits (of
/// `Storage::CudaBf16`).
///
/// Cloning is cheap: clones share the device buffer, and a clone that is about to be
/// written in place ([`CudaStorage::buffer_mut`]: optimizer steps, running statistics,
/// gradient accumulation) first gets a copy of its own. So clones behave like the deep
/// copies a CPU `Vec` makes, without copying what is only ever read (a reshaped view,
/// a gradient handed on unchanged).
pub struct CudaStorage<T: CudaElement = f32> {
    buffer: Arc<CudaBuffer<T>>,
    backend: Arc<CudaBackend>,
}

// By hand: a derive would ask for `T: Clone` on the buffer, which an Arc does not need.
impl<T: CudaElement> Clone for CudaStorage<T> {
    fn clone(&self) -> Self {
        CudaStorage {
            buffer: self.buffer.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl CudaStorage<f32> {
    /// `len` copies of `value`.
    pub fn full(backend: &Arc<CudaBackend>, len: usize, value: f32) -> Result<CudaStorage> {
        if value.to_bits() == 0 {
            return CudaStorage::zeros(backend, len);
        }
        let buffer = backend.alloc::<f32>(len)?;
        if len > 0 {
            // SAFETY: elementwise_fill(float* out, float value, unsigned long long n) writes
            // exactly the n elements of `buffer`.
            unsafe {
                backend.launch(
                    "full",
                    ("elementwise.cu", "elementwise_fill"),
                    backend.grid_stride_config(len),
                    &[Arg::ptr(&buffer, 0), Arg::F32(value), Arg::U64(len as u64)],
                )?;
            }
        }
        Ok(CudaStorage::new(buffer, backend.clone()))
    }

    /// The values rounded to bf16 (to nearest, ties to even), in a new buffer.
    pub fn to_bf16(&self) -> Result<CudaStorage<u16>> {
        self.convert(("elementwise.cu", "elementwise_to_bf16"))
    }
}

impl CudaStorage<u16> {
    /// The values widened to f32 (exact), in a new buffer.
    pub fn to_f32(&self) -> Result<CudaStorage<f32>> {
        self.convert(("elementwise.cu", "elementwise_from_bf16"))
    }
}

impl<T: CudaElement> CudaStorage<T> {
    /// `len` zeros (+0.0 in f32 and in bf16 alike: all-zero bits, a memset, no kernel).
    pub fn zeros(backend: &Arc<CudaBackend>, len: usize) -> Result<CudaStorage<T>> {
        Ok(CudaStorage::new(backend.alloc_zeros(len)?, backend.clone()))
    }

    /// One launch of `kernel(const T* x, U* y, unsigned long long n)`, which writes each
    /// `y[i]` from `x[i]`, into a new buffer of `U`.
    fn convert<U: CudaElement>(
        &self,
        kernel: (&'static str, &'static str),
    ) -> Result<CudaStorage<U>> {
        let (gpu, n) = (self.backend(), self.len());
        let out = gpu.alloc::<U>(n)?;
        if n > 0 {
            // SAFETY: the kernel reads the n elements of self and writes the n of out.
            unsafe {
                gpu.launch(
                    "to_dtype",
                    kernel,
                    gpu.grid_stride_config(n),
                    &[self.arg(), Arg::ptr(&out, 0), Arg::U64(n as u64)],
                )?;
            }
        }
        Ok(CudaStorage::new(out, gpu.clone()))
    }

    /// Wraps a buffer allocated by `backend`.
    pub fn new(buffer: CudaBuffer<T>, backend: Arc<CudaBackend>) -> CudaStorage<T> {
        CudaStorage {
            buffer: Arc::new(buffer),
            backend,
        }
    }

    /// Copies host values to the device.
    pub fn from_host(values: &[T], backend: &Arc<CudaBackend>) -> Result<CudaStorage<T>> {
        Ok(CudaStorage::new(backend.htod(values)?, backend.clone()))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Checks that the buffer holds exactly `expected` elements.
    pub(crate) fn check_len(&self, op: &'static str, operand: &str, expected: usize) -> Result<()> {
        if self.len() == expected {
            Ok(())
        } else {
            Err(crate::Error::shape(
                op,
                format!("{operand} has {} elements, expected {expected}", self.len()),
            ))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type: f32, or bf16 for an activation stored under autocast.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// `Device::Cuda(ordinal)`.
    pub fn device(&self) -> Device {
        Device::Cuda(self.backend.ordinal())
    }

    /// The backend every kernel on this buffer is launched on.
    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }

    /// The device buffer, for reading.
    pub fn buffer(&self) -> &CudaBuffer<T> {
        &self.buffer
    }

    /// The device buffer, for writing in place; copies it first when a clone shares it.
    pub fn buffer_mut(&mut self) -> Result<&mut CudaBuffer<T>> {
        if Arc::get_mut(&mut self.buffer).is_none() {
            self.buffer = Arc::new(self.backend.dtod(&self.buffer)?);
        }
        Ok(Arc::get_mut(&mut self.buffer).expect("a fresh copy has no other owner"))
    }

    /// A pointer to the first element, as a kernel argument.
    pub fn arg(&self) -> Arg {
        Arg::ptr(&self.buffer, 0)
    }

    /// Copies the values to the host (waiting for the kernels that write them).
    pub fn to_host(&self) -> Result<Vec<T>> {
        self.backend.dtoh(&self.buffer)
    }
}

impl<T: CudaElement> std::fmt::Debug for CudaStorage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({}, len {} on {})",
            self.dtype(),
            self.len(),
            self.device()
        )
    }
}

/// Equal when on the same device with the same values. Comparing copies both buffers to
/// the host (a device that fails to copy compares unequal): meant for tests.
impl<T: CudaElement> PartialEq for CudaStorage<T> {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.buffer, &other.buffer) {
            return true;
        }
        if self.device() != other.device() || self.len() != other.len() {
            return false;
        }
        match (self.to_host(), other.to_host()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// A device operand that autocast lets be f32 or bf16: an activation, or its gradient.
#[derive(Clone, Copy)]
pub(crate) enum DeviceValues<'a> {
    F32(&'a CudaStorage),
    Bf16(&'a CudaStorage<u16>),
}

impl<'a> DeviceValues<'a> {
    /// The operand `operand` of `op`, which must live on `device` as f32 or bf16.
    pub(crate) fn of(
        storage: &'a Storage,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<DeviceValues<'a>> {
        match storage {
            Storage::Cuda(c) if c.device() == device => Ok(DeviceValues::F32(c)),
            Storage::CudaBf16(c) if c.device() == device => Ok(DeviceValues::Bf16(c)),
            other => Err(Error::mismatch(
                op,
                format!(
                    "{operand} is {} on {}, expected f32 or bf16 on {device}",
                    other.dtype(),
                    other.device()
                ),
            )),
        }
    }

    pub(crate) fn dtype(self) -> DType {
        match self {
            DeviceValues::F32(_) => DType::F32,
            DeviceValues::Bf16(_) => DType::BF16,
        }
    }

    pub(crate) fn backend(self) -> &'a Arc<CudaBackend> {
        match self {
            DeviceValues::F32(c) => c.backend(),
            DeviceValues::Bf16(c) => c.backend(),
        }
    }

    /// A pointer to element `offset`, as a kernel argument.
    pub(crate) fn arg_at(self, offset: usize) -> Arg {
        match self {
            DeviceValues::F32(c) => Arg::ptr(c.buffer(), offset),
            DeviceValues::Bf16(c) => Arg::ptr(c.buffer(), offset),
        }
    }

    /// The values in bf16, for a bf16 product: a bf16 operand as it is (shared), an f32 one
    /// rounded to nearest even into a new buffer.
    pub(crate) fn to_bf16(self) -> Result<CudaStorage<u16>> {
        match self {
            DeviceValues::F32(c) => c.to_bf16(),
            DeviceValues::Bf16(c) => Ok(c.clone()),
        }
    }
}
