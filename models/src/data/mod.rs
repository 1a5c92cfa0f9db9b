//! CIFAR-10: locating, downloading, reading and batching.
//!
//! The flow a trainer follows:
//! 1. [`resolve_data_path`] picks the path (`--data`, `$CIFAR10_PATH`, `./data`) and says
//!    who chose it: only the default place may be downloaded into;
//! 2. [`ensure_dataset`] finds the data there (unpacked folder or `.tar.gz`), downloading
//!    the official archive if allowed and nothing is there, and reads it into a
//!    [`Cifar10`] of raw bytes;
//! 3. [`epoch_batches`] turns a [`Split`] into normalised, optionally augmented
//!    [`Batch`]es of host `f32`s, prepared on background threads, deterministic in
//!    (seed, epoch).
//!
//! This module knows nothing about tensors: the trainer wraps the batches.

mod archive;
mod augment;
mod cifar10;
mod download;
mod error;
mod loader;
mod locate;

pub use augment::Augmentation;
pub use cifar10::{
    Cifar10, DataFingerprint, Split, ARCHIVE_NAME, CHANNELS, CLASSES, FOLDER_NAME, IMAGE_BYTES,
    IMAGE_SIDE, META_FILE, RECORD_BYTES, TEST_FILE, TRAIN_FILES,
};
pub use download::{download, CIFAR10_MD5, CIFAR10_URL};
pub use error::DataError;
pub use loader::{
    epoch_batches, epoch_batches_from, Batch, BatchIter, LoaderConfig, Normalization,
};
pub use locate::{
    ensure_dataset, ensure_dataset_from, locate, resolve_data_path, DataLocation, DataOrigin,
    DatasetSource, DATA_ENV_VAR, DEFAULT_DATA_DIR,
};
