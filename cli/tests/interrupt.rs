//! Ctrl-C and SIGTERM: a run stops at the next batch boundary of training or evaluation,
//! saves, exits with status 130 and the `--resume` hint, and the resumed run ends exactly
//! where an uninterrupted one does (metrics included); a second Ctrl-C quits at once.
//!
//! The exact instants come from the test-only `CIFAR_RS_TEST_PAUSE` points (a process
//! stops there and waits for the signal), so these tests do not depend on timing.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// 40 training images (5 steps of 8 an epoch) and 300 test images (two evaluation
/// batches of 256).
fn data(root: &Path) -> String {
    synthetic_dataset(root, 8, 300)
        .to_str()
        .unwrap()
        .to_string()
}

fn train_command(data: &str, run: &Path, extra: &[&str]) -> Command {
    let flags = [&["--log-every", "2", "--seed", "4"][..], extra].concat();
    command(&short_run(data, run, &flags))
}

/// Runs a training that pauses at `pause`, sends `signal` there, and checks how it ends.
fn interrupt_at(data: &str, run: &Path, extra: &[&str], pause: &str, signal: &str) -> String {
    let mut command = train_command(data, run, extra);
    command.env(models::test_pause::ENV_VAR, pause);
    let mut running = Running::spawn(command);
    let point = pause.split('#').next().unwrap();
    running.wait_for_line(&format!("test pause: {point}"));
    running.signal(signal);
    let (status, stderr) = running.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("checkpoint saved, continue with --resume") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

fn resume(run: &Path) -> std::process::Output {
    let output = train(&["--resume", run.to_str().unwrap(), "--epochs", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

#[test]
fn sigterm_mid_epoch_saves_and_the_resumed_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let straight = dir.path().join("straight");
    assert!(train_command(&data, &straight, &[])
        .output()
        .unwrap()
        .status
        .success());

    // After the third step of the first epoch, mid-way through its second log window.
    let run = dir.path().join("run");
    let stderr = interrupt_at(&data, &run, &[], "train:step#3", "TERM");
    assert!(
        stderr.contains("interrupted at epoch 1, step 3"),
        "{stderr}"
    );
    resume(&run);

    // The interrupted epoch's loss and accuracy cover all of its steps, the log windows
    // continue across the interruption, and the weights end the same.
    assert_eq!(
        metrics_without_timings(&run),
        metrics_without_timings(&straight)
    );
    for file in ["model.safetensors", "training_state.safetensors"] {
        assert_eq!(
            tensors(&run.join(file)),
            tensors(&straight.join(file)),
            "{file}"
        );
    }
}

#[test]
fn ctrl_c_during_an_evaluation_stops_at_its_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let every = ["--eval-every-epoch"];
    let straight = dir.path().join("straight");
    assert!(train_command(&data, &straight, &every)
        .output()
        .unwrap()
        .status
        .success());

    // Before the second batch of the evaluation after epoch 1, then of the final test:
    // each evaluation has two batches, so "eval:final#2" is in the final test.
    for (pause, said) in [
        (
            "eval:epoch#2",
            "interrupted during the evaluation after epoch 1",
        ),
        ("eval:final#2", "interrupted during the final test"),
    ] {
        let run = dir.path().join(pause.replace([':', '#'], "-"));
        let stderr = interrupt_at(&data, &run, &every, pause, "INT");
        assert!(stderr.contains(said), "{stderr}");
        assert!(
            !std::fs::read_to_string(run.join("metrics.jsonl"))
                .unwrap()
                .contains("\"test\""),
            "{pause}: no test was logged"
        );
        let output = resume(&run);
        assert!(
            stdout(&output).contains("test accuracy: "),
            "{}",
            stdout(&output)
        );
        assert_eq!(
            metrics_without_timings(&run),
            metrics_without_timings(&straight),
            "{pause}"
        );
        // A finished run has nothing left to do.
        let again = resume(&run);
        assert!(
            stdout(&again).contains("nothing to do"),
            "{}",
            stdout(&again)
        );
    }
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_the_last_checkpoint_still_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let run = dir.path().join("run");
    // Paused half-way through writing the model of the second save (end of epoch 2):
    // the first Ctrl-C asks for a stop the save cannot reach yet; the second quits.
    let mut command = train_command(&data, &run, &[]);
    command.env(models::test_pause::ENV_VAR, "save:model-half#2");
    let mut running = Running::spawn(command);
    running.wait_for_line("test pause: save:model-half");
    let started = Instant::now();
    running.signal("INT");
    running.wait_for_line(
        "interrupt: stopping at the next batch boundary and saving (interrupt again to quit at once)",
    );
    running.signal("INT");
    let (status, stderr) = running.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("second interrupt: quitting now"),
        "{stderr}"
    );
    // Well before the pause (60 s) would have ended by itself.
    assert!(started.elapsed() < Duration::from_secs(50), "{stderr}");

    let output = resume(&run);
    assert!(
        stdout(&output).contains("resuming from") && stdout(&output).contains("after 1 epochs"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn ctrl_c_at_a_random_moment_saves_a_checkpoint_the_run_resumes_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 16, 10);
    let run = dir.path().join("run");
    let running = Running::spawn(command(&[
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
    ]));

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
    running.signal("INT");
    let (status, said) = running.finish();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(status.signal().is_none(), "{said}");
    assert!(
        said.contains("interrupted ") && said.contains("--resume"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert!(run.join("model.safetensors").exists());
    assert!(run.join("training_state.safetensors").exists());
    assert!(!run.join("model.safetensors.tmp").exists());

    // Continue to the end of the epoch it stopped in (or the next, if it stopped between).
    let epoch = |marker: &str| -> Option<u64> {
        let rest = &said[said.find(marker)? + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let epochs = epoch("at epoch ")
        .or_else(|| epoch("after epoch ").map(|e| e + 1))
        .unwrap_or_else(|| panic!("where did it stop? {said}"));
    let output = train(&[
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        &epochs.to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("resuming from"),
        "{}",
        stdout(&output)
    );
}
