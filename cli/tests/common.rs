//! Running the built `cli` binary and making small datasets for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cli"))
        .args(args)
        .env_remove("CIFAR10_PATH")
        .output()
        .expect("the cli binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure with exactly one `error:` line mentioning `needle`, and no panic.
pub fn assert_clean_failure(output: &Output, needle: &str) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "expected failure, stdout: {}",
        stdout(output)
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(needle), "expected {needle:?} in {err}");
}

/// A `cifar-10-batches-bin` folder with `train_per_file` records in each of the five
/// training files and `test` in the test file. Class `c` images carry a bright band at
/// rows 3c..3c+3, so a network can learn them; noise makes every image different.
pub fn synthetic_dataset(root: &Path, train_per_file: usize, test: usize) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = 12345u32;
    let mut record = |index: usize| {
        let class = (index % 10) as u8;
        let mut bytes = vec![class];
        for _ in 0..3 {
            for row in 0..32 {
                for _ in 0..32 {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    let noise = (state >> 26) as u8;
                    bytes.push(if row / 3 == class as usize { 180 } else { 30 } + noise);
                }
            }
        }
        bytes
    };
    let mut index = 0;
    for file in 1..=5 {
        let mut bytes = Vec::new();
        for _ in 0..train_per_file {
            bytes.extend(record(index));
            index += 1;
        }
        std::fs::write(dir.join(format!("data_batch_{file}.bin")), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..test).flat_map(&mut record).collect();
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    dir
}

/// The shared CIFAR-10 archive, when this machine has it.
pub fn shared_archive() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar-10-binary.tar.gz");
    path.exists().then_some(path)
}

/// Every `(kind == "epoch")` record of a run's metrics file.
pub fn epoch_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "epoch")
        .collect()
}

/// The tensors of a safetensors file, by name, as raw bytes.
pub fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort();
    all
}
