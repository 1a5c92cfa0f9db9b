//! The CUDA backend: one device, one stream, cuBLAS for the products and run-time compiled
//! CUDA C for everything else.
//!
//! Every op's GPU kernels live beside its CPU code as `kernels/src/<op>/<op>.cu`, embedded
//! in the binary ([`KERNEL_SOURCES`]) and compiled, behind the shared [`PRELUDE`], by NVRTC
//! for the device's own architecture the first time a kernel of that file is needed (once
//! per process and device, and only once per machine: the machine code is kept in a disk
//! cache, see [`CACHE_DIR_VAR`]).
//!
//! Nothing here needs a CUDA toolkit or a GPU to build: the driver (`libcuda`), NVRTC
//! (`libnvrtc`) and cuBLAS (`libcublas`) are loaded at run time, and every entry point
//! checks that a library loads before calling into it, so a machine without CUDA gets an
//! [`Error::CudaUnavailable`] naming what is missing instead of a panic.
//!
//! Tensors reach the GPU as `Storage::Cuda(`[`CudaStorage`]`)` (f32), or under autocast as
//! `Storage::CudaBf16(CudaStorage<u16>)` (bf16, held as bits): each op's dispatch sends
//! that variant to the `cuda.rs` beside its CPU code, which allocates outputs from the
//! caching allocator and launches the op's kernels with [`CudaBackend::launch`] (whose
//! arguments are checked against the kernel's parameter list in the `.cu` source) and its
//! products with [`CudaBackend::sgemm`] (f32) or [`CudaBackend::gemm_bf16`] (bf16 operands
//! summed in f32). A kernel that reads or writes activations is written once over the
//! stored type, with an entry point per type (`prelude.cuh`: `widen`, `store`, whose
//! rounding is the CPU's bit for bit). Everything runs in order on the backend's one
//! stream; only copies to the host wait for it, unless [`SYNC_LAUNCHES_VAR`]
//! (`KERNELS_CUDA_SYNC=1`) makes every launch wait and report its own failure.
//!
//! ```
//! // On a machine without a GPU this is simply false; `open` says why.
//! if !kernels::cuda::is_available() {
//!     let err = kernels::cuda::open(0).unwrap_err();
//!     assert!(matches!(err, kernels::Error::CudaUnavailable { .. }), "{err}");
//! }
//! ```
//!
//! NVRTC comes from the `nvidia-cuda-nvrtc` wheel where no toolkit is installed:
//! `scripts/install-nvrtc.sh` installs it into `.nvrtc/` and prints the folder to put on
//! `LD_LIBRARY_PATH` (libnvrtc loads `libnvrtc-builtins` from the search path, so the
//! variable is needed even though cudarc could be pointed at the library directly).

mod alloc;
mod backend;
mod cache;
mod compile;
#[cfg(all(test, target_os = "linux"))]
mod emulated_bf16_lowering_tests;
#[cfg(all(test, target_os = "linux"))]
mod emulated_bf16_tests;
#[cfg(all(test, target_os = "linux"))]
mod emulated_tests;
mod signature;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use alloc::{CudaBuffer, PoolStats};
pub use backend::{Arg, CudaBackend, BLOCK_SIZE, SYNC_LAUNCHES_VAR};
pub use cache::CACHE_DIR_VAR;
pub use compile::{arch_for, compile_cubin, compile_ptx, nvrtc_version, COMPILE_OPTIONS};
/// The cudarc types a caller needs to launch kernels and pass buffers to cuBLAS.
pub use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};
pub use signature::{kernel_params, Param};
pub(crate) use storage::{
    activation_backward, activation_forward, launch_into_new, launch_into_new_of, wrap,
    DeviceValues,
};
pub use storage::{CudaElement, CudaStorage};

use crate::{Error, Result};

/// Every `.cu` file of the crate, by file name, with its source. The file name is the key
/// of [`CudaBackend::module`] and appears in compile errors.
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    ("batch_norm.cu", include_str!("../batch_norm/batch_norm.cu")),
    ("conv2d.cu", include_str!("../conv2d/conv2d.cu")),
    (
        "cross_entropy.cu",
        include_str!("../cross_entropy/cross_entropy.cu"),
    ),
    ("dropout.cu", include_str!("../dropout/dropout.cu")),
    ("gelu.cu", include_str!("../gelu/gelu.cu")),
    (
        "elementwise.cu",
        include_str!("../elementwise/elementwise.cu"),
    ),
    ("linear.cu", include_str!("../linear/linear.cu")),
    (
        "log_softmax.cu",
        include_str!("../log_softmax/log_softmax.cu"),
    ),
    ("optim.cu", include_str!("../optim/optim.cu")),
    ("pool2d.cu", include_str!("../pool2d/pool2d.cu")),
    ("reduce.cu", include_str!("../reduce/reduce.cu")),
    ("relu.cu", include_str!("../relu/relu.cu")),
];

