//! Ctrl-C during training saves a checkpoint that `--resume` continues from.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn ctrl_c_saves_a_checkpoint_and_the_run_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 16, 10);
    let run = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_cli"))
        .args([
            "train",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1000",
            "--batch-size",
            "8",
            "--log-every",
            "1",
            "--out",
            run.to_str().unwrap(),
            "--no-progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Interrupt once training is under way: the first step has been logged.
    let metrics = run.join("metrics.jsonl");
    let started = Instant::now();
    while !std::fs::read_to_string(&metrics).is_ok_and(|m| m.contains("\"step\"")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training never logged a step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("interrupted at epoch") && err.contains("--resume"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(run.join("model.safetensors").exists());
    assert!(run.join("training_state.safetensors").exists());
    assert!(!run.join("model.safetensors.tmp").exists());

    let output = cli(&[
        "train",
        "--device",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--resume",
        run.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("resuming from"),
        "{}",
        stdout(&output)
    );
}
