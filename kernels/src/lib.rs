//! The arithmetic of the stack: f32/f64 buffers in NCHW layout, one folder per op.
//!
//! Each op folder holds the op's geometry and shape checks (`mod.rs`), its CPU code
//! (`cpu.rs`), and its tests (`tests.rs`). The [`reference`] module is the notebook's
//! from-scratch NumPy code in plain loops, the oracle the fast kernels are tested against.
//!
//! Kernels take a [`Storage`] (a flat buffer tagged with device and dtype) plus explicit
//! shapes, and dispatch with a `match` on the storage variant.

mod columns;
mod device;
mod element;
mod error;
mod output;
mod simd;
mod storage;

pub mod batch_norm;
pub mod bf16;
pub mod conv2d;
pub mod cross_entropy;
pub mod cuda;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod log_softmax;
pub mod matmul;
pub mod optim;
pub mod pool2d;
pub mod reduce;
pub mod reference;
pub mod relu;

pub use device::Device;
pub use element::{DType, Element};
pub use error::{fmt_shape, Error, Result};
pub use storage::Storage;

/// Below this many elements a rayon split costs more than it saves.
pub(crate) const PAR_MIN_LEN: usize = 1 << 14;
