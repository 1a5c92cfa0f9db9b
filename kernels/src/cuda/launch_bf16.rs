//! Launches that write a new bf16 buffer: the device side of the ops between two
//! convolutions under autocast (GELU, ReLU, max pooling, batch norm), whose activations and
//! activation gradients are bf16 (`Storage::CudaBf16`, held as bits) while their kernels
//! compute in f32, as [`super::launch_into_new`] and the activation helpers beside it do
//! for f32.

use std::sync::Arc;

use super::{Arg, CudaBackend, CudaBuffer, CudaStorage, LaunchConfig};
use crate::{Result, Storage};

/// Wraps a buffer of bf16 bits that a kernel of `backend` has written as a
/// `Storage::CudaBf16`.
pub(crate) fn wrap_bf16(backend: &Arc<CudaBackend>, buffer: CudaBuffer<u16>) -> Storage {
    Storage::CudaBf16(CudaStorage::new(buffer, backend.clone()))
}

/// [`super::launch_into_new`] with a bf16 output: a new buffer of `len` bf16 values,
/// written in full by one launch of `kernel` (`(file, name)`) over `config`. `args` is
/// given the new buffer's pointer and returns the kernel's arguments in the order it
/// declares them.
///
/// # Safety
///
/// As [`CudaBackend::launch`]; besides, the kernel must write all `len` elements of the
/// output (a `bf16*` parameter), which starts with whatever the allocator's last user left
/// there.
pub(crate) unsafe fn launch_into_new_bf16(
    gpu: &Arc<CudaBackend>,
    op: &'static str,
    kernel: (&'static str, &'static str),
    config: LaunchConfig,
    len: usize,
    args: impl FnOnce(Arg) -> Vec<Arg>,
) -> Result<Storage> {
    let out = gpu.alloc::<u16>(len)?;
    let args = args(Arg::ptr(&out, 0));
    // SAFETY: the caller vouches for the arguments and for the kernel writing `out`.
    unsafe { gpu.launch(op, kernel, config, &args)? };
    Ok(wrap_bf16(gpu, out))
}

/// The forward pass of an element-wise activation on bf16: one launch of
/// `kernel(const bf16* x, bf16* y, unsigned long long n)`, which must write every `y[i]`
/// from `x[i]` alone.
pub(crate) fn activation_forward_bf16(
    op: &'static str,
    kernel: (&'static str, &'static str),
    x: &CudaStorage<u16>,
) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    // SAFETY: the kernel declares (const bf16* x, bf16* y, unsigned long long n) and writes
    // the n elements of y from the n of x (the caller's contract).
    unsafe {
        launch_into_new_bf16(gpu, op, kernel, gpu.grid_stride_config(n), n, |y| {
            vec![x.arg(), y, Arg::U64(n as u64)]
        })
    }
}

/// The backward pass of an element-wise activation on bf16, from its forward input: one
/// launch of `kernel(const bf16* x, const bf16* grad_out, bf16* grad_in, unsigned long
/// long n)`, which must write every `grad_in[i]` from `x[i]` and `grad_out[i]`. The
/// gradient of a bf16 activation is bf16 (as under PyTorch's autocast): an f32 or host
/// `grad_out` is an error naming it.
pub(crate) fn activation_backward_bf16(
    op: &'static str,
    kernel: (&'static str, &'static str),
    x: &CudaStorage<u16>,
    grad_out: &Storage,
) -> Result<Storage> {
    let (gpu, n) = (x.backend(), x.len());
    let grad_out = grad_out.cuda_bf16(op, "grad_out", x.device())?;
    grad_out.check_len(op, "grad_out", n)?;
    // SAFETY: the kernel declares (const bf16* x, const bf16* grad_out, bf16* grad_in,
    // unsigned long long n) and writes the n elements of grad_in; x and grad_out hold n.
    unsafe {
        launch_into_new_bf16(gpu, op, kernel, gpu.grid_stride_config(n), n, |grad_in| {
            vec![x.arg(), grad_out.arg(), grad_in, Arg::U64(n as u64)]
        })
    }
}
