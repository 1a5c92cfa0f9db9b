//! NVRTC's machine code for each kernel file, kept on disk between processes.
//!
//! Every process that opens a device (each test executable, each `cli` run) would otherwise
//! have NVRTC compile every `.cu` file again. A CUBIN depends only on the text compiled
//! (the prelude and the file), the options, the architecture and the NVRTC version, so it
//! is stored under a SHA-256 of those four: `<dir>/<arch>-<hash>.cubin`, where `<dir>` is
//! `$KERNELS_CUDA_CACHE` (set but empty: no cache), else `$XDG_CACHE_HOME/cifar-rs/cubin`,
//! else `$HOME/.cache/cifar-rs/cubin`.
//!
//! An entry is written to a temporary file in the same folder and renamed into place, so a
//! reader (another process compiling the same file at the same time) sees a whole entry or
//! none; it carries its payload's SHA-256, so a truncated or damaged entry is ignored and
//! replaced by a fresh compile. The cache never turns into an error: a folder that cannot
//! be made or written (a read-only home, a full disk) only costs the compile.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::compilation_unit;
use super::compile::{compile_cubin, nvrtc_version, COMPILE_OPTIONS};
use crate::Result;

/// The variable naming the cache folder (empty: no cache).
pub const CACHE_DIR_VAR: &str = "KERNELS_CUDA_CACHE";

/// First bytes of every entry; the format's version is the last one.
const MAGIC: &[u8; 8] = b"KCUBIN\x00\x01";

/// The CUBIN of the kernel file `file` (source `source`) for `arch`: from the cache when a
/// whole entry is there, otherwise from [`compile_cubin`], stored for the next process.
pub fn cubin(file: &str, source: &str, arch: &str) -> Result<Vec<u8>> {
    let (major, minor) = nvrtc_version()?;
    let key = key(file, source, arch, &format!("{major}.{minor}"));
    CubinCache::at(default_dir()).get_or_compile(arch, &key, || compile_cubin(file, source, arch))
}

/// Where the cache lives (see the module docs), or `None` for no cache.
pub fn default_dir() -> Option<PathBuf> {
    dir_from(
        std::env::var_os(CACHE_DIR_VAR),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_dir`] given the values of `$KERNELS_CUDA_CACHE`, `$XDG_CACHE_HOME` and `$HOME`.
pub fn dir_from(
    cache_dir: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = cache_dir {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = xdg_cache_home
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            home.filter(|d| !d.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("cifar-rs").join("cubin"))
}

/// The hex SHA-256 of everything the CUBIN of `file` depends on.
pub fn key(file: &str, source: &str, arch: &str, nvrtc_version: &str) -> String {
    let mut hash = Sha256::new();
    for part in [arch, nvrtc_version, &COMPILE_OPTIONS.join(" ")] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(compilation_unit(file, source).as_bytes());
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A folder of CUBINs (or none: every request compiles).
pub struct CubinCache {
    dir: Option<PathBuf>,
}

impl CubinCache {
    pub fn at(dir: Option<PathBuf>) -> CubinCache {
        CubinCache { dir }
    }

    /// The entry `key` for `arch` if a whole one is stored, else `compile()`'s CUBIN,
    /// stored for next time. Only `compile`'s own error is returned.
    pub fn get_or_compile(
        &self,
        arch: &str,
        key: &str,
        compile: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let Some(dir) = &self.dir else {
            return compile();
        };
        let path = dir.join(format!("{arch}-{key}.cubin"));
        if let Some(cubin) = read_entry(&path) {
            return Ok(cubin);
        }
        let cubin = compile()?;
        static WARNED: AtomicBool = AtomicBool::new(false);
        if let Err(err) = write_entry(dir, &path, &cubin) {
            // Only the next process's time is at stake: say so once, and go on.
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "note: could not store the compiled kernels in {} ({err}); they will be \
                     compiled again next time",
                    path.display()
                );
            }
        }
        Ok(cubin)
    }
}

/// The payload of a whole, intact entry; `None` for a missing, short or damaged one.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (digest, payload) = rest.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == digest && !payload.is_empty()).then(|| payload.to_vec())
}

/// Writes the entry to a temporary file beside `path` and renames it into place.
fn write_entry(dir: &Path, path: &Path, payload: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(payload))?;
    file.write_all(payload)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
