//! The network learns: a few hundred steps on a small, learnable problem.

use std::sync::Arc;

use models::data::{LoaderConfig, Normalization, Split};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::{evaluate, train_step};
use models::{Device, Net};

/// Images whose class is written into their pixels: class c has a bright horizontal band at
/// rows 3c..3c+3 (plus noise), so a CNN can learn it quickly and chance is 10%.
fn synthetic_split(len: usize, seed: u32) -> Split {
    let mut state = seed;
    let mut noise = || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 24) as u8 / 4
    };
    let mut images = Vec::with_capacity(len * 3072);
    let mut labels = Vec::with_capacity(len);
    for i in 0..len {
        let class = (i % 10) as u8;
        for _channel in 0..3 {
            for row in 0..32 {
                for _col in 0..32 {
                    let band = row / 3 == class as usize;
                    images.push(if band { 180 } else { 20 } + noise());
                }
            }
        }
        labels.push(class);
    }
    Split { images, labels }
}

#[test]
fn loss_falls_and_accuracy_beats_chance_on_a_learnable_problem() {
    let train = synthetic_split(160, 1);
    let test = Arc::new(synthetic_split(100, 2));
    let mut net = Net::new(0, Device::Cpu).unwrap();
    let mut optimizer =
        Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default()).unwrap());
    let config = LoaderConfig {
        batch_size: 16,
        normalization: Normalization::NOTEBOOK,
        workers: 1,
        ..LoaderConfig::default()
    };
    let train = Arc::new(train);
    let mut epoch_losses = Vec::new();
    for epoch in 0..5 {
        net.set_training(true);
        let mut total = 0.0;
        let mut steps = 0;
        for batch in models::data::epoch_batches(train.clone(), &config, epoch) {
            total += train_step(&mut net, &mut optimizer, &batch, Device::Cpu)
                .unwrap()
                .loss;
            steps += 1;
        }
        epoch_losses.push(total / steps as f64);
    }
    assert!(
        epoch_losses[4] < epoch_losses[0] * 0.8,
        "losses {epoch_losses:?}"
    );
    let evaluation = evaluate(
        &mut net,
        test.clone(),
        &LoaderConfig::eval(50),
        Device::Cpu,
        10,
    )
    .unwrap();
    assert!(
        evaluation.accuracy() > 30.0,
        "accuracy {}% (losses {epoch_losses:?})",
        evaluation.accuracy()
    );
    // One prediction per test image, in file order, adding up to the confusion matrix.
    assert_eq!(evaluation.predictions.len(), test.len());
    let mut tally = vec![vec![0u64; 10]; 10];
    for (prediction, &label) in evaluation.predictions.iter().zip(&test.labels) {
        assert_eq!(prediction.label, label as usize);
        assert!(prediction.confidence >= 0.099 && prediction.confidence <= 1.0);
        tally[prediction.label][prediction.predicted] += 1;
    }
    assert_eq!(tally, evaluation.confusion);
}

mod airbench94 {
    use super::synthetic_split;
    use models::data::{ResidentLoader, Split};
    use models::layers::Module;
    use models::networks::Airbench94;
    use models::optim::OptimizerState;
    use models::recipes::{Airbench94Recipe, Airbench94Trainer};
    use models::tta::{tta_logits, TtaLevel};
    use models::{no_grad, Device, Tensor};

    /// The recipe at a small scale: batches of `batch`, whitening from 200 images, the
    /// whitening bias frozen after the first epoch. The loss is a sum, so a step's update
    /// shrinks with the batch: the learning rate grows to keep steps of batch 1024's size
    /// (momentum and decay per example unchanged).
    fn recipe(batch: usize, epochs: f64) -> Airbench94Recipe {
        let default = Airbench94Recipe::default();
        Airbench94Recipe {
            batch_size: batch,
            train_epochs: epochs,
            lr: default.lr * (default.batch_size / batch) as f64,
            whiten_images: 200,
            whiten_bias_epochs: 1,
            ..Airbench94Recipe::default()
        }
    }

    fn trainer(recipe: Airbench94Recipe, train: &Split, seed: u64) -> Airbench94Trainer {
        let model = Airbench94::new(seed, Device::Cpu).unwrap();
        let trainer = Airbench94Trainer::new(recipe, model, train.len(), None, Device::Cpu);
        let trainer = trainer.unwrap();
        trainer.whiten(train).unwrap();
        trainer
    }

    /// Trains from the trainer's current step up to step `until`, epoch by epoch as the
    /// command line does; returns each step's loss.
    fn train(trainer: &mut Airbench94Trainer, loader: &ResidentLoader, until: u64) -> Vec<f64> {
        let per_epoch = loader.batches_per_epoch() as u64;
        let mut losses = Vec::new();
        while trainer.steps_done() < until {
            let epoch = trainer.steps_done() / per_epoch;
            trainer.begin_epoch(epoch).unwrap();
            let plan = loader.epoch(epoch);
            for index in trainer.steps_done() % per_epoch..per_epoch {
                if trainer.steps_done() >= until {
                    break;
                }
                losses.push(trainer.step(&plan.batch(index as usize)).unwrap().loss);
            }
        }
        losses
    }

    fn state_values(model: &mut dyn Module) -> Vec<(String, Vec<f32>)> {
        let mut values = Vec::new();
        model.visit_state(&mut |name, entry| {
            if let models::layers::StateEntry::Parameter(t)
            | models::layers::StateEntry::Buffer(t) = entry
            {
                values.push((name.to_string(), t.to_vec_f32().unwrap()));
            }
        });
        values
    }

