//! The flat buffer behind every tensor: where it lives ([`Device`]) and what it holds
//! ([`DType`]), as two separate things.
//!
//! `Storage` says the device (`Cpu`, or `Cuda` / `CudaBf16`: a device holds f32, or bf16
//! under autocast); the host buffer [`CpuStorage`] says the element type. Shapes are not
//! stored here: kernels receive them explicitly (in each op's geometry), and the `autograd`
//! crate keeps the shape beside the storage.
//!
//! Every op routes a call to its kernel through one macro, `dispatch!` (below):
//! by the device of its first operand, then, on the CPU, by the element type. The CPU
//! kernels are written once, generic over [`Element`] (f32 and f64); an element type or
//! device an op has no kernel for is one [`Error::Unsupported`] naming the op, the dtype and
//! the device. Adding a dtype means a variant here and in [`DType`], and an arm in the ops
//! that implement it; every other op refuses it through the same error.
//!
//! ```
//! use kernels::{DType, Device, Storage};
//! let x = Storage::f32(vec![1.0, 2.0]);
//! assert_eq!((x.dtype(), x.device()), (DType::F32, Device::Cpu));
//! assert_eq!(x.to_dtype(DType::BF16)?.to_vec_f32()?, vec![1.0, 2.0]);
//! # Ok::<(), kernels::Error>(())
//! ```

use half::bf16;

use crate::cuda::{self, CudaStorage};
use crate::{DType, Device, Element, Error, Result};

/// A contiguous, row-major buffer of elements on one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// GPU memory, f32: what every CUDA kernel computes in.
    Cuda(CudaStorage),
    /// GPU memory, bf16: activations and their gradients stored under autocast, read and
    /// written by the kernels between two convolutions, which compute in f32. The device
    /// holds each value's bits (`bf16::to_bits`).
    CudaBf16(CudaStorage<u16>),
}

/// A host buffer, one variant per element type.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Activations stored under autocast: read and written by the ops between two
    /// convolutions (max pooling, batch norm, GELU, ReLU), which compute in f32.
    BF16(Vec<bf16>),
}

/// Routes an op to its kernel, the one place that does so: by the device of `$operand`,
/// then on the CPU by its element type, binding `$T` to `f32` or `f64` for the generic CPU
/// kernel. A host bf16 operand (an activation stored under autocast) goes to the `bf16`
/// arm where the op has one, and is [`Error::Unsupported`] where it has none; a device
/// bf16 operand likewise goes to the `cuda_bf16` arm.
///
/// ```ignore
/// dispatch!(OP, x, cpu::<T> => forward_cpu::<T>(x), cuda(x) => cuda::forward(x))
/// dispatch!(OP, x, cpu::<T> => forward_cpu::<T>(x), bf16 => forward_bf16(x), cuda(x) => cuda::forward(x))
/// dispatch!(OP, x, cpu::<T> => .., bf16 => .., cuda(x) => cuda::forward(x), cuda_bf16(x) => cuda::forward(x))
/// ```
macro_rules! dispatch {
    ($op:expr, $operand:ident, cpu::<$T:ident> => $cpu:expr, cuda($gpu:ident) => $cuda:expr $(,)?) => {
        dispatch!($op, $operand, cpu::<$T> => $cpu, bf16 => Err($crate::Error::unsupported($op, $crate::DType::BF16, $crate::Device::Cpu)), cuda($gpu) => $cuda)
    };
    ($op:expr, $operand:ident, cpu::<$T:ident> => $cpu:expr, bf16 => $bf16:expr, cuda($gpu:ident) => $cuda:expr $(,)?) => {
        dispatch!($op, $operand, cpu::<$T> => $cpu, bf16 => $bf16, cuda($gpu) => $cuda, cuda_bf16(_unused) => Err($crate::Error::unsupported($op, $crate::DType::BF16, $operand.device())))
    };
    ($op:expr, $operand:ident, cpu::<$T:ident> => $cpu:expr, bf16 => $bf16:expr, cuda($gpu:ident) => $cuda:expr, cuda_bf16($gpu_bf16:ident) => $cuda_bf16:expr $(,)?) => {
        match $operand {
            $crate::Storage::Cpu(_) => match $operand.dtype() {
                $crate::DType::F32 => {
                    type $T = f32;
                    $cpu
                }
                $crate::DType::F64 => {
                    type $T = f64;
                    $cpu
                }
                $crate::DType::BF16 => $bf16,
            },
            $crate::Storage::Cuda($gpu) => $cuda,
            $crate::Storage::CudaBf16($gpu_bf16) => $cuda_bf16,
        }
    };
}

