//! Element-wise arithmetic on the GPU: one grid-stride launch of elementwise.cu per call.

use crate::cuda::{wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "elementwise.cu";

/// `out = a (op) b` with the two-input kernel `kernel` (`elementwise_add` or `_mul`).
pub(super) fn binary(
    op: &'static str,
    kernel: &'static str,
    a: &CudaStorage,
    b: &Storage,
) -> Result<Storage> {
    let gpu = a.backend();
    let b = b.cuda(op, "rhs", a.device())?;
    let n = a.len();
    let out = gpu.alloc::<f32>(n)?;
    // SAFETY: elementwise_add/_mul(const float* a, const float* b, float* out,
    // unsigned long long n); the caller checked that a and b have n elements.
    unsafe {
        gpu.launch(
            op,
            (FILE, kernel),
            gpu.grid_stride_config(n),
            &[a.arg(), b.arg(), Arg::ptr(&out, 0), Arg::U64(n as u64)],
        )?;
    }
    Ok(wrap(gpu, out))
}

/// `out = a * factor`, the factor rounded to f32 first as the CPU code does.
pub(super) fn scale(op: &'static str, a: &CudaStorage, factor: f64) -> Result<Storage> {
    let gpu = a.backend();
    let n = a.len();
    let out = gpu.alloc::<f32>(n)?;
    // SAFETY: elementwise_scale(const float* a, float factor, float* out,
    // unsigned long long n); both buffers hold n elements.
    unsafe {
        gpu.launch(
            op,
            (FILE, "elementwise_scale"),
            gpu.grid_stride_config(n),
            &[
                a.arg(),
                Arg::F32(factor as f32),
                Arg::ptr(&out, 0),
                Arg::U64(n as u64),
            ],
        )?;
    }
    Ok(wrap(gpu, out))
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

/// `acc += x` in place.
pub(super) fn add_assign(op: &'static str, acc: &mut CudaStorage, x: &Storage) -> Result<()> {
    let x = x.cuda(op, "x", acc.device())?;
    let gpu = acc.backend().clone();
    let n = acc.len();
    let acc = acc.buffer_mut()?;
    // SAFETY: elementwise_add_assign(float* acc, const float* x, unsigned long long n);
    // the caller checked that both hold n elements.
    unsafe {
        gpu.launch(
            op,
            (FILE, "elementwise_add_assign"),
            gpu.grid_stride_config(n),
            &[Arg::ptr(acc, 0), x.arg(), Arg::U64(n as u64)],
        )
    }
}
