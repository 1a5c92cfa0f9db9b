//! The README's "Use" examples run as written, in order, from a copy of the project root:
//! every command of its `sh` block, with the project's data location swapped for a small
//! generated dataset (the real one takes hours) and the 20-epoch recipe cut to one epoch.

mod common;

use std::path::Path;

use common::*;

const SHARED_DATA: &str = "../shared/data/cifar-10-binary.tar.gz";

/// The `cargo run --release -p cli -- ...` lines of the README's "Use" section, as
/// argument lists.
fn use_examples(readme: &str) -> Vec<Vec<String>> {
    let section = &readme[readme.find("## Use").expect("a Use section")..];
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an sh block in the Use section");
    block
        .lines()
        .filter_map(|line| line.trim().strip_prefix("cargo run --release -p cli -- "))
        .map(|args| args.split_whitespace().map(String::from).collect())
        .collect()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_readme_use_examples_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = use_examples(&readme);
    assert!(examples.len() >= 6, "{examples:?}");

    // The project root with what the examples read: the example images, and in place of
    // ../shared/data a small dataset (`project/` stands for the root, so `..` is `dir`).
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    copy_folder(&root.join("docs/examples"), &project.join("docs/examples"));
    let data = synthetic_dataset(&dir.path().join("generated"), 8, 20);
    let stand_in = data.to_str().unwrap();

    for example in &examples {
        let mut args: Vec<&str> = example
            .iter()
            .map(|a| {
                if a == SHARED_DATA {
                    stand_in
                } else {
                    a.as_str()
                }
            })
            .collect();
        let starts_a_run = args[0] == "train" && !args.contains(&"--resume");
        if starts_a_run {
            assert!(
                example.iter().any(|a| a == "--data"),
                "a train example that starts a run names its data: {example:?}"
            );
            assert!(example.iter().any(|a| a == "--out"), "{example:?}");
        }
        if args[0] == "train" {
            args.push("--no-progress");
            if !args.contains(&"--epochs") {
                // The 20-epoch recipe: one epoch says it runs.
                args.extend(["--epochs", "1"]);
            }
        }
        let output = command(&args).current_dir(&project).output().unwrap();
        assert!(
            output.status.success(),
            "{example:?} failed: {}{}",
            stdout(&output),
            stderr(&output)
        );
        if args[0] == "predict" {
            assert_eq!(stdout(&output).lines().count(), 2, "{}", stdout(&output));
        }
        if args.contains(&"--resume") {
            let text = stdout(&output);
            assert!(text.contains("training on 40 images"), "{text}");
        }
    }

    // How long the default run takes on a 2-core CPU, in the same section.
    let section = &readme[readme.find("## Use").unwrap()..readme.find("## CUDA").unwrap()];
    assert!(
        section.contains("20-epoch run on a 2-core CPU takes about"),
        "{section}"
    );
}
