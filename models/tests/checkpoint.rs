//! Checkpoints: round trips, strictness, clear errors, atomic writes, and the pair of
//! files saved as one unit.

mod checkpoint_support;

use std::collections::HashMap;
use std::path::Path;

use checkpoint_support::{batch, progress, small_model};
use models::checkpoint::{
    load_model, load_training_state, save_checkpoint, save_model, save_training_state, Checkpoint,
    MODEL_FILE, TRAINING_STATE_FILE,
};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::train_step;
use models::{Device, Net};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

fn all_values(net: &mut Net) -> Vec<Vec<f32>> {
    let mut values = Vec::new();
    net.visit_state(&mut |_, entry| match entry {
        models::layers::StateEntry::Parameter(t) | models::layers::StateEntry::Buffer(t) => {
            values.push(t.to_vec_f32().unwrap())
        }
        _ => {}
    });
    values
}

#[test]
fn a_saved_model_loads_back_identically_with_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut trained = Net::new(1, Device::Cpu).unwrap();
    let mut optimizer =
        Optimizer::Adam(Adam::new(trained.parameters(), AdamConfig::default()).unwrap());
    train_step(&mut trained, &mut optimizer, &batch(1, 4), Device::Cpu).unwrap();
    save_model(
        &mut trained,
        &path,
        HashMap::from([("note".into(), "hi".into())]),
    )
    .unwrap();

    let mut fresh = Net::new(2, Device::Cpu).unwrap();
    let metadata = load_model(&mut fresh, &path).unwrap();
    assert_eq!(metadata.get("note").map(String::as_str), Some("hi"));
    assert_eq!(all_values(&mut fresh), all_values(&mut trained));
    let mut tracked = Vec::new();
    fresh.visit_state(&mut |name, entry| {
        if let models::layers::StateEntry::Counter(c) = entry {
            tracked.push((name.to_string(), *c));
        }
    });
    assert_eq!(tracked.len(), 5);
    assert!(tracked.iter().all(|(_, c)| *c == 1), "{tracked:?}");
    assert!(!dir.path().join("model.safetensors.tmp").exists());
}

#[test]
fn loading_garbage_missing_or_mismatched_files_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new(0, Device::Cpu).unwrap();

    let missing = dir.path().join("nope.safetensors");
    let err = load_model(&mut net, &missing).unwrap_err().to_string();
    assert!(
        err.contains("nope.safetensors") && err.contains("cannot read"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not safetensors").unwrap();
    let err = load_model(&mut net, &garbage).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    // A checkpoint of a different layer: names and shapes are reported.
    let mut init = models::layers::ParamInit::new(0, Device::Cpu);
    let mut other = models::layers::Linear::new(&mut init, 3, 2).unwrap();
    let small = dir.path().join("small.safetensors");
    save_model(&mut other, &small, HashMap::new()).unwrap();
    let err = load_model(&mut net, &small).unwrap_err().to_string();
    assert!(
        err.contains("missing layer1.0.weight") && err.contains("unexpected entries"),
        "{err}"
    );

    let mut linear = models::layers::Linear::new(&mut init, 4, 2).unwrap();
    let err = load_model(&mut linear, &small).unwrap_err().to_string();
    assert!(
        err.contains("weight has shape [2, 3] in the file, the model expects [2, 4]"),
        "{err}"
    );
}

/// Trains four steps straight, and two steps, a save, a restore into a network built from
/// another seed, and two more; `edit` may rewrite the saved training state in between.
/// Both runs must see the same losses and end with the same weights.
fn resume_matches_an_uninterrupted_run(edit: impl Fn(&Path)) -> models::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (model_path, state_path) = (
        dir.path().join("m.safetensors"),
        dir.path().join("s.safetensors"),
    );
    let progress = progress(2);

    // Uninterrupted: four steps.
    let mut straight = Net::new(5, Device::Cpu).unwrap();
    let mut straight_opt =
        Optimizer::Adam(Adam::new(straight.parameters(), AdamConfig::default()).unwrap());
    let mut straight_losses = Vec::new();
    for step in 0..4 {
        straight_losses.push(
            train_step(
                &mut straight,
                &mut straight_opt,
                &batch(step, 3),
                Device::Cpu,
            )
            .unwrap()
            .loss,
        );
    }

    // Interrupted after two steps, saved, rebuilt from another seed, restored, continued.
    let mut first = Net::new(5, Device::Cpu).unwrap();
    let mut first_opt =
        Optimizer::Adam(Adam::new(first.parameters(), AdamConfig::default()).unwrap());
    let mut resumed_losses = Vec::new();
    for step in 0..2 {
        resumed_losses.push(
            train_step(&mut first, &mut first_opt, &batch(step, 3), Device::Cpu)
                .unwrap()
                .loss,
        );
    }
    save_training_state(&state_path, &mut first, &first_opt, &progress).unwrap();
    save_model(&mut first, &model_path, HashMap::new()).unwrap();
    drop((first, first_opt));
    edit(&state_path);

    let mut second = Net::new(99, Device::Cpu).unwrap();
    let mut second_opt =
        Optimizer::Adam(Adam::new(second.parameters(), AdamConfig::default()).unwrap());
    load_model(&mut second, &model_path).unwrap();
    let restored = load_training_state(&state_path, &mut second, &mut second_opt)?;
    assert_eq!(restored, progress);
    for step in 2..4 {
        resumed_losses.push(
            train_step(&mut second, &mut second_opt, &batch(step, 3), Device::Cpu)
                .unwrap()
                .loss,
        );
    }
    assert_eq!(resumed_losses, straight_losses);
    assert_eq!(all_values(&mut second), all_values(&mut straight));
    Ok(())
}