impl CpuStorage {
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    /// `len` copies of `value`, rounded to `dtype`.
    fn full(len: usize, value: f64, dtype: DType) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; len]),
            DType::F64 => CpuStorage::F64(vec![value; len]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::from_f64(value); len]),
        }
    }

    /// The values as f32: exact from bf16, rounded from f64.
    fn to_vec_f32(&self) -> Vec<f32> {
        match self {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            CpuStorage::BF16(v) => v.iter().map(|&x| x.to_f32()).collect(),
        }
    }

    /// The values as f64, exact for every dtype.
    fn to_vec_f64(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            CpuStorage::F64(v) => v.clone(),
            CpuStorage::BF16(v) => v.iter().map(|&x| x.to_f64()).collect(),
        }
    }

    /// A copy converted to `dtype` (round to nearest even when narrowing).
    fn to_dtype(&self, dtype: DType) -> CpuStorage {
        match (self, dtype) {
            (_, d) if d == self.dtype() => self.clone(),
            (_, DType::F32) => CpuStorage::F32(self.to_vec_f32()),
            (_, DType::F64) => CpuStorage::F64(self.to_vec_f64()),
            (CpuStorage::F64(v), DType::BF16) => {
                CpuStorage::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect())
            }
            (_, DType::BF16) => {
                CpuStorage::BF16(self.to_vec_f32().into_iter().map(bf16::from_f32).collect())
            }
        }
    }
}

impl Storage {
    /// Host f32 values.
    pub fn f32(values: Vec<f32>) -> Storage {
        Storage::Cpu(CpuStorage::F32(values))
    }

    /// Host f64 values.
    pub fn f64(values: Vec<f64>) -> Storage {
        Storage::Cpu(CpuStorage::F64(values))
    }

    /// Host bf16 values.
    pub fn bf16(values: Vec<bf16>) -> Storage {
        Storage::Cpu(CpuStorage::BF16(values))
    }

    /// A buffer of `len` zeros.
    pub fn zeros(len: usize, dtype: DType, device: Device) -> Result<Storage> {
        Self::full(len, 0.0, dtype, device)
    }

    /// A buffer of `len` copies of `value`.
    pub fn full(len: usize, value: f64, dtype: DType, device: Device) -> Result<Storage> {
        match (device, dtype) {
            (Device::Cpu, _) => Ok(Storage::Cpu(CpuStorage::full(len, value, dtype))),
            (Device::Cuda(ordinal), DType::F32) => Ok(Storage::Cuda(CudaStorage::full(
                &cuda::open(ordinal)?,
                len,
                value as f32,
            )?)),
            // +0.0 is all-zero bits in bf16 too: no f32 buffer to fill and convert.
            (Device::Cuda(ordinal), DType::BF16) if value.to_bits() == 0 => Ok(Storage::CudaBf16(
                CudaStorage::zeros(&cuda::open(ordinal)?, len)?,
            )),
            (Device::Cuda(_), DType::BF16) => {
                Self::full(len, value, DType::F32, device)?.to_dtype(DType::BF16)
            }
            (Device::Cuda(_), _) => Err(Error::unsupported("full", dtype, device)),
        }
    }

