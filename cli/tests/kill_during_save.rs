//! `kill -9` at every instant of a checkpoint save: the run always resumes from its newest
//! complete checkpoint and ends exactly where an uninterrupted run does.
//!
//! The instants are the test-only pause points of `models::checkpoint::save_checkpoint`:
//! each of its two files half written and fully written, after the training state's
//! rename (the commit) and after the model's. The process stops there and is killed with
//! SIGKILL, as a power cut or the OOM killer would, so no destructor or handler runs.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;

const POINTS: [&str; 6] = [
    "save:state-half",
    "save:state-written",
    "save:model-half",
    "save:model-written",
    "save:state-renamed",
    "save:model-renamed",
];

fn train_args<'a>(data: &'a str, run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    short_run(
        data,
        run,
        // No pictures: the run folder must hold exactly the checkpoint and the metrics.
        &[&["--limit", "16", "--seed", "2", "--no-plots"][..], extra].concat(),
    )
}

/// Starts a training that stops at `pause` and kills it there with SIGKILL.
fn kill_at(data: &str, run: &Path, pause: &str) {
    let mut command = command(&train_args(data, run, &[]));
    command.env(models::test_pause::ENV_VAR, pause);
    let mut running = Running::spawn(command);
    running.wait_for_line(&format!("test pause: {}", pause.split('#').next().unwrap()));
    running.signal("KILL");
    let (status, stderr) = running.finish();
    assert_eq!(status.signal(), Some(9), "{pause}: {stderr}");
}

#[test]
fn a_kill_at_any_instant_of_a_save_leaves_a_run_that_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let data = data.to_str().unwrap();
    let straight = dir.path().join("straight");
    let output = cli(&train_args(data, &straight, &[]));
    assert!(output.status.success(), "{}", stderr(&output));

    // Every instant of the second save (the end of epoch 2, over epoch 1's checkpoint).
    for point in POINTS {
        let run = dir.path().join(point.replace(':', "-"));
        kill_at(data, &run, &format!("{point}#2"));
        let output = train(&[
            "--resume",
            run.to_str().unwrap(),
            "--epochs",
            "2",
            "--no-plots",
        ]);
        assert!(output.status.success(), "{point}: {}", stderr(&output));
        let said = stdout(&output);
        // Before the commit the run continues from epoch 1; from it on, from epoch 2.
        let committed = point == "save:state-renamed" || point == "save:model-renamed";
        let from = if committed {
            "after 2 epochs"
        } else {
            "after 1 epochs"
        };
        assert!(said.contains(from), "{point}: {said}");
        assert_eq!(
            said.contains("completed the checkpoint save that was interrupted"),
            point == "save:state-renamed",
            "{point}: {said}"
        );
        for file in ["model.safetensors", "training_state.safetensors"] {
            assert_eq!(
                tensors(&run.join(file)),
                tensors(&straight.join(file)),
                "{point}: {file}"
            );
        }
        assert_eq!(
            metrics_without_timings(&run),
            metrics_without_timings(&straight),
            "{point}"
        );
        let mut left: Vec<String> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "metrics.jsonl",
                "model.safetensors",
                "training_state.safetensors"
            ],
            "{point}"
        );
    }
}

#[test]
fn a_kill_during_the_first_save_leaves_a_run_to_start_again_not_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 8, 10);
    let data = data.to_str().unwrap();
    let run = dir.path().join("run");
    kill_at(data, &run, "save:model-written#1");

    let output = train(&[
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-plots",
    ]);
    assert_clean_failure(&output, "holds no checkpoint");
    let output = cli(&train_args(data, &run, &[]));
    assert_clean_failure(&output, "--overwrite");
    let output = cli(&train_args(data, &run, &["--overwrite"]));
    assert!(output.status.success(), "{}", stderr(&output));
}
