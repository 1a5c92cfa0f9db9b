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
