//! Running the built `cli` binary and making small datasets for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

pub fn cli(args: &[&str]) -> Output {
    command(args).output().expect("the cli binary runs")
}

/// The cli binary with `args`, without `$CIFAR10_PATH` (so nothing outside the test
/// decides where data comes from).
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cli"));
    command.args(args).env_remove("CIFAR10_PATH");
    command
}

/// `cli train --device cpu --no-progress` with `args`.
pub fn train(args: &[&str]) -> Output {
    let mut all = vec!["train", "--device", "cpu", "--no-progress"];
    all.extend_from_slice(args);
    cli(&all)
}

/// `train` on the CPU, 2 epochs of batches of 8 into `run`, with `extra` flags: the short
/// runs the interrupt and kill tests stop.
pub fn short_run<'a>(data: &'a str, run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--device",
        "cpu",
        "--no-progress",
        "--data",
        data,
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A running cli process whose stderr lines arrive on a channel, so a test can wait for
/// one (a `test pause:` line, say) while the process runs.
pub struct Running {
    pub child: Child,
    stderr: Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Running {
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the cli binary starts");
        let (send, stderr) = channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits (up to two minutes: the machine may be busy) for a stderr line equal to
    /// `line`; panics with what was seen if the process ends or the time runs out first.
    pub fn wait_for_line(&mut self, line: &str) {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(120)) {
                Ok(seen) => {
                    let found = seen == line;
                    self.stderr_seen.push(seen);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {line:?} on stderr; the process said: {:?} (status {:?})",
                    self.stderr_seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Sends `signal` (a `kill -s` name: INT, TERM, KILL) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal}");
    }

    /// Waits for the process to end; returns its exit status and all of its stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.stderr_seen.push(line);
        }
        (status, self.stderr_seen.join("\n"))
    }
}

/// The records of a run's metrics file without their timings, which differ between runs.
pub fn metrics_without_timings(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut record: serde_json::Value = serde_json::from_str(l).unwrap();
            for key in ["images_per_sec", "seconds", "total_seconds"] {
                record.as_object_mut().unwrap().remove(key);
            }
            record
        })
        .collect()
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
