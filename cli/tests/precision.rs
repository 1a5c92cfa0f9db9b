//! `--precision f32|bf16` on `train`, `eval`, `predict` and `bench-step` (CPU).

mod common;

use common::{assert_clean_failure, cli, epoch_records, stderr, stdout, synthetic_dataset, train};
use models::{Device, Precision};

/// Whether this CPU runs bf16 products; prints why not when it does not.
fn bf16_or_skip() -> bool {
    match Precision::Bf16.check(Device::Cpu) {
        Ok(()) => true,
        Err(e) => {
            println!("SKIPPED: this CPU cannot run bf16: {e}");
            false
        }
    }
}

#[test]
fn bench_step_runs_in_bf16() {
    if !bf16_or_skip() {
        return;
    }
    let output = cli(&[
        "bench-step",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("bench-step: net on cpu bf16 batch 4 steps 2:") && text.contains("images/s"),
        "{text}"
    );
    let loss: f64 = text
        .rsplit("last loss ")
        .next()
        .and_then(|s| s.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no loss in {text}"));
    assert!(loss.is_finite() && loss > 0.0, "{text}");
}

#[test]
fn a_bf16_run_trains_resumes_in_bf16_and_its_checkpoint_evaluates_and_predicts() {
    if !bf16_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 20);
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--precision",
        "bf16",
        "--epochs",
        "1",
        "--limit",
        "16",
        "--batch-size",
        "8",
        "--out",
        run_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("on cpu in bf16"),
        "{}",
        stdout(&output)
    );
    let loss = epoch_records(&run)[0]["train_loss"].as_f64();
    assert!(
        loss.is_some_and(f64::is_finite),
        "{:?}",
        epoch_records(&run)
    );

    // The precision is one of the run's settings: a resume keeps it, and asking for
    // another is refused naming both.
    let output = train(&["--resume", run_arg, "--epochs", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("on cpu in bf16"),
        "{}",
        stdout(&output)
    );
    let output = train(&["--resume", run_arg, "--epochs", "3", "--precision", "f32"]);
    assert_clean_failure(
        &output,
        "--precision: the run was trained with bf16, this command asks for f32",
    );

    let output = cli(&[
        "eval",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--checkpoint",
        run_arg,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("of 20 images"),
        "{}",
        stdout(&output)
    );

    let png = dir.path().join("image.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 7, y as u8 * 5, 90]))
        .save(&png)
        .unwrap();
    let output = cli(&[
        "predict",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--checkpoint",
        run_arg,
        png.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).matches('%').count(),
        3,
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_bad_precision_is_one_clear_error() {
    for command in ["train", "eval", "predict", "bench-step"] {
        let output = cli(&[command, "--precision", "fp16"]);
        assert_clean_failure(&output, "'fp16'");
        let err = stderr(&output);
        assert!(
            err.contains("--precision") && err.contains("f32, bf16"),
            "{err}"
        );
    }
}
