//! The one error type of the data module.
//!
//! Every message names the file (or URL) and the problem, so a user can fix it
//! without reading the source: a wrong `--data` path, a half-copied archive, no network.

use std::io;
use std::path::{Path, PathBuf};

use super::cifar10::{FOLDER_NAME, RECORD_BYTES};
use super::download::CIFAR10_URL;

/// What went wrong while locating, downloading or reading CIFAR-10.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The path given (by `--data`, `CIFAR10_PATH` or the default) does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound { path: PathBuf },

    /// The folder exists but holds neither the batch files, nor `cifar-10-batches-bin/`,
    /// nor the archive.
    #[error(
        "no CIFAR-10 data in {}: looked for {}; download {CIFAR10_URL} into that folder, \
         or pass --data PATH / set CIFAR10_PATH",
        path.display(),
        list_paths(looked_for)
    )]
    NoDataset {
        path: PathBuf,
        looked_for: Vec<PathBuf>,
    },

    /// A `cifar-10-batches-bin` folder lacks some of its six record files.
    #[error(
        "{}: missing batch file(s) {}; a CIFAR-10 folder holds data_batch_1.bin .. \
         data_batch_5.bin and test_batch.bin",
        dir.display(),
        missing.join(", ")
    )]
    MissingBatchFiles { dir: PathBuf, missing: Vec<String> },

    /// A record file whose size is not a multiple of 3,073 bytes: cut short, or not a
    /// CIFAR-10 binary batch at all.
    #[error(
        "{file}: {size} bytes is not a whole number of {RECORD_BYTES}-byte records \
         (truncated, or not a CIFAR-10 binary batch file)"
    )]
    Truncated { file: String, size: u64 },

    /// A record file larger than any CIFAR-10 batch file could be.
    #[error(
        "{file}: {size} bytes is more than a CIFAR-10 record file holds (at most {} bytes \
         are read); is it the right file?",
        super::cifar10::MAX_RECORD_FILE_BYTES
    )]
    TooLarge { file: String, size: u64 },

    /// A record file of zero bytes.
    #[error("{file}: holds no records")]
    EmptyBatchFile { file: String },

    /// A record whose label byte is not one of the ten classes.
    #[error("{file}: record {record} has label {label}, but CIFAR-10 labels are 0 to 9")]
    BadLabel {
        file: String,
        record: usize,
        label: u8,
    },

    /// `batches.meta.txt` does not list exactly ten class names.
    #[error("{file}: lists {found} class names, expected 10")]
    BadClassNames { file: String, found: usize },

    /// The archive does not start with the gzip magic bytes.
    #[error("{}: not a gzip archive ({detail})", path.display())]
    NotGzip { path: PathBuf, detail: String },

    /// The gzip stream or the tar inside it is damaged.
    #[error("{}: corrupt archive: {reason}", path.display())]
    CorruptArchive { path: PathBuf, reason: String },

    /// A readable archive that lacks some of the six record files.
    #[error(
        "{}: archive has no member(s) {}; expected {FOLDER_NAME}/data_batch_1.bin .. \
         data_batch_5.bin and {FOLDER_NAME}/test_batch.bin",
        path.display(),
        missing.join(", ")
    )]
    MissingMembers { path: PathBuf, missing: Vec<String> },

    /// Any other file-system error, with the path it happened on.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No connection to the download server (offline machine, DNS failure, refused, timeout).
    #[error(
        "could not reach {url} ({reason}); download the archive by hand from {url} \
         and pass --data PATH / set CIFAR10_PATH"
    )]
    Unreachable { url: String, reason: String },

    /// The server answered, but not with the file.
    #[error(
        "{url}: the server answered HTTP {status}; download the archive by hand \
         and pass --data PATH / set CIFAR10_PATH"
    )]
    HttpStatus { url: String, status: u16 },

    /// The connection broke while the body was streaming; nothing was kept.
    #[error(
        "download of {url} broke off ({reason}); nothing was kept. Try again, or download \
         the archive by hand and pass --data PATH / set CIFAR10_PATH"
    )]
    DownloadInterrupted { url: String, reason: String },

    /// The downloaded bytes do not hash to the published MD5; nothing was kept.
    #[error("{url}: MD5 of the download is {actual}, expected {expected}; the file was discarded")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    /// A [`LoaderConfig`](super::LoaderConfig) that cannot produce batches.
    #[error("invalid loader configuration: {0}")]
    InvalidConfig(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}