/// The `extern "C" __global__` kernels of each `.cu` file. Launch code names kernels
/// through these constants' strings; a test checks that each one is in the compiled PTX.
pub const KERNEL_NAMES: &[(&str, &[&str])] = &[
    (
        "batch_norm.cu",
        &[
            "batch_norm_train_stats",
            "batch_norm_eval_scale",
            "batch_norm_affine",
            "batch_norm_backward_train_reduce",
            "batch_norm_backward_eval_reduce",
            "batch_norm_input_grad",
            "batch_norm_train_stats_bf16",
            "batch_norm_affine_bf16",
            "batch_norm_backward_train_reduce_bf16",
            "batch_norm_backward_eval_reduce_bf16",
            "batch_norm_input_grad_bf16",
        ],
    ),
    (
        "conv2d.cu",
        &[
            "conv2d_im2col",
            "conv2d_im2col_f32_to_bf16",
            "conv2d_im2col_bf16",
            "conv2d_col2im",
            "conv2d_col2im_to_bf16",
            "conv2d_cnp_to_ncp",
            "conv2d_cnp_to_ncp_bf16",
            "conv2d_ncp_to_cnp",
            "conv2d_ncp_to_cnp_f32_to_bf16",
            "conv2d_ncp_to_cnp_bf16",
            "conv2d_bias_grad",
            "conv2d_bias_grad_bf16",
        ],
    ),
    (
        "cross_entropy.cu",
        &[
            "cross_entropy_forward",
            "cross_entropy_reduce",
            "cross_entropy_backward",
        ],
    ),
    ("dropout.cu", &["dropout_apply", "dropout_uniform"]),
    (
        "gelu.cu",
        &[
            "gelu_forward",
            "gelu_backward",
            "gelu_forward_bf16",
            "gelu_backward_bf16",
        ],
    ),
    (
        "elementwise.cu",
        &[
            "elementwise_add",
            "elementwise_mul",
            "elementwise_scale",
            "elementwise_add_assign",
            "elementwise_lerp_assign",
            "elementwise_fill",
            "elementwise_to_bf16",
            "elementwise_from_bf16",
            "elementwise_add_assign_bf16",
        ],
    ),
    (
        "linear.cu",
        &[
            "linear_bias_add",
            "linear_bias_grad",
            "linear_bias_grad_bf16",
        ],
    ),
    (
        "log_softmax.cu",
        &["log_softmax_forward", "log_softmax_backward"],
    ),
    ("optim.cu", &["sgd_step", "sgd_momentum_step", "adam_step"]),
    (
        "pool2d.cu",
        &[
            "max_pool2d_forward",
            "avg_pool2d_forward",
            "max_pool2d_backward",
            "avg_pool2d_backward",
            "max_pool2d_forward_bf16",
            "max_pool2d_backward_bf16",
        ],
    ),
    (
        "reduce.cu",
        &[
            "reduce_sum_partials",
            "reduce_sum_finish",
            "reduce_broadcast_scalar",
        ],
    ),
    (
        "relu.cu",
        &[
            "relu_forward",
            "relu_backward",
            "relu_forward_bf16",
            "relu_backward_bf16",
        ],
    ),
];

/// What every `.cu` file shares (`GRID_STRIDE`, `WARP_PER_ROW`, `warp_sum`, `warp_max`,
/// `block_sum`): [`compilation_unit`] puts it in front of each file.
pub const PRELUDE: &str = include_str!("prelude.cuh");

/// The text compiled for the kernel file `file` with source `source`: [`PRELUDE`], then the
/// file, each behind a `#line` marker so that compiler messages name the right file and line.
/// NVRTC ([`compile_ptx`], [`compile_cubin`]) and the g++ emulator of the tests compile this.
pub fn compilation_unit(file: &str, source: &str) -> String {
    format!("#line 1 \"prelude.cuh\"\n{PRELUDE}\n#line 1 \"{file}\"\n{source}\n")
}

/// The source of the `.cu` file called `file` (e.g. `"relu.cu"`).
pub fn kernel_source(file: &str) -> Option<&'static str> {
    KERNEL_SOURCES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|&(_, source)| source)
}