#[test]
fn training_state_restores_the_optimizer_and_dropout_streams_exactly() {
    resume_matches_an_uninterrupted_run(|_| {}).unwrap();
}

/// Rewrites a training-state file keeping the entries `keep` accepts, plus `extra` u64 scalars.
fn rewrite_state(path: &Path, keep: impl Fn(&str) -> bool, extra: &[(&str, u64)]) {
    let bytes = std::fs::read(path).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone();
    let stored = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, TensorView<'_>)> = stored
        .tensors()
        .into_iter()
        .filter(|(name, _)| keep(name))
        .collect();
    let extra_bytes: Vec<(String, [u8; 8])> = extra
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_le_bytes()))
        .collect();
    for (name, value) in &extra_bytes {
        views.push((
            name.clone(),
            TensorView::new(Dtype::U64, vec![], value).unwrap(),
        ));
    }
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

#[test]
fn training_state_from_before_per_parameter_steps_resumes_exactly() {
    // Earlier versions kept one Adam step for all parameters, saved as `optimizer.step`.
    resume_matches_an_uninterrupted_run(|path| {
        rewrite_state(
            path,
            |name| !name.starts_with("optimizer.step."),
            &[("optimizer.step", 2)],
        )
    })
    .unwrap();
}

#[test]
fn training_state_without_step_counts_is_a_clear_error() {
    let err = resume_matches_an_uninterrupted_run(|path| {
        rewrite_state(path, |name| !name.starts_with("optimizer.step"), &[])
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("s.safetensors") && err.contains("no counter named step.layer1.0.weight"),
        "{err}"
    );
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_save_killed_at_any_instant_leaves_the_newest_complete_checkpoint() {
    // Two complete saves, A (step 1) and B (step 2), in folders of their own; the folder
    // a kill during B's save over A would leave is put together from their files.
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for (dir, step) in [(&a, 1), (&b, 2)] {
        std::fs::create_dir_all(dir).unwrap();
        let (mut model, optimizer) = small_model(step);
        save_checkpoint(dir, &mut model, &optimizer, HashMap::new(), &progress(step)).unwrap();
        assert_eq!(files(dir), [MODEL_FILE, TRAINING_STATE_FILE]);
    }
    let read = |dir: &std::path::Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    let (model_a, state_a) = (read(&a, MODEL_FILE), read(&a, TRAINING_STATE_FILE));
    let (model_b, state_b) = (read(&b, MODEL_FILE), read(&b, TRAINING_STATE_FILE));
    let half = |bytes: &[u8]| bytes[..bytes.len() / 2].to_vec();

    // (files present, the step the checkpoint must open at)
    type Files<'a> = Vec<(&'a str, Vec<u8>)>;
    let instants: Vec<(Files, u64)> = vec![
        // B's state half written, then fully; B's model half written, then fully.
        (
            vec![
                (MODEL_FILE, model_a.clone()),
                (TRAINING_STATE_FILE, state_a.clone()),
                ("training_state.safetensors.tmp", half(&state_b)),
            ],
            1,
        ),
        (
            vec![
                (MODEL_FILE, model_a.clone()),
                (TRAINING_STATE_FILE, state_a.clone()),
                ("training_state.safetensors.tmp", state_b.clone()),
            ],
            1,
        ),
        (
            vec![
                (MODEL_FILE, model_a.clone()),
                (TRAINING_STATE_FILE, state_a.clone()),
                ("training_state.safetensors.tmp", state_b.clone()),
                ("model.safetensors.tmp", half(&model_b)),
            ],
            1,
        ),
        (
            vec![
                (MODEL_FILE, model_a.clone()),
                (TRAINING_STATE_FILE, state_a.clone()),
                ("training_state.safetensors.tmp", state_b.clone()),
                ("model.safetensors.tmp", model_b.clone()),
            ],
            1,
        ),
        // The commit (B's state renamed), before the model's rename.
        (
            vec![
                (MODEL_FILE, model_a.clone()),
                (TRAINING_STATE_FILE, state_b.clone()),
                ("model.safetensors.tmp", model_b.clone()),
            ],
            2,
        ),
        // The first save of a run, killed between its renames.
        (
            vec![
                (TRAINING_STATE_FILE, state_b.clone()),
                ("model.safetensors.tmp", model_b.clone()),
            ],
            2,
        ),
        // Both renamed.
        (
            vec![
                (MODEL_FILE, model_b.clone()),
                (TRAINING_STATE_FILE, state_b.clone()),
            ],
            2,
        ),
    ];
    for (i, (present, step)) in instants.into_iter().enumerate() {
        let dir = root.path().join(format!("instant{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &present {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let checkpoint = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("instant {i}: {e}"));
        assert_eq!(checkpoint.progress, progress(step), "instant {i}");
        assert_eq!(
            checkpoint.completed_interrupted_save,
            i == 4 || i == 5,
            "instant {i}"
        );
        // What opened is the pair of that save, and only it is left.
        assert_eq!(
            files(&dir),
            [MODEL_FILE, TRAINING_STATE_FILE],
            "instant {i}"
        );
        let expected = if step == 1 { &model_a } else { &model_b };
        assert_eq!(&read(&dir, MODEL_FILE), expected, "instant {i}");
        let (mut model, mut optimizer) = small_model(7);
        checkpoint.restore(&mut model, &mut optimizer).unwrap();
    }

    // A model from another save, with no pending model to complete the pair: refused.
    let dir = root.path().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MODEL_FILE), &model_a).unwrap();
    std::fs::write(dir.join(TRAINING_STATE_FILE), &state_b).unwrap();
    let err = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(
        err.contains("different saves") && err.contains("CRC-32"),
        "{err}"
    );

    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Checkpoint::open(&empty).err().unwrap().to_string();
    assert!(err.contains("holds no checkpoint"), "{err}");
}

#[test]
fn read_progress_reads_a_training_state_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, optimizer) = small_model(3);
    save_checkpoint(
        dir.path(),
        &mut model,
        &optimizer,
        HashMap::new(),
        &progress(4),
    )
    .unwrap();
    let path = dir.path().join(TRAINING_STATE_FILE);
    assert_eq!(
        models::checkpoint::read_progress(&path).unwrap(),
        progress(4)
    );
    let err = models::checkpoint::read_progress(&dir.path().join(MODEL_FILE))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no training progress"), "{err}");
}