    #[test]
    fn the_recipes_numbers_are_airbenchs() {
        let r = Airbench94Recipe::default();
        // 1024 (1 + 1 / 0.15)
        assert!((r.kilostep_scale() - 7850.666666666667).abs() < 1e-9);
        assert!((r.base_lr() - 11.5 / 7850.666666666667).abs() < 1e-15);
        assert!((r.decoupled_weight_decay() - 0.0153 * 1024.0 / 7850.666666666667).abs() < 1e-15);
        assert_eq!((r.total_steps(50_000), r.epochs()), (476, 10));
        let mut model = Airbench94::new(0, Device::Cpu).unwrap();
        let sgd = r.optimizer(&mut model).unwrap();
        let lr = r.base_lr();
        let [norm, other] = sgd.groups() else {
            panic!("two groups")
        };
        assert!((norm.lr - 64.0 * lr).abs() < 1e-15 && (other.lr - lr).abs() < 1e-15);
        // Same decay strength in both: lr * weight_decay = wd.
        for g in [norm, other] {
            assert!((g.lr * g.weight_decay - r.decoupled_weight_decay()).abs() < 1e-15);
            assert!(g.nesterov && g.momentum == 0.85 && g.dampening == 0.0);
        }
        let names: Vec<&str> = sgd.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "2.norm1.bias",
                "2.norm2.bias",
                "3.norm1.bias",
                "3.norm2.bias",
                "4.norm1.bias",
                "4.norm2.bias",
                "0.bias",
                "2.conv1.weight",
                "2.conv2.weight",
                "3.conv1.weight",
                "3.conv2.weight",
                "4.conv1.weight",
                "4.conv2.weight",
                "7.weight",
            ]
        );
    }

    #[test]
    fn airbench94_learns_a_learnable_problem() {
        let train_split = synthetic_split(320, 1);
        let test = synthetic_split(100, 2);
        let recipe = recipe(16, 1.5);
        let loader = ResidentLoader::new(&train_split, recipe.loader(0)).unwrap();
        let mut trainer = trainer(recipe, &train_split, 0);
        assert_eq!(trainer.total_steps(), 30);
        let losses = train(&mut trainer, &loader, 30);
        assert!(trainer.finished());
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[25..].iter().sum::<f64>() / 5.0;
        assert!(last < 0.8 * first, "losses {losses:?}");

        trainer.model.set_training(false);
        let _guard = no_grad();
        let images = models::data::normalized_images(&test, 100, &recipe.loader(0).normalization);
        for level in [TtaLevel::Plain, TtaLevel::MirrorTranslate] {
            let logits = tta_logits(
                &mut trainer.model,
                &images,
                [100, 3, 32, 32],
                level,
                Device::Cpu,
            )
            .unwrap();
            let logits = Tensor::from_vec(logits, &[100, 10], Device::Cpu).unwrap();
            let correct = models::train::predictions(&logits)
                .unwrap()
                .iter()
                .zip(&test.labels)
                .filter(|(p, l)| **p == **l as usize)
                .count();
            eprintln!("{level:?}: {correct}% of 100 (first losses {first:.3}, last {last:.3})");
            assert!(correct > 30, "{level:?}: {correct}% (losses {losses:?})");
        }
    }

    #[test]
    fn runs_are_deterministic_and_resuming_equals_not_stopping() {
        // 64 images in batches of 16: 4 steps an epoch, 2.5 epochs = 10 steps, so the run
        // crosses two epoch boundaries (the whitening bias freezes at the first), the
        // lookahead at steps 5 and 10 and its final update.
        let train_split = synthetic_split(64, 3);
        let recipe = recipe(16, 2.5);
        let loader = ResidentLoader::new(&train_split, recipe.loader(7)).unwrap();

        let mut whole = trainer(recipe, &train_split, 7);
        train(&mut whole, &loader, 10);
        let expected = state_values(&mut whole.model);

        let mut again = trainer(recipe, &train_split, 7);
        train(&mut again, &loader, 10);
        assert!(
            state_values(&mut again.model) == expected,
            "same seed, same run"
        );

        // Stop after 6 steps (inside the second epoch), save, and resume in a new trainer.
        let mut first = trainer(recipe, &train_split, 7);
        train(&mut first, &loader, 6);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        models::checkpoint::save_model(&mut first.model, &path, Default::default()).unwrap();
        let saved = first.state();
        let saved = OptimizerState {
            counters: saved.counters.clone(),
            // Copies, not views of the first trainer's buffers.
            tensors: saved
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).unwrap()))
                .collect(),
        };
        drop(first);

        let model = Airbench94::new(7, Device::Cpu).unwrap();
        let mut resumed = Airbench94Trainer::new(recipe, model, 64, None, Device::Cpu).unwrap();
        models::checkpoint::load_model(&mut resumed.model, &path).unwrap();
        resumed.load_state(&saved).unwrap();
        assert_eq!(resumed.steps_done(), 6);
        train(&mut resumed, &loader, 10);
        assert!(resumed.finished());
        assert!(
            state_values(&mut resumed.model) == expected,
            "resumed run differs from the uninterrupted one"
        );
        // And a different seed is a different run.
        let mut other = trainer(recipe, &train_split, 8);
        train(&mut other, &loader, 10);
        assert!(state_values(&mut other.model) != expected);
    }
}