    /// Wraps host values, then moves them to `device`.
    pub fn from_host<T: Element>(values: Vec<T>, device: Device) -> Result<Storage> {
        T::into_storage(values).to_device(device)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(host) => host.len(),
            Storage::Cuda(c) => c.len(),
            Storage::CudaBf16(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(host) => host.dtype(),
            Storage::Cuda(c) => c.dtype(),
            Storage::CudaBf16(c) => c.dtype(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => c.device(),
            Storage::CudaBf16(c) => c.device(),
        }
    }

    /// A copy of this buffer on `device` (a cheap clone when it is already there).
    /// Moving to a CUDA device opens it on first use; f32 and bf16 buffers can go there.
    pub fn to_device(&self, device: Device) -> Result<Storage> {
        if self.device() == device {
            return Ok(self.clone());
        }
        match (self, device) {
            (Storage::Cuda(c), _) => Storage::f32(c.to_host()?).to_device(device),
            (Storage::CudaBf16(c), _) => {
                let bits = c.to_host()?;
                Storage::bf16(bits.into_iter().map(bf16::from_bits).collect()).to_device(device)
            }
            (Storage::Cpu(CpuStorage::F32(v)), Device::Cuda(ordinal)) => Ok(Storage::Cuda(
                CudaStorage::from_host(v, &cuda::open(ordinal)?)?,
            )),
            (Storage::Cpu(CpuStorage::BF16(v)), Device::Cuda(ordinal)) => {
                let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
                Ok(Storage::CudaBf16(CudaStorage::from_host(
                    &bits,
                    &cuda::open(ordinal)?,
                )?))
            }
            (Storage::Cpu(host), _) => Err(Error::unsupported("to_device", host.dtype(), device)),
        }
    }

    /// A copy with elements converted to `dtype`, on the same device. To bf16 rounds each
    /// value to nearest, ties to even (`half::bf16::from_f32`'s bits, on either device).
    pub fn to_dtype(&self, dtype: DType) -> Result<Storage> {
        match (self, dtype) {
            (Storage::Cpu(host), _) => Ok(Storage::Cpu(host.to_dtype(dtype))),
            (Storage::Cuda(_), DType::F32) | (Storage::CudaBf16(_), DType::BF16) => {
                Ok(self.clone())
            }
            (Storage::Cuda(c), DType::BF16) => Ok(Storage::CudaBf16(c.to_bf16()?)),
            (Storage::CudaBf16(c), DType::F32) => Ok(Storage::Cuda(c.to_f32()?)),
            (_, DType::F64) => Err(Error::unsupported("to_dtype", dtype, self.device())),
        }
    }

    /// Copies the values to the host as f32 (rounding f64).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(host) => Ok(host.to_vec_f32()),
            Storage::Cuda(c) => c.to_host(),
            Storage::CudaBf16(c) => Ok(c.to_host()?.into_iter().map(bf16_bits_to_f32).collect()),
        }
    }

    /// Copies the values to the host as f64 (exact for every dtype).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match self {
            Storage::Cpu(host) => Ok(host.to_vec_f64()),
            Storage::Cuda(c) => Ok(c.to_host()?.into_iter().map(f64::from).collect()),
            Storage::CudaBf16(c) => Ok(c
                .to_host()?
                .into_iter()
                .map(|bits| f64::from(bf16_bits_to_f32(bits)))
                .collect()),
        }
    }

    /// Borrows the host buffer as `T`, or says which operand of `op` has the wrong type or
    /// device (a CUDA buffer is never borrowed from the host: that is a Mismatch).
    pub fn host<T: Element>(&self, op: &'static str, operand: &str) -> Result<&[T]> {
        let found = (self.dtype(), self.device());
        T::host_slice(self).ok_or_else(|| wrong_operand::<T>(op, operand, found))
    }

    /// Borrows a host bf16 buffer (activations stored under autocast), or says which
    /// operand of `op` has the wrong type or device.
    pub fn host_bf16(&self, op: &'static str, operand: &str) -> Result<&[bf16]> {
        let found = (self.dtype(), self.device());
        match self {
            Storage::Cpu(CpuStorage::BF16(values)) => Ok(values),
            _ => Err(wrong_dtype(op, operand, found, DType::BF16)),
        }
    }

    /// Mutable [`Storage::host_bf16`], for bf16 operands an op updates in place.
    pub fn host_bf16_mut(&mut self, op: &'static str, operand: &str) -> Result<&mut [bf16]> {
        let found = (self.dtype(), self.device());
        match self {
            Storage::Cpu(CpuStorage::BF16(values)) => Ok(values),
            _ => Err(wrong_dtype(op, operand, found, DType::BF16)),
        }
    }

    /// Borrows the device bf16 buffer of an operand of `op` that must live on `device`, or
    /// says what and where it is instead.
    pub fn cuda_bf16(
        &self,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<&CudaStorage<u16>> {
        match self {
            Storage::CudaBf16(c) if c.device() == device => Ok(c),
            _ => Err(self.not_on_as(op, operand, device, DType::BF16)),
        }
    }

    /// Mutably borrows the host buffer as `T`, or says which operand of `op` is wrong.
    pub fn host_mut<T: Element>(&mut self, op: &'static str, operand: &str) -> Result<&mut [T]> {
        let found = (self.dtype(), self.device());
        T::host_slice_mut(self).ok_or_else(|| wrong_operand::<T>(op, operand, found))
    }

    /// Borrows the device buffer of an operand of `op` that must live on `device` (the
    /// device of the op's first operand), or says where it is instead.
    pub fn cuda(&self, op: &'static str, operand: &str, device: Device) -> Result<&CudaStorage> {
        match self {
            Storage::Cuda(c) if c.device() == device => Ok(c),
            _ => Err(self.not_on(op, operand, device)),
        }
    }

    /// Mutable [`Storage::cuda`], for operands an op updates in place.
    pub fn cuda_mut(
        &mut self,
        op: &'static str,
        operand: &str,
        device: Device,
    ) -> Result<&mut CudaStorage> {
        if self.device() != device {
            return Err(self.not_on(op, operand, device));
        }
        match self {
            Storage::Cuda(c) => Ok(c),
            other => Err(other.not_on(op, operand, device)),
        }
    }

    fn not_on(&self, op: &'static str, operand: &str, device: Device) -> Error {
        self.not_on_as(op, operand, device, DType::F32)
    }

    fn not_on_as(&self, op: &'static str, operand: &str, device: Device, dtype: DType) -> Error {
        Error::mismatch(
            op,
            format!(
                "{operand} is {} on {}, expected {dtype} on {device}",
                self.dtype(),
                self.device()
            ),
        )
    }

    /// Checks that the buffer holds exactly `expected` elements.
    pub fn expect_len(&self, op: &'static str, operand: &str, expected: usize) -> Result<()> {
        if self.len() == expected {
            Ok(())
        } else {
            Err(Error::shape(
                op,
                format!("{operand} has {} elements, expected {expected}", self.len()),
            ))
        }
    }
}

/// The value of a bf16 held as its bits (exact).
fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

fn wrong_operand<T: Element>(op: &'static str, operand: &str, found: (DType, Device)) -> Error {
    wrong_dtype(op, operand, found, T::DTYPE)
}

fn wrong_dtype(
    op: &'static str,
    operand: &str,
    (dtype, device): (DType, Device),
    expected: DType,
) -> Error {
    Error::mismatch(
        op,
        format!("{operand} is {dtype} on {device}, expected {expected} on cpu"),
    )
}
