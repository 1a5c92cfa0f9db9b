//! The flat buffer behind every tensor, tagged with its device and element type.
//!
//! Shapes are not stored here: kernels receive them explicitly (in each op's geometry),
//! and the `autograd` crate keeps the shape beside the storage.

use crate::{DType, Device, Element, Error, Result};

/// A contiguous, row-major buffer of elements on one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Storage {
    /// A buffer of `len` zeros.
    pub fn zeros(len: usize, dtype: DType, device: Device) -> Result<Storage> {
        Self::full(len, 0.0, dtype, device)
    }

    /// A buffer of `len` copies of `value`.
    pub fn full(len: usize, value: f64, dtype: DType, device: Device) -> Result<Storage> {
        match (device, dtype) {
            (Device::Cpu, DType::F32) => Ok(Storage::F32(vec![value as f32; len])),
            (Device::Cpu, DType::F64) => Ok(Storage::F64(vec![value; len])),
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::F32(_) | Storage::F64(_) => Device::Cpu,
        }
    }

    /// A copy of this buffer on `device` (a cheap clone when it is already there).
    pub fn to_device(&self, device: Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(self.clone()),
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
            _ => Ok(self.clone()),
        }
    }

    /// Copies the values to the host as f32 (converting f64).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self {
            Storage::F32(v) => Ok(v.clone()),
            Storage::F64(v) => Ok(v.iter().map(|&x| x as f32).collect()),
        }
    }

    /// Copies the values to the host as f64 (exact for both dtypes).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match self {
            Storage::F32(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            Storage::F64(v) => Ok(v.clone()),
        }
    }

    /// Borrows the host buffer as `T`, or says which operand of `op` has the wrong type or device.
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
