//! The arithmetic of the stack: f32/f64 buffers in NCHW layout, one folder per op.
//!
//! Each op folder holds the op's geometry and shape checks (`mod.rs`), its CPU code
//! (`cpu.rs`, or a `cpu/` folder whose `mod.rs` picks among several paths, as for
//! `conv2d`), its CUDA kernels (`<op>.cu`, launched by `cuda.rs`), and its tests
//! (`tests.rs`, sharing `test_util.rs`). The [`reference`] module is the notebook's
//! from-scratch NumPy code in plain loops, the oracle the fast kernels are tested against.
//!
//! Kernels take a [`Storage`] (a flat buffer on a [`Device`], holding one [`DType`]) plus
//! explicit shapes. Each op routes a call through the crate's one `dispatch!` macro: by
//! device, then (on the CPU) by element type; a pair an op has no kernel for is
//! [`Error::Unsupported`].

mod bf16_values;
mod columns;
mod device;
mod element;
mod error;
mod output;
mod simd;
#[macro_use]
mod storage;
#[cfg(test)]
mod test_util;

pub mod batch_norm;
pub mod bf16;
pub mod conv2d;
pub mod cross_entropy;
pub mod cuda;
pub mod dropout;
pub mod elementwise;
pub mod gelu;
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
pub use storage::{CpuStorage, Storage};

/// Below this many elements a rayon split costs more than it saves.
pub(crate) const PAR_MIN_LEN: usize = 1 << 14;
