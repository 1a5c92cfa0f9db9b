//! The flat buffer behind every tensor, tagged with its device and element type.
//!
//! Shapes are not stored here: kernels receive them explicitly (in each op's geometry),
//! and the `autograd` crate keeps the shape beside the storage.

use crate::cuda::{self, CudaStorage};
use crate::{DType, Device, Element, Error, Result};

/// A contiguous, row-major buffer of elements on one device.
///
/// CUDA buffers are f32 only: the GPU trains in single precision, and the f64 path (the
/// gradient checks) stays on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Cuda(CudaStorage),
}

/// The error for an f64 buffer asked of a CUDA device.
fn no_f64_on_cuda(op: &'static str, device: Device) -> Error {
    Error::invalid(
        op,
        format!(
            "f64 is not supported on {device}: the CUDA kernels compute in f32 \
             (convert with to_dtype(F32) first, or use --device cpu)"
        ),
    )
}

impl Storage {
    /// Host f32 values.
    pub fn f32(values: Vec<f32>) -> Storage {
        Storage::F32(values)
    }

    /// Host f64 values.
    pub fn f64(values: Vec<f64>) -> Storage {
        Storage::F64(values)
    }

    /// A buffer of `len` zeros.
    pub fn zeros(len: usize, dtype: DType, device: Device) -> Result<Storage> {
        Self::full(len, 0.0, dtype, device)
    }

    /// A buffer of `len` copies of `value`.
    pub fn full(len: usize, value: f64, dtype: DType, device: Device) -> Result<Storage> {
        match (device, dtype) {
            (Device::Cpu, DType::F32) => Ok(Storage::F32(vec![value as f32; len])),
            (Device::Cpu, DType::F64) => Ok(Storage::F64(vec![value; len])),
            (Device::Cuda(ordinal), DType::F32) => Ok(Storage::Cuda(CudaStorage::full(
                &cuda::open(ordinal)?,
                len,
                value as f32,
            )?)),
            (Device::Cuda(_), DType::F64) => Err(no_f64_on_cuda("full", device)),
        }
    }

    /// Wraps host values, then moves them to `device`.
    pub fn from_host<T: Element>(values: Vec<T>, device: Device) -> Result<Storage> {
        T::into_storage(values).to_device(device)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::Cuda(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) | Storage::Cuda(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::F32(_) | Storage::F64(_) => Device::Cpu,
            Storage::Cuda(c) => c.device(),
        }
    }

    /// A copy of this buffer on `device` (a cheap clone when it is already there).
    /// Moving to a CUDA device opens it on first use, and fails for f64 buffers.
    pub fn to_device(&self, device: Device) -> Result<Storage> {
        if self.device() == device {
            return Ok(self.clone());
        }
        match (self, device) {
            (Storage::Cuda(c), _) => Storage::F32(c.to_host()?).to_device(device),
            (Storage::F32(v), Device::Cuda(ordinal)) => Ok(Storage::Cuda(CudaStorage::from_host(
                v,
                &cuda::open(ordinal)?,
            )?)),
            (Storage::F64(_), Device::Cuda(_)) => Err(no_f64_on_cuda("to_device", device)),
            // Both on the host: handled by the same-device case above.
            (Storage::F32(_) | Storage::F64(_), Device::Cpu) => Ok(self.clone()),
        }
    }

    /// A copy with elements converted to `dtype`, on the same device.
    pub fn to_dtype(&self, dtype: DType) -> Result<Storage> {
        match (self, dtype) {
            (Storage::F32(v), DType::F64) => {
                Ok(Storage::F64(v.iter().map(|&x| x as f64).collect()))
            }
            (Storage::F64(v), DType::F32) => {
                Ok(Storage::F32(v.iter().map(|&x| x as f32).collect()))
            }
            (Storage::Cuda(_), DType::F64) => Err(no_f64_on_cuda("to_dtype", self.device())),
            _ => Ok(self.clone()),
        }
    }

    /// Copies the values to the host as f32 (converting f64).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self {
            Storage::F32(v) => Ok(v.clone()),
            Storage::F64(v) => Ok(v.iter().map(|&x| x as f32).collect()),
            Storage::Cuda(c) => c.to_host(),
        }
    }

    /// Copies the values to the host as f64 (exact for both dtypes).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match self {
            Storage::F32(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            Storage::F64(v) => Ok(v.clone()),
            Storage::Cuda(c) => Ok(c.to_host()?.into_iter().map(f64::from).collect()),
        }
    }

    /// Borrows the host buffer as `T`, or says which operand of `op` has the wrong type or
    /// device (a CUDA buffer is never borrowed from the host: that is a Mismatch).
    pub fn host<T: Element>(&self, op: &'static str, operand: &str) -> Result<&[T]> {
        let (dtype, device) = (self.dtype(), self.device());
        T::host_slice(self).ok_or_else(|| {
            Error::mismatch(
                op,
                format!(
                    "{operand} is {dtype} on {device}, expected {} on cpu",
                    T::DTYPE
                ),
            )
        })
    }

    /// Mutably borrows the host buffer as `T`, or says which operand of `op` is wrong.
    pub fn host_mut<T: Element>(&mut self, op: &'static str, operand: &str) -> Result<&mut [T]> {
        let (dtype, device) = (self.dtype(), self.device());
        T::host_slice_mut(self).ok_or_else(|| {
            Error::mismatch(
                op,
                format!(
                    "{operand} is {dtype} on {device}, expected {} on cpu",
                    T::DTYPE
                ),
            )
        })
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
        Error::mismatch(
            op,
            format!(
                "{operand} is {} on {}, expected f32 on {device}",
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
