//! The command line end to end: training on real or generated data, determinism, exact
//! resume, evaluation, prediction, and one clear error line for every bad input.

mod common;

use common::*;

#[test]
fn summary_prints_every_layer_and_the_total() {
    let output = cli(&["summary"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("Total params: 10,899,914"), "{text}");
    assert!(
        text.contains("layer3.2") && text.contains("[1, 128, 11, 11]"),
        "{text}"
    );
    assert!(text.contains("[1, 10]"), "{text}");
}

#[test]
fn training_on_real_cifar10_lowers_the_loss_and_beats_chance() {
    // A few hundred images of the shared archive when it is here, generated ones otherwise.
    // 90 steps at a gentle learning rate: enough to move a 10.9M-parameter network off chance
    // on 480 images (19% on 300 test images here), short enough for CI.
    let dir = tempfile::tempdir().unwrap();
    let data = match shared_archive() {
        Some(archive) => archive,
        None => {
            eprintln!("note: ../shared/data/cifar-10-binary.tar.gz is absent, training on generated images");
            synthetic_dataset(dir.path(), 100, 200)
        }
    };
    let run = dir.path().join("run");
    let output = cli(&[
        "train",
        "--device",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--no-download",
        "--epochs",
        "3",
        "--limit",
        "480",
        "--test-limit",
        "300",
        "--seed",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-4",
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let epochs = epoch_records(&run);
    assert_eq!(epochs.len(), 3);
    let loss = |i: usize| epochs[i]["train_loss"].as_f64().unwrap();
    assert!(
        loss(2) < loss(0),
        "train losses {} {} {}",
        loss(0),
        loss(1),
        loss(2)
    );
    let text = stdout(&output);
    let accuracy: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy: "))
        .and_then(|v| v.split('%').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in {text}"));
    assert!(
        accuracy > 14.0,
        "test accuracy {accuracy}% is not clearly above chance (10%)"
    );
    assert!(
        run.join("model.safetensors").exists() && run.join("training_state.safetensors").exists()
    );
}

#[test]
fn the_same_seed_gives_the_same_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 12, 10);
    let train = |name: &str| {
        let run = dir.path().join(name);
        let output = cli(&[
            "train",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--log-every",
            "2",
            "--seed",
            "3",
            "--out",
            run.to_str().unwrap(),
            "--no-progress",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        // The notebook's line every --log-every steps, also without a progress bar.
        let printed = stdout(&output);
        assert!(printed.contains("Epoch: 2, loss: "), "{printed}");
        metrics_without_timings(&run)
    };
    let (first, second) = (train("a"), train("b"));
    assert!(
        first.iter().filter(|r| r["kind"] == "step").count() >= 6,
        "{first:?}"
    );
    assert_eq!(first, second);
}

#[test]
fn a_resumed_run_ends_exactly_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let data = data.to_str().unwrap();
    let common = [
        "--device",
        "cpu",
        "--data",
        data,
        "--batch-size",
        "8",
        "--seed",
        "9",
        "--no-progress",
    ];
    let straight = dir.path().join("straight");
    let resumed = dir.path().join("resumed");

    let mut args = vec![
        "train",
        "--epochs",
        "2",
        "--out",
        straight.to_str().unwrap(),
    ];
    args.extend(common);
    assert!(cli(&args).status.success());

    let mut args = vec!["train", "--epochs", "1", "--out", resumed.to_str().unwrap()];
    args.extend(common);
    assert!(cli(&args).status.success());
    let mut args = vec![
        "train",
        "--epochs",
        "2",
        "--resume",
        resumed.to_str().unwrap(),
    ];
    args.extend(common);
    let output = cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("resuming from"),
        "{}",
        stdout(&output)
    );

    assert_eq!(
        tensors(&straight.join("model.safetensors")),
        tensors(&resumed.join("model.safetensors"))
    );
    assert_eq!(
        tensors(&straight.join("training_state.safetensors")),
        tensors(&resumed.join("training_state.safetensors"))
    );
}

#[test]
fn eval_and_predict_use_a_trained_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 20);
    let run = dir.path().join("run");
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
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let output = cli(&[
        "eval",
        "--device",
        "cpu",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("test accuracy:") && text.contains("of 20 images"),
        "{text}"
    );
    assert!(
        text.contains("confusion matrix") && text.contains("airplane"),
        "{text}"
    );

    // A PNG and a JPEG of sizes other than 32x32.
    let png = dir.path().join("wide.png");
    image::RgbImage::from_fn(64, 40, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 128]))
        .save(&png)
        .unwrap();
    let jpeg = dir.path().join("small.jpg");
    image::RgbImage::from_fn(20, 20, |x, _| image::Rgb([200, x as u8 * 10, 30]))
        .save(&jpeg)
        .unwrap();
    let output = cli(&[
        "predict",
        "--device",
        "cpu",
        "--checkpoint",
        run.to_str().unwrap(),
        png.to_str().unwrap(),
        jpeg.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        assert_eq!(line.matches('%').count(), 3, "top-3 expected: {line}");
    }
}

