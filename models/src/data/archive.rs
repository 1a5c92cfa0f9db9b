//! Reading `cifar-10-binary.tar.gz` as a stream: gzip → tar → record files in memory.
//!
//! Nothing is unpacked to disk, so the 174 MB archive can be read where it lies (a
//! read-only shared folder, say). Members are matched by file name, whatever folder
//! prefix (`cifar-10-batches-bin/`, `./cifar-10-batches-bin/`) the archiver wrote.
//!
//! The tar ends before the gzip stream does: the stream is read to its end all the same,
//! so that gzip's trailer (CRC-32 and length of everything decompressed) is checked and a
//! damaged archive — a flipped byte inside a member, say — is an error, as `gzip -t` says.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::cifar10::{
    check_record_size, default_class_names, parse_class_names, record_files, Cifar10, Split,
    FOLDER_NAME, META_FILE, TEST_FILE, TRAIN_FILES,
};
use super::error::DataError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// A larger `batches.meta.txt` is not the class-name list: it is skipped, not read.
const MAX_META_BYTES: u64 = 1 << 16;

/// Reads both splits and the class names from the archive at `path`.
pub(crate) fn read_archive(path: &Path) -> Result<Cifar10, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    check_gzip_magic(&mut reader, path)?;

    // Members may come in any order; keep each record file's bytes until all are seen
    // so the training split is always batch 1, 2, ..., 5.
    let mut contents: Vec<Option<Vec<u8>>> = vec![None; TRAIN_FILES.len() + 1];
    let mut meta: Option<Vec<u8>> = None;

    let mut tar = tar::Archive::new(GzDecoder::new(reader));
    read_members(&mut tar, path, &mut contents, &mut meta)?;
    // The tar's end-of-archive blocks may not reach the gzip trailer: read on to it.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| DataError::CorruptArchive {
        path: path.to_path_buf(),
        reason: format!(
            "{e}: gzip's check of the whole archive (CRC-32 and length) failed, so some of \
             its bytes are damaged; copy or download it again"
        ),
    })?;

    let missing: Vec<String> = record_files()
        .zip(&contents)
        .filter(|(_, c)| c.is_none())
        .map(|(name, _)| format!("{FOLDER_NAME}/{name}"))
        .collect();
    if !missing.is_empty() {
        return Err(DataError::MissingMembers {
            path: path.to_path_buf(),
            missing,
        });
    }

    let mut train = Split::default();
    let mut test = Split::default();
    for (name, bytes) in record_files().zip(contents) {
        let bytes = bytes.unwrap_or_default();
        let split = if name == TEST_FILE {
            &mut test
        } else {
            &mut train
        };
        split.append_records(&bytes, &member_label(path, name))?;
    }
    let class_names = match meta {
        Some(bytes) => parse_class_names(
            &String::from_utf8_lossy(&bytes),
            &member_label(path, META_FILE),
        )?,
        None => default_class_names(),
    };
    Ok(Cifar10 {
        train,
        test,
        class_names,
    })
}

/// Keeps the bytes of the six record files and of `batches.meta.txt`, skipping any other
/// member.
fn read_members(
    tar: &mut tar::Archive<GzDecoder<BufReader<File>>>,
    path: &Path,
    contents: &mut [Option<Vec<u8>>],
    meta: &mut Option<Vec<u8>>,
) -> Result<(), DataError> {
    let corrupt = |e: io::Error| DataError::CorruptArchive {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = match entry.path() {
            Ok(p) => match p.file_name().and_then(|n| n.to_str()) {
                Some(n) => n.to_string(),
                None => continue,
            },
            Err(_) => continue,
        };
        let slot = record_files().position(|f| f == name);
        if slot.is_none() && name != META_FILE {
            continue;
        }
        let size = entry.header().size().map_err(corrupt)?;
        if slot.is_some() {
            check_record_size(size, &member_label(path, &name))?;
        } else if size > MAX_META_BYTES {
            // batches.meta.txt is ten short lines.
            continue;
        }
        // Only the header vouches for the size: let the buffer grow with what is there.
        let mut bytes = Vec::with_capacity(size.min(1 << 24) as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        match slot {
            Some(i) => contents[i] = Some(bytes),
            None => *meta = Some(bytes),
        }
    }
    Ok(())
}

/// Refuses anything that is not gzip up front, so a mislabelled file (an unpacked
/// batch, an HTML error page saved as .tar.gz) gets a clear message rather than a
/// decoder error.
fn check_gzip_magic(reader: &mut BufReader<File>, path: &Path) -> Result<(), DataError> {
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.len() >= 2 && head[..2] == GZIP_MAGIC {
        return Ok(());
    }
    let detail = match head.len() {
        0 => "the file is empty".to_string(),
        n => format!(
            "it starts with bytes {:02x?}, gzip starts with 1f 8b",
            &head[..n.min(4)]
        ),
    };
    Err(DataError::NotGzip {
        path: path.to_path_buf(),
        detail,
    })
}

/// How errors name a file inside the archive.
fn member_label(archive: &Path, member: &str) -> String {
    format!("{} (member {FOLDER_NAME}/{member})", archive.display())
}
