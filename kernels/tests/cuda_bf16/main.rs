//! Autocast's bf16 on a CUDA device, in one test executable (the GPU bundle carries it):
//!
//! - `products`: convolutions and linear layers (cuBLAS's bf16 products summed in f32)
//!   against f64 on the bf16-rounded operands; the same checks run on the CPU's bf16
//!   kernels wherever this CPU has them, to show the bounds hold for kernels that run.
//! - `layers`: GELU, ReLU, max pooling and batch norm on bf16 device buffers against
//!   their host bf16 kernels, and the errors a wrong operand gets.
//!
//! Each GPU test prints `SKIPPED: no CUDA device (<reason>)` and returns where none opens
//! (with `REQUIRE_CUDA=1`, as `scripts/gpu-check.sh` sets, a missing device fails). The
//! kernels' arithmetic is checked without a GPU by the emulated tests
//! (`kernels/src/cuda/emulated_bf16*_tests.rs`).

mod layers;
mod products;
