//! The pictures end to end: `train` draws them when it finishes, `plot` draws them for one
//! run or two, `predict --explain` draws a saliency map, and bad run folders get one
//! clear error.

mod common;

use std::path::Path;

use common::*;

/// Each picture's stated size (the README's Pictures section).
const CURVES: (u32, u32) = (1500, 520);
const CONFUSION: (u32, u32) = (840, 800);
const MISTAKES: (u32, u32) = (940, 788);
const FILTERS: (u32, u32) = (560, 528);
const SALIENCY: (u32, u32) = (864, 380);

/// Asserts `path` is a PNG of `size` whose pixels are not all one colour.
fn assert_picture(path: &Path, size: (u32, u32)) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png,
        "{}",
        path.display()
    );
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), size, "{}", path.display());
    let first = image.get_pixel(0, 0);
    let colours = image.pixels().filter(|p| *p != first).count();
    assert!(colours > 1000, "{} is nearly one colour", path.display());
}

/// Trains one epoch on `data` into `run`, with `extra` arguments.
fn train(data: &Path, run: &Path, extra: &[&str]) {
    let mut args = vec![
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
        "--eval-every-epoch",
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    let output = cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn train_draws_the_pictures_and_plot_redraws_and_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 30);
    let run = dir.path().join("run");
    train(&data, &run, &[]);
    assert_picture(&run.join("curves.png"), CURVES);
    assert_picture(&run.join("confusion.png"), CONFUSION);
    assert_picture(&run.join("mistakes.png"), MISTAKES);
    assert_picture(&run.join("filters.png"), FILTERS);

    let quiet = dir.path().join("quiet");
    train(&data, &quiet, &["--no-plots", "--seed", "3"]);
    assert!(quiet.join("model.safetensors").exists());
    assert!(!quiet.join("curves.png").exists());

    let out = dir.path().join("compared");
    let output = cli(&[
        "plot",
        run.to_str().unwrap(),
        quiet.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("test accuracy"),
        "{}",
        stdout(&output)
    );
    for (name, size) in [
        ("curves.png", CURVES),
        ("confusion.png", CONFUSION),
        ("mistakes.png", MISTAKES),
        ("filters.png", FILTERS),
    ] {
        assert_picture(&out.join(name), size);
    }
    // Two runs are drawn in two sets of colours: the second run's train colour (green)
    // appears only in the comparison.
    let green = |path: &Path| {
        image::open(path)
            .unwrap()
            .to_rgb8()
            .pixels()
            .filter(|p| p.0 == [44, 160, 44])
            .count()
    };
    assert!(green(&out.join("curves.png")) > 50);
    assert_eq!(green(&run.join("curves.png")), 0);
}

#[test]
fn predict_explain_writes_a_saliency_map_beside_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let run = dir.path().join("run");
    train(&data, &run, &["--no-plots"]);
    let photo = dir.path().join("photo.png");
    image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 6, 128]))
        .save(&photo)
        .unwrap();
    let output = cli(&[
        "predict",
        "--device",
        "cpu",
        "--checkpoint",
        run.to_str().unwrap(),
        "--explain",
        photo.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let saliency = dir.path().join("photo.png.saliency.png");
    assert!(
        stdout(&output).contains("photo.png.saliency.png"),
        "{}",
        stdout(&output)
    );
    assert_picture(&saliency, SALIENCY);
}

#[test]
fn bad_run_folders_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    let output = cli(&["plot", path("nowhere").to_str().unwrap()]);
    assert_clean_failure(&output, "no such folder");

    std::fs::create_dir(path("empty")).unwrap();
    let output = cli(&["plot", path("empty").to_str().unwrap()]);
    assert_clean_failure(&output, "has no metrics.jsonl");

    std::fs::write(path("file"), b"x").unwrap();
    let output = cli(&["plot", path("file").to_str().unwrap()]);
    assert_clean_failure(&output, "is not a run folder");

    std::fs::create_dir(path("garbled")).unwrap();
    std::fs::write(path("garbled/metrics.jsonl"), "{\"kind\":\"epoch\"\n").unwrap();
    let output = cli(&["plot", path("garbled").to_str().unwrap()]);
    assert_clean_failure(&output, "metrics.jsonl line 1");

    // Metrics but no checkpoint.
    std::fs::create_dir(path("no-model")).unwrap();
    std::fs::write(
        path("no-model/metrics.jsonl"),
        "{\"kind\":\"epoch\",\"epoch\":1,\"global_step\":5,\"train_loss\":2.0,\"train_accuracy\":20.0}\n",
    )
    .unwrap();
    let output = cli(&["plot", path("no-model").to_str().unwrap()]);
    assert_clean_failure(&output, "has no model.safetensors");

    // A checkpoint that is not one, and then no data.
    std::fs::write(path("no-model/model.safetensors"), b"junk").unwrap();
    let output = cli(&[
        "plot",
        path("no-model").to_str().unwrap(),
        "--data",
        path("nowhere").to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "need the CIFAR-10 test set");
    let data = synthetic_dataset(dir.path(), 1, 4);
    let output = cli(&[
        "plot",
        path("no-model").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&output, "not a valid safetensors");

    let output = cli(&["plot", "a", "b", "c"]);
    assert!(!output.status.success());
}
