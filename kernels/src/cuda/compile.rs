//! Run-time compilation of the embedded `.cu` sources with NVRTC.

use std::ffi::{c_char, CString};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys, CompileError, CompileOptions, Ptx};

use super::{compilation_unit, nvrtc_present};
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

/// Compiles one `.cu` source, behind the shared prelude ([`super::compilation_unit`]), to
/// PTX for `arch` (e.g. `"sm_90"`). `file` names the source in errors, which carry the
/// options and NVRTC's log.
///
/// Needs only libnvrtc (no GPU): the NVRTC test compiles every kernel file this way.
pub fn compile_ptx(file: &str, source: &str, arch: &str) -> Result<Ptx> {
    check_compilable(file, source)?;
    let unit = compilation_unit(file, source);
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(COMPILE_OPTIONS.iter().map(|o| o.to_string()));
    let opts = CompileOptions {
        options: options.clone(),
        name: Some(file.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(unit, opts).map_err(|err| match err {
        CompileError::CompileError { nvrtc, log, .. } => Error::Cuda(format!(
            "NVRTC could not compile {file} with options {options:?} ({nvrtc}):\n{}",
            log.to_string_lossy().trim_end()
        )),
        other => Error::Cuda(format!(
            "NVRTC failed on {file} with options {options:?}: {other}"
        )),
    })
}

/// NVRTC's version, `(major, minor)`: part of the disk cache's key, as another NVRTC may
/// compile the same source differently.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_present() {
        return Err(Error::cuda_unavailable(
            "NVRTC (libnvrtc.so.13) could not be loaded; install it with \
             scripts/install-nvrtc.sh and put the folder it prints on LD_LIBRARY_PATH",
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC loads (checked above); the call writes the two ints it is given.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Cuda(format!("could not read NVRTC's version: {e:?}")))?;
    Ok((major, minor))
}

/// NVRTC loads and the source can be handed to it.
fn check_compilable(file: &str, source: &str) -> Result<()> {
    if !nvrtc_present() {
        return Err(Error::cuda_unavailable(format!(
            "cannot compile {file}: NVRTC (libnvrtc.so.13) could not be loaded; install it \
             with scripts/install-nvrtc.sh and put the folder it prints on LD_LIBRARY_PATH"
        )));
    }
    if source.contains('\0') {
        return Err(Error::Cuda(format!(
            "cannot compile {file}: the source holds a NUL byte"
        )));
    }
    Ok(())
}

/// Compiles one `.cu` source to a CUBIN (machine code) for the real architecture `arch`
/// (e.g. `"sm_90"`), with the same options and errors as [`compile_ptx`].
///
/// The backend loads CUBINs rather than PTX: PTX is compiled again by the driver, which
/// refuses PTX from an NVRTC newer than itself (a CUDA 13.2 NVRTC from a PyTorch wheel
/// beside a CUDA 13.0 driver), while machine code from any NVRTC of the same major
/// version loads (CUDA's minor-version compatibility).
pub fn compile_cubin(file: &str, source: &str, arch: &str) -> Result<Vec<u8>> {
    check_compilable(file, source)?;
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(COMPILE_OPTIONS.iter().map(|o| o.to_string()));
    let nvrtc_error = |doing: &str, e: nvrtc::NvrtcError| {
        Error::Cuda(format!(
            "NVRTC failed to {doing} {file} with options {options:?}: {e:?}"
        ))
    };
    let source_c = CString::new(compilation_unit(file, source)).expect("checked for NUL bytes");
    let name_c = CString::new(file).map_err(|_| Error::Cuda(format!("bad file name {file}")))?;
    let program = nvrtc::create_program(&source_c, Some(&name_c))
        .map_err(|e| nvrtc_error("create a program for", e))?;
    // SAFETY: `program` is a live program until destroyed at the end; the buffers passed
    // to NVRTC are sized by what NVRTC reports.
    let result = unsafe {
        match nvrtc::compile_program(program, &options) {
            Err(e) => {
                let log = nvrtc::get_program_log(program).unwrap_or_default();
                let log: Vec<u8> = log
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                Err(Error::Cuda(format!(
                    "NVRTC could not compile {file} with options {options:?} ({e:?}):\n{}",
                    String::from_utf8_lossy(&log).trim_end()
                )))
            }
            Ok(()) => {
                let mut size = 0usize;
                nvrtc_sys::nvrtcGetCUBINSize(program, &mut size)
                    .result()
                    .map_err(|e| nvrtc_error("size the CUBIN of", e))
                    .and_then(|()| {
                        let mut cubin = vec![0u8; size];
                        nvrtc_sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr() as *mut c_char)
                            .result()
                            .map_err(|e| nvrtc_error("read the CUBIN of", e))
                            .map(|()| cubin)
                    })
            }
        }
    };
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { nvrtc::destroy_program(program) };
    result
}