#[test]
fn bad_input_gets_one_clear_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let missing = missing.to_str().unwrap();

    let output = cli(&[
        "train",
        "--device",
        "cpu",
        "--data",
        missing,
        "--no-download",
    ]);
    assert_clean_failure(&output, "nowhere");

    let output = cli(&["train", "--device", "cpu", "--epochs", "0"]);
    assert_clean_failure(&output, "--epochs");

    let output = cli(&["train", "--device", "cpu", "--lr=-1"]);
    assert_clean_failure(&output, "--lr");

    let output = cli(&[
        "train",
        "--device",
        "cpu",
        "--workers",
        "18446744073709551615",
    ]);
    assert_clean_failure(&output, "--workers");

    let output = cli(&["eval", "--device", "cpu", "--checkpoint", missing]);
    assert_clean_failure(&output, "nowhere");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let output = cli(&[
        "predict",
        "--device",
        "cpu",
        "--checkpoint",
        garbage.to_str().unwrap(),
        "x.png",
    ]);
    assert_clean_failure(&output, "not a valid safetensors");

    let output = cli(&["train", "--device", "tpu"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid value 'tpu'"),
        "{}",
        stderr(&output)
    );

    let output = cli(&[
        "train", "--device", "cpu", "--resume", missing, "--data", missing,
    ]);
    assert_clean_failure(&output, "nowhere");
}

