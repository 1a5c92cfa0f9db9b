//! Finding the dataset: which path to look at, what counts as CIFAR-10 there, and
//! downloading it when nothing is — only into the default place, when nobody said where
//! the data is: a `--data` or `$CIFAR10_PATH` that names nothing is a mistake to report,
//! not a folder to fill with 170 MB.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::cifar10::{record_files, Cifar10, ARCHIVE_NAME, FOLDER_NAME};
use super::download::{download, CIFAR10_MD5, CIFAR10_URL};
use super::error::DataError;

/// The environment variable consulted when no `--data` path is given.
pub const DATA_ENV_VAR: &str = "CIFAR10_PATH";
/// The path used when neither `--data` nor `CIFAR10_PATH` is given.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Who chose the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOrigin {
    /// The command line (`--data`, or the location a run recorded).
    Given,
    /// `$CIFAR10_PATH`.
    Environment,
    /// Nobody: [`DEFAULT_DATA_DIR`].
    Default,
}

/// The data path to use and who chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLocation {
    pub path: PathBuf,
    pub origin: DataOrigin,
}

impl DataLocation {
    /// A path the user gave.
    pub fn given(path: &Path) -> DataLocation {
        DataLocation {
            path: path.to_path_buf(),
            origin: DataOrigin::Given,
        }
    }

    /// Downloading is only for the default place: a path someone gave that holds no data
    /// is a typo or a missing copy, and gets an error.
    pub fn may_download(&self) -> bool {
        self.origin == DataOrigin::Default
    }
}

impl fmt::Display for DataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.origin {
            DataOrigin::Given => write!(f, "{path}"),
            DataOrigin::Environment => write!(f, "{path} (from ${DATA_ENV_VAR})"),
            DataOrigin::Default => write!(f, "{path} (the default: no --data or ${DATA_ENV_VAR})"),
        }
    }
}

/// The data path to use: `--data PATH` if given, else `$CIFAR10_PATH` if set and
/// non-empty, else `./data`.
pub fn resolve_data_path(cli: Option<&Path>) -> DataLocation {
    resolve_from(cli, std::env::var_os(DATA_ENV_VAR))
}

/// [`resolve_data_path`] with the environment passed in, so it can be tested without
/// mutating the process environment.
fn resolve_from(cli: Option<&Path>, env: Option<OsString>) -> DataLocation {
    if let Some(path) = cli {
        return DataLocation::given(path);
    }
    match env {
        Some(value) if !value.is_empty() => DataLocation {
            path: PathBuf::from(value),
            origin: DataOrigin::Environment,
        },
        _ => DataLocation {
            path: PathBuf::from(DEFAULT_DATA_DIR),
            origin: DataOrigin::Default,
        },
    }
}

/// Where the data was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSource {
    /// A folder holding the record files (the unpacked `cifar-10-batches-bin/`).
    Folder(PathBuf),
    /// A `.tar.gz` archive to stream.
    Archive(PathBuf),
}

/// Decides what `path` holds, in this order: a file is taken as the archive; a folder
/// holding any record file is the batches folder itself; else its
/// `cifar-10-batches-bin/` subfolder; else its `cifar-10-binary.tar.gz`. Only existence
/// is checked here: contents are validated when read.
pub fn locate(path: &Path) -> Result<DatasetSource, DataError> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() {
        return Ok(DatasetSource::Archive(path.to_path_buf()));
    }
    if record_files().any(|name| path.join(name).is_file()) {
        return Ok(DatasetSource::Folder(path.to_path_buf()));
    }
    let folder = path.join(FOLDER_NAME);
    if folder.is_dir() {
        return Ok(DatasetSource::Folder(folder));
    }
    let archive = path.join(ARCHIVE_NAME);
    if archive.is_file() {
        return Ok(DatasetSource::Archive(archive));
    }
    let mut looked_for: Vec<PathBuf> = record_files().map(|name| path.join(name)).collect();
    looked_for.push(folder);
    looked_for.push(archive);
    Err(DataError::NoDataset {
        path: path.to_path_buf(),
        looked_for,
    })
}

/// Loads CIFAR-10 from `path`; when nothing usable is there and `allow_download` is
/// set, first downloads the official archive into the folder `path` (created if
/// needed). Data that is present but damaged is reported, never downloaded over.
pub fn ensure_dataset(
    path: &Path,
    allow_download: bool,
    progress: bool,
) -> Result<Cifar10, DataError> {
    ensure_dataset_from(path, allow_download, progress, CIFAR10_URL, CIFAR10_MD5)
}

/// [`ensure_dataset`] with the archive's URL and MD5 given: for mirrors, and for tests
/// against a local server.
pub fn ensure_dataset_from(
    path: &Path,
    allow_download: bool,
    progress: bool,
    url: &str,
    expected_md5: &str,
) -> Result<Cifar10, DataError> {
    let missing = match locate(path) {
        Ok(DatasetSource::Folder(dir)) => return Cifar10::from_folder(&dir),
        Ok(DatasetSource::Archive(file)) => return Cifar10::from_archive(&file),
        Err(e @ (DataError::NotFound { .. } | DataError::NoDataset { .. })) => e,
        Err(e) => return Err(e),
    };
    // A path that names an archive is not a folder to download into.
    if !allow_download || looks_like_archive(path) {
        return Err(missing);
    }
    // Said even without a progress bar: 170 MB are about to land on the disk.
    let into = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    eprintln!(
        "CIFAR-10 not found in {}; downloading {url} into {}",
        path.display(),
        into.display()
    );
    let archive = download(url, path, expected_md5, progress)?;
    Cifar10::from_archive(&archive)
}

fn looks_like_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_path_wins_over_env_and_default() {
        let got = resolve_from(Some(Path::new("/x/y")), Some("/from/env".into()));
        assert_eq!(got, DataLocation::given(Path::new("/x/y")));
        assert!(!got.may_download());
    }

    #[test]
    fn env_is_used_without_cli() {
        let got = resolve_from(None, Some("/from/env".into()));
        assert_eq!(got.path, PathBuf::from("/from/env"));
        assert_eq!(got.origin, DataOrigin::Environment);
        assert!(!got.may_download());
    }

    #[test]
    fn default_is_dot_data_when_env_absent_or_empty_and_only_it_downloads() {
        for env in [None, Some("".into())] {
            let got = resolve_from(None, env);
            assert_eq!(got.path, PathBuf::from("./data"));
            assert!(got.may_download());
        }
    }
}
