//! Element-wise arithmetic on the GPU: one grid-stride launch of elementwise.cu per call.

use crate::cuda::{launch_into_new, Arg, CudaElement, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "elementwise.cu";

/// `out = a (op) b` with the two-input kernel `kernel` (`elementwise_add` or `_mul`).
pub(super) fn binary(
    op: &'static str,
    kernel: &'static str,
    a: &CudaStorage,
    b: &Storage,
) -> Result<Storage> {
    let (gpu, n) = (a.backend(), a.len());
    let b = b.cuda(op, "rhs", a.device())?;
    // SAFETY: elementwise_add/_mul(const float* a, const float* b, float* out,
    // unsigned long long n) writes the n elements of out; the caller checked that a and b
    // have n elements.
    unsafe {
        launch_into_new(
            gpu,
            op,
            (FILE, kernel),
            gpu.grid_stride_config(n),
            n,
            |out| vec![a.arg(), b.arg(), out, Arg::U64(n as u64)],
        )
    }
}

/// `out = a * factor`, the factor rounded to f32 first as the CPU code does.
pub(super) fn scale(op: &'static str, a: &CudaStorage, factor: f64) -> Result<Storage> {
    let (gpu, n) = (a.backend(), a.len());
    // SAFETY: elementwise_scale(const float* a, float factor, float* out,
    // unsigned long long n) writes the n elements of out from the n of a.
    unsafe {
        launch_into_new(
            gpu,
            op,
            (FILE, "elementwise_scale"),
            gpu.grid_stride_config(n),
            n,
            |out| vec![a.arg(), Arg::F32(factor as f32), out, Arg::U64(n as u64)],
        )
    }
}

/// `acc += weight * (end - acc)` in place.
pub(super) fn lerp_assign(
    op: &'static str,
    acc: &mut CudaStorage,
    end: &Storage,
    weight: f64,
) -> Result<()> {
    let end = end.cuda(op, "end", acc.device())?;
    let gpu = acc.backend().clone();
    let n = acc.len();
    let acc = acc.buffer_mut()?;
    // SAFETY: elementwise_lerp_assign(float* acc, const float* end, float weight,
    // unsigned long long n); the caller checked that both hold n elements.
    unsafe {
        gpu.launch(
            op,
            (FILE, "elementwise_lerp_assign"),
            gpu.grid_stride_config(n),
            &[
                Arg::ptr(acc, 0),
                end.arg(),
                Arg::F32(weight as f32),
                Arg::U64(n as u64),
            ],
        )
    }
}

/// `acc += x` in place, by `kernel(T* acc, const T* x, unsigned long long n)`:
/// `elementwise_add_assign` (f32) or `elementwise_add_assign_bf16` (bf16 gradients, each
/// sum in f32, rounded once).
pub(super) fn add_assign<T: CudaElement>(
    op: &'static str,
    kernel: &'static str,
    acc: &mut CudaStorage<T>,
    x: &Storage,
) -> Result<()> {
    let x = T::operand(x, op, "x", acc.device())?;
    let gpu = acc.backend().clone();
    let n = acc.len();
    let acc = acc.buffer_mut()?;
    // SAFETY: the kernel takes (T* acc, const T* x, unsigned long long n); the caller
    // checked that both hold n elements.
    unsafe {
        gpu.launch(
            op,
            (FILE, kernel),
            gpu.grid_stride_config(n),
            &[Arg::ptr(acc, 0), x.arg(), Arg::U64(n as u64)],
        )
    }
}
