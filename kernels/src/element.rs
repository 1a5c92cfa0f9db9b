//! The element types: f32 for training, f64 for checking, bf16 for storing.
//!
//! CPU kernels and the reference are written once, generic over [`Element`] (f32 and f64),
//! so the gradient checks run the very code that trains, only in double precision.

use crate::storage::{CpuStorage, Storage};

/// The runtime tag of an element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    /// bfloat16: f32's exponent range with 8 bits of mantissa.
    BF16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
        }
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::BF16 => 2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A floating-point type a CPU kernel can run on.
pub trait Element:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::fmt::Debug
    + Default
    + Send
    + Sync
    + 'static
{
    const DTYPE: DType;

    /// Converts a literal or hyper-parameter; exact for every value we use.
    fn of(value: f64) -> Self;

    /// Widens to f64 (for reporting and scalar reads).
    fn to_f64_lossy(self) -> f64;

    /// Borrows the host buffer of `storage` if it holds this element type on the CPU.
    fn host_slice(storage: &Storage) -> Option<&[Self]>;

    /// Mutably borrows the host buffer of `storage` if it holds this element type on the CPU.
    fn host_slice_mut(storage: &mut Storage) -> Option<&mut [Self]>;

    /// Wraps a host buffer of this element type.
    fn into_storage(values: Vec<Self>) -> Storage;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;

    fn of(value: f64) -> Self {
        value as f32
    }

    fn to_f64_lossy(self) -> f64 {
        self as f64
    }

    fn host_slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::Cpu(CpuStorage::F32(values)) => Some(values),
            _ => None,
        }
    }

    fn host_slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::Cpu(CpuStorage::F32(values)) => Some(values),
            _ => None,
        }
    }

    fn into_storage(values: Vec<Self>) -> Storage {
        Storage::Cpu(CpuStorage::F32(values))
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;

    fn of(value: f64) -> Self {
        value
    }

    fn to_f64_lossy(self) -> f64 {
        self
    }

    fn host_slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::Cpu(CpuStorage::F64(values)) => Some(values),
            _ => None,
        }
    }

    fn host_slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::Cpu(CpuStorage::F64(values)) => Some(values),
            _ => None,
        }
    }

    fn into_storage(values: Vec<Self>) -> Storage {
        Storage::Cpu(CpuStorage::F64(values))
    }
}

/// `xs` as f32, when `T` is f32: lets a generic kernel hand its f32 case to code written
/// for f32 alone (the AVX-512 products).
pub(crate) fn as_f32<T: 'static>(xs: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (same type id), so the slice is reinterpreted as itself.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &*(xs as *const [T] as *const [f32]) })
}

/// `xs` as mutable f32, when `T` is f32.
pub(crate) fn as_f32_mut<T: 'static>(xs: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as in `as_f32`.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &mut *(xs as *mut [T] as *mut [f32]) })
}
