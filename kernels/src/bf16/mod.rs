//! bf16 products with f32 accumulation on the CPU: Intel AMX, else AVX512-BF16.
//!
//! PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)` rounds the inputs of matrix
//! products and convolutions to bf16 (8 significant bits), multiplies them exactly and sums
//! the products in f32. These kernels do the same: they take f32 operands, round them to
//! bf16 (to nearest, ties to even) while packing them into the layouts the instructions
//! read, and return f32 results. A convolution's or linear layer's input and its output's
//! gradient may also be bf16 already (an activation stored under autocast, and the
//! gradient of one), packed as they are; a convolution can store its output as bf16, and
//! both store the input gradient in the input's dtype, bf16 rounded once from the f32 sums
//! (every gradient has its tensor's dtype, as in PyTorch; weight and bias gradients are f32).
//!
//! - [`gemm`]: `C (+)= A * B` for f32 matrices of any strides.
//! - `conv2d::forward_bf16` / `backward_bf16` and `linear::forward_bf16` /
//!   `backward_bf16` are built on the same micro-kernel (`conv.rs`, `conv3x3.rs`,
//!   `linear.rs` here).
//!
//! The instruction set is chosen at run time ([`Isa::best`]): AMX (`TDPBF16PS` on tiles,
//! Sapphire Rapids and later) when the CPU has it and Linux grants the tile state, else
//! AVX512-BF16 (`VDPBF16PS`), else an [`Error::MissingCpuFeature`](crate::Error::MissingCpuFeature)
//! naming what is missing. `KERNELS_BF16_ISA=avx512-bf16` caps the choice.
//!
//! Both instruction sets compute one operation, a 32x32 f32 block of `C` plus a list of
//! 32-deep products of bf16 operands laid out for AMX tiles (`microkernel.rs`); the GEMM and
//! the convolutions differ only in how they lay out memory and list the steps.
//!
//! Accuracy: each output is a sum of `K` exact products of bf16 values, accumulated in
//! f32, so it is within `K * 2^-23 * sum |a_k b_k|` of the exact sum of those products
//! (tested against f64 sums of the same rounded inputs in `tests.rs`).

mod amx;
mod avx512;
pub(crate) mod conv;
mod conv3x3;
mod conv3x3_lanes;
mod detect;
mod few_taps;
mod flat;
mod gemm;
mod lanes;
pub(crate) mod linear;
mod microkernel;
mod pack;
mod peak;
mod source;
mod stored;
#[cfg(test)]
mod tests;

pub use detect::{Isa, ISA_ENV};
pub use gemm::{gemm, gemm_with, MatMut, MatRef};
pub use peak::{instruction_peak, thread_cpu_time};

use crate::Result;

/// Proof that this process can run `isa` (and AVX512-BF16, which both instruction sets
/// imply and the packing code uses): only [`Cpu::new`] makes one, after the check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cpu {
    isa: Isa,
}

impl Cpu {
    pub fn new(isa: Isa) -> Result<Cpu> {
        isa.check()?;
        Ok(Cpu { isa })
    }

    pub fn best() -> Result<Cpu> {
        Cpu::new(Isa::best()?)
    }

    pub fn isa(self) -> Isa {
        self.isa
    }

    /// The per-thread state for running blocks on this thread.
    pub fn session(self) -> microkernel::Session {
        // SAFETY: a Cpu exists only once `isa.check()` succeeded.
        unsafe { microkernel::Session::start(self.isa) }
    }
}

// One range of images per rayon thread, as the f32 convolution splits its batch.
use crate::conv2d::cpu::{groups, split_groups};
