//! `--model airbench94` end to end on tiny synthetic data: a few steps of the recipe write
//! a run folder whose checkpoint `eval` (with TTA by default), `predict` and `--resume`
//! use; flags the recipe fixes are one clear error.

mod common;

use std::path::Path;

use common::*;

/// 80 training images (5 steps of 16 an epoch; the recipe's 9.9 epochs are 50 steps) and
/// 40 test images.
fn data(root: &Path) -> String {
    synthetic_dataset(root, 16, 40)
        .to_str()
        .unwrap()
        .to_string()
}

/// `train --model airbench94`, batches of 16, 7 steps (so the run crosses an epoch
/// boundary and a lookahead update) into `run`, with `extra` flags.
fn airbench_args<'a>(data: &'a str, run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--device",
        "cpu",
        "--no-progress",
        "--model",
        "airbench94",
        "--data",
        data,
        "--batch-size",
        "16",
        "--steps",
        "7",
        "--seed",
        "3",
        "--log-every",
        "2",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn airbench94_trains_a_few_steps_into_a_checkpoint_that_eval_and_predict_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let run = dir.path().join("run");
    let output = cli(&airbench_args(&data, &run, &[]));
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    for expected in [
        "whitening initialisation from 80 images",
        "7 steps of batch 16 (stopping after 7 of the recipe's 50)",
        "epoch 1/2 done",
        "epoch 2/2 done",
        "test accuracy without TTA:",
        "test accuracy with TTA (6 passes):",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    let epochs = epoch_records(&run);
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1]["global_step"], 7);
    let test = metrics_without_timings(&run).pop().unwrap();
    assert_eq!(test["kind"], "test");
    assert!(test["tta_accuracy"].as_f64().unwrap() >= 0.0);

    // The checkpoint records its network: PyTorch's names, airbench94's normalization.
    let metadata = models::checkpoint::read_metadata(&run.join("model.safetensors")).unwrap();
    assert_eq!(metadata["model"], "airbench94");
    assert_eq!(metadata["normalization"], "airbench");
    let names: Vec<String> = tensors(&run.join("model.safetensors"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"0.weight".to_string()) && names.contains(&"7.weight".to_string()));

    let run_arg = run.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let args = [
            &["eval", "--device", "cpu", "--checkpoint", run_arg][..],
            extra,
        ]
        .concat();
        let output = cli(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let with_tta = eval(&[]);
    assert!(
        with_tta.contains("with test-time augmentation (6 passes per image")
            && with_tta.contains("of 40 images"),
        "{with_tta}"
    );
    // The final test's TTA accuracy is the one eval finds.
    let tta = test["tta_accuracy"].as_f64().unwrap();
    assert!(
        with_tta.contains(&format!("test accuracy: {tta:.2}%")),
        "{tta} {with_tta}"
    );
    let plain = eval(&["--no-tta"]);
    assert!(!plain.contains("test-time augmentation"), "{plain}");
    let accuracy = test["test_accuracy"].as_f64().unwrap();
    assert!(
        plain.contains(&format!("test accuracy: {accuracy:.2}%")),
        "{accuracy} {plain}"
    );

    let cat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/cat.png");
    let output = cli(&[
        "predict",
        "--device",
        "cpu",
        "--checkpoint",
        run_arg,
        cat.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).matches('%').count(),
        3,
        "{}",
        stdout(&output)
    );

    // A finished run has nothing left to do.
    let output = train(&["--resume", run_arg]);
    assert!(
        output.status.success() && stdout(&output).contains("already finished"),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn an_interrupted_airbench94_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let straight = dir.path().join("straight");
    let output = cli(&airbench_args(&data, &straight, &["--test-limit", "0"]));
    assert!(output.status.success(), "{}", stderr(&output));

    // Stopped after the 3rd step (mid-epoch: momentum, lookahead and position saved).
    let run = dir.path().join("run");
    let mut command = command(&airbench_args(&data, &run, &["--test-limit", "0"]));
    command.env(models::test_pause::ENV_VAR, "train:step#3");
    let mut running = Running::spawn(command);
    running.wait_for_line("test pause: train:step");
    running.signal("INT");
    let (status, stderr_text) = running.finish();
    assert_eq!(status.code(), Some(130), "{stderr_text}");
    assert!(
        stderr_text.contains("interrupted at epoch 1, step 3"),
        "{stderr_text}"
    );

    let output = train(&["--resume", run.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("resuming from"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        metrics_without_timings(&run),
        metrics_without_timings(&straight)
    );
    assert!(
        tensors(&run.join("model.safetensors")) == tensors(&straight.join("model.safetensors")),
        "the resumed run's weights differ from the uninterrupted run's"
    );
}

#[test]
fn flags_the_recipe_fixes_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let run = dir.path().join("run");
    let output = cli(&airbench_args(
        &data,
        &run,
        &["--lr", "0.1", "--epochs", "3"],
    ));
    assert_clean_failure(&output, "--epochs, --lr do not apply to --model airbench94");
    assert!(!run.exists(), "a refused run leaves no folder");

    let output = train(&["--data", &data, "--steps", "3"]);
    assert_clean_failure(&output, "--steps is for --model airbench94");

    let output = cli(&airbench_args(&data, &run, &["--steps", "0"]));
    assert!(!output.status.success());

    // A run's network is one of its settings: a resume cannot change it.
    let output = cli(&airbench_args(&data, &run, &["--test-limit", "0"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = train(&["--resume", run.to_str().unwrap(), "--model", "net"]);
    assert_clean_failure(
        &output,
        "--model: the run was trained with airbench94, this command asks for net",
    );
    // An eval that names another network than the checkpoint's.
    let output = cli(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--model",
        "net",
    ]);
    assert_clean_failure(&output, "holds the airbench94 network, not --model net");
    let output = cli(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--tta",
        "--no-tta",
    ]);
    assert!(!output.status.success());
}

#[test]
fn summary_describes_airbench94() {
    let output = cli(&["summary", "--model", "airbench94", "--batch-size", "1024"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    for expected in [
        "Total params: 1,972,792",
        "[1024, 24, 31, 31]",
        "[1024, 10]",
        "with airbench94's SGD and lookahead",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    let trainable = out
        .lines()
        .find_map(|l| l.strip_prefix("Trainable params: "))
        .unwrap();
    assert_ne!(trainable, "1,972,792", "the whitening weights are frozen");
}

#[test]
fn bench_step_times_steps_of_the_recipe() {
    let output = cli(&[
        "bench-step",
        "--device",
        "cpu",
        "--model",
        "airbench94",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        out.contains("bench-step: airbench94 on cpu f32 batch 8 steps 2:")
            && out.contains("images/s"),
        "{out}"
    );
    let output = cli(&[
        "bench-step",
        "--device",
        "cpu",
        "--model",
        "airbench94",
        "--batch-size",
        "18446744073709551615",
        "--steps",
        "1",
    ]);
    assert_clean_failure(
        &output,
        "a training step at batch 18446744073709551615 needs about",
    );
}