/// Whether the CUDA driver library (`libcuda.so`) can be loaded. cudarc panics on the
/// first driver call when it cannot, so every path into the driver checks this first.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library under its usual names.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

/// Whether NVRTC (`libnvrtc.so.13` or another name cudarc knows) can be loaded.
pub fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library under its usual names.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// Whether cuBLAS (`libcublas.so.13` or another name cudarc knows) can be loaded.
pub fn cublas_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library under its usual names.
    *PRESENT.get_or_init(|| unsafe { cudarc::cublas::sys::is_culib_present() })
}

/// Number of CUDA devices, or why there are none to ask about.
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        return Err(Error::cuda_unavailable(
            "no CUDA driver found (libcuda.so could not be loaded)",
        ));
    }
    let count = cudarc::driver::CudaContext::device_count().map_err(|e| {
        Error::cuda_unavailable(format!("the CUDA driver could not be initialised ({e})"))
    })?;
    Ok(count.max(0) as usize)
}

/// Whether device 0 can be opened: the driver, NVRTC and cuBLAS load and the device opens.
/// The opened backend is kept, so a later [`open`]`(0)` costs nothing.
pub fn is_available() -> bool {
    open(0).is_ok()
}

/// The backend of device `ordinal`, opened on first use and shared afterwards (so every
/// kernel file is compiled at most once per process and device).
///
/// Fails with [`Error::CudaUnavailable`] when the driver library is missing, no such device
/// exists, NVRTC or cuBLAS cannot be loaded, or the device refuses a context.
pub fn open(ordinal: usize) -> Result<Arc<CudaBackend>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();
    let mut opened = OPENED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(backend) = opened.get(&ordinal) {
        return Ok(backend.clone());
    }
    let count = device_count()?;
    if ordinal >= count {
        return Err(Error::cuda_unavailable(format!(
            "CUDA device {ordinal} does not exist ({count} device{} found)",
            if count == 1 { "" } else { "s" }
        )));
    }
    if !nvrtc_present() {
        return Err(Error::cuda_unavailable(
            "NVRTC (libnvrtc.so.13) could not be loaded: install it with \
             scripts/install-nvrtc.sh and put the folder it prints on LD_LIBRARY_PATH",
        ));
    }
    if !cublas_present() {
        return Err(Error::cuda_unavailable(
            "cuBLAS (libcublas.so.13) could not be loaded: put the folder that holds it on \
             LD_LIBRARY_PATH",
        ));
    }
    // A device that exists but refuses a context (out of memory, exclusive mode taken) is
    // as unusable as a missing one.
    let backend = Arc::new(CudaBackend::new(ordinal).map_err(|err| match err {
        Error::Cuda(reason) => Error::CudaUnavailable { reason },
        other => other,
    })?);
    opened.insert(ordinal, backend.clone());
    Ok(backend)
}

/// For tests that need a GPU: device 0 with TF32 off (products comparable with the CPU's),
/// or why none opens. With `REQUIRE_CUDA=1`, as `scripts/gpu-check.sh` sets on the GPU
/// machine, a missing device panics instead, naming `test`: there a skip would hide a
/// failure.
pub fn open_for_test(test: &str) -> Result<Arc<CudaBackend>> {
    let opened = open(0).and_then(|gpu| gpu.set_tf32(false).map(|()| gpu));
    if let Err(err) = &opened {
        if std::env::var("REQUIRE_CUDA").is_ok_and(|v| v == "1") {
            panic!("{test}: REQUIRE_CUDA=1 but no CUDA device: {err}");
        }
    }
    opened
}

/// [`open_for_test`], or `None` after printing `SKIPPED: no CUDA device (<reason>)
/// [<test>]`: Rust has no "skipped" outcome, so a test without a GPU returns early and says
/// so (`cargo test -- --nocapture` shows it).
pub fn open_or_skip(test: &str) -> Option<Arc<CudaBackend>> {
    match open_for_test(test) {
        Ok(gpu) => Some(gpu),
        Err(err) => {
            println!("SKIPPED: no CUDA device ({err}) [{test}]");
            None
        }
    }
}

/// Converts a size to the `int` a kernel parameter takes, or says which one is too large.
pub fn to_i32(op: &'static str, what: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::invalid(
            op,
            format!(
                "{what} = {value} is too large for the CUDA kernels (at most {})",
                i32::MAX
            ),
        )
    })
}
