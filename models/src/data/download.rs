//! Downloading the official archive, checked against its published MD5.
//!
//! Bytes stream into a temporary file in the destination folder, which is renamed to
//! its final name only once the MD5 matches. Any failure (network, checksum, disk)
//! drops the temporary file, so a later run never mistakes half an archive for data. The
//! folder is only created once the server has answered, and removed again if the download
//! then fails, so an offline machine is left as it was.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use super::cifar10::ARCHIVE_NAME;
use super::error::DataError;

/// Where the dataset's authors publish the binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// The archive's MD5, as torchvision checks it.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

const CHUNK_BYTES: usize = 1 << 16;

/// Downloads `url` into the folder `dest_dir` (created if needed), under the URL's
/// last path segment (or `cifar-10-binary.tar.gz` if it has none), and returns the
/// file's path. The MD5 of the bytes must equal `expected_md5` (hex, any case), else
/// nothing is kept. `progress` shows a byte progress bar on stderr.
pub fn download(
    url: &str,
    dest_dir: &Path,
    expected_md5: &str,
    progress: bool,
) -> Result<PathBuf, DataError> {
    let name = file_name_of(url);
    let dest = dest_dir.join(&name);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A stalled transfer fails instead of hanging; a slow one is fine.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(status) => DataError::HttpStatus {
            url: url.to_string(),
            status,
        },
        other => DataError::Unreachable {
            url: url.to_string(),
            reason: other.to_string(),
        },
    })?;
    let created = created_folders(dest_dir);
    std::fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    let result = receive(response, &dest, &name, expected_md5, url, progress);
    if result.is_err() {
        // Only the folders this call created, innermost first, and only while empty.
        for folder in created.iter().rev() {
            let _ = std::fs::remove_dir(folder);
        }
    }
    result
}

/// The folders `create_dir_all(dir)` would create, outermost first.
fn created_folders(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !a.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// Streams the answer's body into `dest` (through a temporary file beside it), checking
/// its MD5.
fn receive(
    response: ureq::http::Response<ureq::Body>,
    dest: &Path,
    name: &str,
    expected_md5: &str,
    url: &str,
    progress: bool,
) -> Result<PathBuf, DataError> {
    let dest_dir = dest.parent().unwrap_or(Path::new("."));
    let mut body = response.into_body();
    let bar = progress_bar(body.content_length(), progress, name);

    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dest_dir)
        .map_err(|e| DataError::io(dest_dir, e))?;
    let mut hasher = Md5::new();
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(DataError::DownloadInterrupted {
                    url: url.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        hasher.update(&buf[..n]);
        part.write_all(&buf[..n])
            .map_err(|e| DataError::io(part.path(), e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();

    let actual = to_hex(&hasher.finalize());
    let expected = expected_md5.trim().to_ascii_lowercase();
    if actual != expected {
        // `part` is dropped here, deleting the temporary file.
        return Err(DataError::ChecksumMismatch {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    part.as_file()
        .sync_all()
        .map_err(|e| DataError::io(part.path(), e))?;
    part.persist(dest)
        .map_err(|e| DataError::io(dest, e.error))?;
    Ok(dest.to_path_buf())
}

/// The last path segment of `url`, without query or fragment.
fn file_name_of(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map_or("", |(_, path)| path);
    match path.rsplit('/').next() {
        Some(last) if !last.is_empty() && last != "." && last != ".." => last.to_string(),
        _ => ARCHIVE_NAME.to_string(),
    }
}

fn progress_bar(total: Option<u64>, visible: bool, name: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(len) => {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{msg} {spinner} {bytes}") {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.set_message(name.to_string());
    bar
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_is_the_last_url_segment() {
        assert_eq!(file_name_of(CIFAR10_URL), "cifar-10-binary.tar.gz");
        assert_eq!(file_name_of("http://h:1/a/b.tgz?x=1#f"), "b.tgz");
        assert_eq!(file_name_of("http://h:1/"), ARCHIVE_NAME);
        assert_eq!(file_name_of("http://h:1"), ARCHIVE_NAME);
    }

    #[test]
    fn md5_of_known_strings() {
        // RFC 1321 test suite.
        assert_eq!(
            to_hex(&Md5::digest(b"")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            to_hex(&Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
