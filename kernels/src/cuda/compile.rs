//! Run-time compilation of the embedded `.cu` sources with NVRTC.

use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

use super::{nvrtc_present, USE_CPU};
use crate::{Error, Result};

/// Options passed to NVRTC besides the architecture.
///
/// `--fmad=false` keeps `a * b + c` as two rounded operations, as the CPU code computes
/// it, so element-wise kernels give the CPU's results bit for bit; the kernels are bound
/// by memory traffic, so the fused multiply-adds would gain nothing measurable.
pub const COMPILE_OPTIONS: &[&str] = &["--fmad=false"];

/// NVRTC's name for the architecture of a device of compute capability `major.minor`:
/// `(9, 0)` is `sm_90`.
pub fn arch_for(compute_capability: (i32, i32)) -> String {
    format!("sm_{}{}", compute_capability.0, compute_capability.1)
}

/// Compiles one `.cu` source to PTX for `arch` (e.g. `"sm_90"`). `file` names the source
/// in errors, which carry the options and NVRTC's log.
///
/// Needs only libnvrtc (no GPU): the NVRTC test compiles every kernel file this way.
pub fn compile_ptx(file: &str, source: &str, arch: &str) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::Cuda(format!(
            "cannot compile {file}: NVRTC (libnvrtc.so.13) could not be loaded; install it \
             with scripts/install-nvrtc.sh and put the folder it prints on LD_LIBRARY_PATH, \
             or {USE_CPU}"
        )));
    }
    if source.contains('\0') {
        return Err(Error::Cuda(format!(
            "cannot compile {file}: the source holds a NUL byte"
        )));
    }
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(COMPILE_OPTIONS.iter().map(|o| o.to_string()));
    let opts = CompileOptions {
        options: options.clone(),
        name: Some(file.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|err| match err {
        CompileError::CompileError { nvrtc, log, .. } => Error::Cuda(format!(
            "NVRTC could not compile {file} with options {options:?} ({nvrtc}):\n{}",
            log.to_string_lossy().trim_end()
        )),
        other => Error::Cuda(format!(
            "NVRTC failed on {file} with options {options:?}: {other}"
        )),
    })
}
