//! The CIFAR-10 splits in memory, read from the official binary record files.
//!
//! Each record is 3,073 bytes: one label byte (0–9), then the 1,024 red, 1,024 green and
//! 1,024 blue bytes of a 32×32 image, row by row. We keep the pixels exactly in that CHW
//! order, so a record's image bytes are copied without reordering and the loader can write
//! NCHW batches by walking them linearly.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::archive;
use super::error::DataError;
use super::locate::{locate, DatasetSource};

/// Class names in label order, as `batches.meta.txt` lists them.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Image side in pixels.
pub const IMAGE_SIDE: usize = 32;
/// Colour channels (R, G, B).
pub const CHANNELS: usize = 3;
/// Pixel bytes of one image: 3 × 32 × 32.
pub const IMAGE_BYTES: usize = CHANNELS * IMAGE_SIDE * IMAGE_SIDE;
/// One record on disk: the label byte then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// The folder the official archive unpacks to.
pub const FOLDER_NAME: &str = "cifar-10-batches-bin";
/// The official archive's file name.
pub const ARCHIVE_NAME: &str = "cifar-10-binary.tar.gz";
/// The five training record files, in the order their records are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test record file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The class-name file (optional when reading: [`CLASSES`] is used without it).
pub const META_FILE: &str = "batches.meta.txt";

/// The six record files: five training files, then the test file.
pub(crate) fn record_files() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.into_iter().chain(std::iter::once(TEST_FILE))
}

/// See [`Split::fingerprint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub images: u64,
    pub crc32: u32,
}

impl fmt::Display for DataFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} images, CRC-32 {:08x}", self.images, self.crc32)
    }
}

/// One split (train or test): `len()` images of [`IMAGE_BYTES`] bytes each, CHW, and
/// their labels. Invariant: `images.len() == labels.len() * IMAGE_BYTES`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// All images back to back, each 3 × 32 × 32 bytes in CHW order.
    pub images: Vec<u8>,
    /// One label (0–9) per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `i`-th image's 3,072 CHW bytes.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Keeps the first `n` images (all of them if `n >= len()`): for quick runs on a
    /// subset.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * IMAGE_BYTES);
    }

    /// What identifies these exact images and labels: their number and a CRC-32 of all
    /// their bytes. A resumed run checks it to be sure it trains on the same data.
    pub fn fingerprint(&self) -> DataFingerprint {
        let mut crc = flate2::Crc::new();
        crc.update(&self.labels);
        crc.update(&self.images);
        DataFingerprint {
            images: self.len() as u64,
            crc32: crc.sum(),
        }
    }

    /// How many images each class has, indexed by label.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(label as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Appends the records of one batch file, checking its size and every label.
    /// `file` names the source in error messages.
    pub(crate) fn append_records(&mut self, bytes: &[u8], file: &str) -> Result<(), DataError> {
        check_record_size(bytes.len() as u64, file)?;
        let records = bytes.len() / RECORD_BYTES;
        self.images.reserve(records * IMAGE_BYTES);
        self.labels.reserve(records);
        for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = chunk[0];
            if label > 9 {
                return Err(DataError::BadLabel {
                    file: file.to_string(),
                    record,
                    label,
                });
            }
            self.labels.push(label);
            self.images.extend_from_slice(&chunk[1..]);
        }
        Ok(())
    }
}

/// The largest record file read: ten times an official batch file (10,000 records), so a
/// wrong file or a damaged size field cannot make the reader allocate without bound.
pub const MAX_RECORD_FILE_BYTES: u64 = 100_000 * RECORD_BYTES as u64;

/// The size check shared by folders (file metadata) and archives (tar headers), done
/// before any bytes are read.
pub(crate) fn check_record_size(size: u64, file: &str) -> Result<(), DataError> {
    if size == 0 {
        return Err(DataError::EmptyBatchFile {
            file: file.to_string(),
        });
    }
    if size > MAX_RECORD_FILE_BYTES {
        return Err(DataError::TooLarge {
            file: file.to_string(),
            size,
        });
    }
    // The workspace's MSRV (1.85) predates `u64::is_multiple_of`.
    let leftover = size % RECORD_BYTES as u64;
    if leftover != 0 {
        return Err(DataError::Truncated {
            file: file.to_string(),
            size,
        });
    }
    Ok(())
}

/// Reads `batches.meta.txt`: the ten class names, one a line (blank lines ignored).
pub(crate) fn parse_class_names(text: &str, file: &str) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CLASSES.len() {
        return Err(DataError::BadClassNames {
            file: file.to_string(),
            found: names.len(),
        });
    }
    Ok(names)
}

impl fmt::Debug for Split {
    // The derived Debug would print 150 million bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len())
            .field("class_counts", &self.class_counts())
            .finish()
    }
}

/// The whole dataset: 50,000 training and 10,000 test images for the official files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cifar10 {
    pub train: Split,
    pub test: Split,
    /// From `batches.meta.txt` when present, else [`CLASSES`].
    pub class_names: Vec<String>,
}

impl Cifar10 {
    /// Loads from any of: the unpacked `cifar-10-batches-bin/` folder, a folder holding
    /// it, the `cifar-10-binary.tar.gz` archive (streamed, never unpacked to disk), or a
    /// folder holding that archive. An unpacked folder wins over an archive next to it.
    pub fn load(path: &Path) -> Result<Cifar10, DataError> {
        match locate(path)? {
            DatasetSource::Folder(dir) => Cifar10::from_folder(&dir),
            DatasetSource::Archive(file) => Cifar10::from_archive(&file),
        }
    }

    /// Reads the six record files (and `batches.meta.txt` if present) from `dir`.
    pub fn from_folder(dir: &Path) -> Result<Cifar10, DataError> {
        let missing: Vec<String> = record_files()
            .filter(|name| !dir.join(name).is_file())
            .map(String::from)
            .collect();
        if !missing.is_empty() {
            return Err(DataError::MissingBatchFiles {
                dir: dir.to_path_buf(),
                missing,
            });
        }

        let mut train = Split::default();
        for name in TRAIN_FILES {
            append_file(&mut train, &dir.join(name))?;
        }
        let mut test = Split::default();
        append_file(&mut test, &dir.join(TEST_FILE))?;

        let meta = dir.join(META_FILE);
        let class_names = if meta.is_file() {
            let text = fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, e))?;
            parse_class_names(&text, &meta.display().to_string())?
        } else {
            default_class_names()
        };
        Ok(Cifar10 {
            train,
            test,
            class_names,
        })
    }

    /// Streams `cifar-10-binary.tar.gz` through gzip and tar, without writing to disk.
    pub fn from_archive(file: &Path) -> Result<Cifar10, DataError> {
        archive::read_archive(file)
    }
}

pub(crate) fn default_class_names() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

fn append_file(split: &mut Split, path: &Path) -> Result<(), DataError> {
    let name = path.display().to_string();
    let size = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    check_record_size(size, &name)?;
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    split.append_records(&bytes, &name)
}
