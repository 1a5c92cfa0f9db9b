//! Small CIFAR-10-shaped files built by the tests themselves (the real data is never
//! committed). Each record's first two pixel bytes encode (file number, record number),
//! so a test can tell exactly which record ended up where.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

pub const RECORD: usize = 3073;
pub const FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
pub const META: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// Records per file in the small dataset: train 3+2+4+1+2 = 12, test 5.
pub const COUNTS: [usize; 6] = [3, 2, 4, 1, 2, 5];

/// The 3,072 pixel bytes of record `record` of file `file`.
pub fn pixels(file: usize, record: usize) -> Vec<u8> {
    let mut px: Vec<u8> = (0..3072)
        .map(|j| ((j * 7 + file * 31 + record * 13) % 256) as u8)
        .collect();
    px[0] = file as u8;
    px[1] = record as u8;
    px
}

pub fn label(file: usize, record: usize) -> u8 {
    ((file * 3 + record) % 10) as u8
}

/// The bytes of file number `file` (0..6) with `n` records.
pub fn batch_file(file: usize, n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * RECORD);
    for r in 0..n {
        bytes.push(label(file, r));
        bytes.extend(pixels(file, r));
    }
    bytes
}

/// The six record files and the meta file, as (name, bytes).
pub fn small_dataset() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), batch_file(i, COUNTS[i])))
        .collect();
    files.push(("batches.meta.txt".into(), META.as_bytes().to_vec()));
    files
}

pub fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A .tar.gz holding `files` under `prefix` (e.g. "cifar-10-batches-bin/").
pub fn tar_gz(files: &[(String, Vec<u8>)], prefix: &str) -> Vec<u8> {
    tar_gz_with(files, prefix, flate2::Compression::fast())
}

/// [`tar_gz`] at the given compression level (`none` stores the bytes as they are).
pub fn tar_gz_with(
    files: &[(String, Vec<u8>)],
    prefix: &str,
    level: flate2::Compression,
) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), level);
    let mut builder = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{prefix}{name}"), bytes.as_slice())
            .unwrap();
    }
    let gz = builder.into_inner().unwrap();
    let mut out = gz.finish().unwrap();
    out.flush().unwrap();
    out
}

/// Expected train split in file order: (label, pixels) per record.
pub fn expected_train() -> Vec<(u8, Vec<u8>)> {
    (0..5)
        .flat_map(|f| (0..COUNTS[f]).map(move |r| (label(f, r), pixels(f, r))))
        .collect()
}

pub fn expected_test() -> Vec<(u8, Vec<u8>)> {
    (0..COUNTS[5])
        .map(|r| (label(5, r), pixels(5, r)))
        .collect()
}
