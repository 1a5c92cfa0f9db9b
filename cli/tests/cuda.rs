//! `--device cuda` and `--device auto`: without a GPU, one clear error line (or a stated
//! fallback to the CPU); with one, a tiny training run on it.

mod common;

use std::process::{Command, Output};

use common::{assert_clean_failure, stderr, stdout, synthetic_dataset};

/// Runs the cli binary: the one cargo built, or `$CLI_BIN` where this test executable was
/// carried to another machine without its build tree (scripts/gpu-check.sh).
fn cli(args: &[&str]) -> Output {
    let binary = std::env::var("CLI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cli").into());
    Command::new(binary)
        .args(args)
        .env_remove("CIFAR10_PATH")
        .output()
        .expect("the cli binary runs")
}

/// Whether device 0 opens; with `REQUIRE_CUDA=1` (scripts/gpu-check.sh) it must.
fn gpu_present() -> bool {
    models::CudaDevice::open_for_test("cli --device cuda").is_ok()
}

#[test]
fn device_cuda_fails_cleanly_without_a_gpu_or_trains_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let out = dir.path().join("run");
    let args = [
        "train",
        "--device",
        "cuda",
        "--data",
        data.to_str().unwrap(),
        "--no-download",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    let output = cli(&args);
    if !gpu_present() {
        assert_clean_failure(&output, "--device cuda: ");
        let err = stderr(&output);
        assert!(err.contains("use --device cpu"), "{err}");
        assert!(!out.join("model.safetensors").exists());
        println!("no CUDA device here: checked the one-line error instead of a GPU run");
        return;
    }
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("device: cuda:0 ("),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("test accuracy"),
        "{}",
        stdout(&output)
    );
    assert!(out.join("model.safetensors").exists());
}

#[test]
fn device_auto_says_which_device_it_picked() {
    let output = cli(&[
        "bench-step",
        "--device",
        "auto",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let picked = if gpu_present() {
        "device: cuda:0 ("
    } else {
        "device: cpu (no CUDA device: "
    };
    assert!(err.lines().any(|l| l.starts_with(picked)), "{err}");
    assert!(stdout(&output).contains("images/s"), "{}", stdout(&output));
}

#[test]
fn tf32_is_accepted_and_ignored_on_the_cpu() {
    let output = cli(&[
        "bench-step",
        "--device",
        "cpu",
        "--tf32",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("--tf32 only affects CUDA"), "{err}");
}

#[test]
fn precision_bf16_on_cuda_runs_a_step_or_fails_cleanly_without_a_gpu() {
    let output = cli(&[
        "bench-step",
        "--device",
        "cuda",
        "--precision",
        "bf16",
        "--batch-size",
        "8",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    if !gpu_present() {
        assert_clean_failure(&output, "--device cuda: ");
        println!("SKIPPED the bf16-on-CUDA step: no CUDA device here");
        return;
    }
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("images/s"), "{}", stdout(&output));
}