#[test]
fn training_into_a_folder_holding_a_run_is_refused_unless_overwrite_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 4, 10);
    let run = dir.path().join("run");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--out",
        run.to_str().unwrap(),
    ];
    assert!(train(&args).status.success());
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let metrics = std::fs::read(run.join("metrics.jsonl")).unwrap();

    let output = train(&[&args[..], &["--seed", "5"]].concat());
    assert_clean_failure(&output, "already holds a run");
    let err = stderr(&output);
    assert!(
        err.contains(run.to_str().unwrap())
            && err.contains(&format!("--resume {}", run.display()))
            && err.contains("another --out"),
        "{err}"
    );
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);
    assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), metrics);

    let output = train(&[&args[..], &["--seed", "5", "--overwrite"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_ne!(std::fs::read(run.join("model.safetensors")).unwrap(), model);
    assert_eq!(epoch_records(&run).len(), 1, "only the new run's log");

    // A folder that exists but holds no run is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut args = args.to_vec();
    let last = args.len() - 1;
    args[last] = empty.to_str().unwrap();
    assert!(train(&args).status.success());
}

#[test]
fn a_resumed_run_takes_its_settings_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--limit",
        "16",
        "--batch-size",
        "8",
        "--lr",
        "5e-4",
        "--out",
        run_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    // As the README writes it: only the run folder and the new number of epochs. The data
    // location, --limit 16 and the batch size come from the checkpoint.
    let output = train(&["--resume", run_arg, "--epochs", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("training on 16 images")
            && text.contains("epochs of batch 8")
            && text.contains("lr 0.0005"),
        "{text}"
    );
    assert_eq!(epoch_records(&run)[1]["global_step"], 4);

    // Giving a setting again with its value is fine; another value is one error line
    // naming the setting and both values, and nothing is trained.
    let output = train(&[
        "--resume", run_arg, "--epochs", "3", "--limit", "20", "--lr", "5e-4",
    ]);
    assert_clean_failure(
        &output,
        "--limit: the run was trained with 16, this command asks for 20",
    );
    assert!(!stderr(&output).contains("Some("), "{}", stderr(&output));
    assert_eq!(epoch_records(&run).len(), 2);
    let output = train(&["--resume", run_arg, "--epochs", "3", "--limit", "16"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(epoch_records(&run).len(), 3);

    // Other data under the same settings is not this run's data: one pixel differs.
    let other = synthetic_dataset(&dir.path().join("other"), 8, 10);
    let first = other.join("data_batch_1.bin");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let output = train(&[
        "--resume",
        run_arg,
        "--epochs",
        "4",
        "--data",
        other.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "are not the ones the run");
}

#[test]
fn a_data_location_that_does_not_exist_is_an_error_never_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("cifar-typo");
    let output = train(&["--data", typo.to_str().unwrap()]);
    assert_clean_failure(&output, "cifar-typo");
    assert!(!stderr(&output).contains("download"), "{}", stderr(&output));
    assert!(!typo.exists());
    // A start that fails leaves no run folder behind.
    let output = train(&[
        "--data",
        typo.to_str().unwrap(),
        "--out",
        dir.path().join("run-x").to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "cifar-typo");
    assert!(!dir.path().join("run-x").exists());

    let from_env = dir.path().join("from-env");
    let output = command(&["train", "--device", "cpu"])
        .env("CIFAR10_PATH", &from_env)
        .output()
        .unwrap();
    assert_clean_failure(&output, "from-env");
    assert!(
        stderr(&output).contains("CIFAR10_PATH"),
        "{}",
        stderr(&output)
    );
    assert!(!from_env.exists());

    // `eval` of a run folder reads the data the run trained on, from anywhere.
    let data = synthetic_dataset(&dir.path().join("elsewhere"), 4, 12);
    let run = dir.path().join("run");
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let cwd = tempfile::tempdir().unwrap();
    let output = command(&[
        "eval",
        "--device",
        "cpu",
        "--checkpoint",
        run.to_str().unwrap(),
    ])
    .current_dir(cwd.path())
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("of 12 images"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing downloaded"
    );
}

#[test]
fn batch_sizes_beyond_the_data_or_the_memory_are_clamped_or_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 4, 10);
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "100000",
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "note: --batch-size 100000 is more than the 20 training images: using batches of 20"
        ),
        "{}",
        stdout(&output)
    );

    for batch in ["100000", "18446744073709551615"] {
        let output = cli(&[
            "bench-step",
            "--device",
            "cpu",
            "--batch-size",
            batch,
            "--steps",
            "1",
        ]);
        assert_clean_failure(
            &output,
            &format!("a training step at batch {batch} needs about"),
        );
        assert!(
            stderr(&output).contains("is available: use --batch-size"),
            "{}",
            stderr(&output)
        );

        let output = cli(&["summary", "--batch-size", batch]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains(&format!("[{batch}, 64, 32, 32]"))
                && text.contains(&format!(
                    "Training step at batch {batch} with Adam, estimated: "
                )),
            "{text}"
        );
    }
    let output = cli(&["summary", "--batch-size", "0"]);
    assert_clean_failure(&output, "--batch-size");
}

#[test]
fn the_output_tells_no_small_lies() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 4, 10);
    let run = dir.path().join("run");

    // --test-limit 0: no test, said so, nothing logged as one.
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--log-every",
        "1",
        "--test-limit",
        "0",
        "--eval-every-epoch",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("test: skipped (--test-limit 0)"), "{text}");
    assert!(!text.contains("test accuracy"), "{text}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(
        !metrics.contains("test_loss") && !metrics.contains("\"test\""),
        "{metrics}"
    );

    // The every-N-steps lines and the epoch line round loss to 4 decimals and accuracy
    // to 2, like the final test line.
    let decimals = |number: &str| number.split_once('.').map_or(0, |(_, d)| d.len());
    let mut step_lines = 0;
    for line in text.lines().filter(|l| l.starts_with("Epoch: ")) {
        let (loss, accuracy) = line
            .strip_prefix("Epoch: 1, loss: ")
            .and_then(|rest| rest.split_once(", accuracy: "))
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(decimals(loss), 4, "{line}");
        assert_eq!(decimals(accuracy.trim_end_matches('%')), 2, "{line}");
        step_lines += 1;
    }
    assert_eq!(step_lines, 5, "{text}");

    // --nesterov or --momentum with Adam is an error, not ignored.
    for flag in [&["--nesterov"][..], &["--momentum", "0.5"]] {
        let output = train(
            &[
                &["--data", data.to_str().unwrap(), "--epochs", "1"][..],
                flag,
            ]
            .concat(),
        );
        assert_clean_failure(&output, "is for SGD");
    }

    // The help states the real defaults, and says what --batch-size and --optimizer are.
    let help = stdout(&cli(&["train", "--help"]));
    for expected in [
        "[default: runs/train-<unix seconds>]",
        "Images per training step",
        "[default: 32]",
        "The optimizer: the notebook's Adam",
        "[default: adam]",
    ] {
        assert!(help.contains(expected), "{expected:?} missing from {help}");
    }

    // predict: every file gets its line; formats are told apart by content.
    let png_named_jpg = dir.path().join("really-a-png.jpg");
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    std::fs::write(&png_named_jpg, bytes.into_inner()).unwrap();
    let text_file = dir.path().join("notes.png");
    std::fs::write(&text_file, "not an image").unwrap();
    let missing = dir.path().join("missing.png");
    let jpeg = dir.path().join("photo.jpeg");
    image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([200, x as u8 * 10, 30]))
        .save(&jpeg)
        .unwrap();
    let paths = [&png_named_jpg, &text_file, &missing, &jpeg];
    let mut args = vec![
        "predict",
        "--device",
        "cpu",
        "--checkpoint",
        run.to_str().unwrap(),
    ];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let output = cli(&args);
    assert_clean_failure(&output, "2 of 4 images could not be read");
    let text = stdout(&output);
    let err = stderr(&output);
    for good in [&png_named_jpg, &jpeg] {
        assert!(text.contains(&format!("{}: ", good.display())), "{text}");
    }
    assert!(
        err.contains(&format!(
            "{}: cannot read image: not an image",
            text_file.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: cannot read image", missing.display())),
        "{err}"
    );
}
