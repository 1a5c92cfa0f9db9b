//! A small model with every kind of state, for checkpoint tests.

#![allow(dead_code)]

use models::checkpoint::TrainingProgress;
use models::data::{Batch, DataFingerprint};
use models::layers::{
    BatchNorm2d, Dropout, Flatten, Linear, Module, ParamInit, Sequential, StateEntry,
};
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::{train_step, Tally};
use models::Device;

/// `len` images of pseudo-random values in [-1, 1) with labels 0..9, drawn from `seed`.
pub fn batch(seed: u32, len: usize) -> Batch {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    };
    Batch {
        images: (0..len * 3072).map(|_| next()).collect(),
        labels: (0..len as u32).map(|i| (i * 7 + seed) % 10).collect(),
    }
}

/// Parameters, buffers, a counter and a dropout stream, with Adam, one step trained so
/// nothing is zero.
pub fn small_model(seed: u64) -> (Sequential, Optimizer) {
    let mut init = ParamInit::new(seed, Device::Cpu);
    let mut model = Sequential::new(vec![
        Box::new(BatchNorm2d::new(&mut init, 3).unwrap()),
        Box::new(Flatten),
        Box::new(Linear::new(&mut init, 3 * 32 * 32, 10).unwrap()),
        Box::new(Dropout::new(0.5, init.next_seed())),
    ]);
    let mut params = Vec::new();
    model.visit_state(&mut |name, entry| {
        if let StateEntry::Parameter(t) = entry {
            params.push((name.to_string(), t.clone()));
        }
    });
    let mut optimizer = Optimizer::Adam(Adam::new(params, AdamConfig::default()).unwrap());
    train_step(
        &mut model,
        &mut optimizer,
        &batch(seed as u32, 4),
        Device::Cpu,
    )
    .unwrap();
    (model, optimizer)
}

/// A training progress at `step` with every field set to something recognisable.
pub fn progress(step: u64) -> TrainingProgress {
    TrainingProgress {
        epochs_done: 0,
        batches_done: step,
        global_step: step,
        optimizer: "adam".into(),
        epoch_tally: Tally {
            loss_sum: 2.5 * step as f64,
            correct: step,
            images: 3 * step,
            steps: step,
        },
        log_tally: Tally::default(),
        epoch_seconds: 0.5,
        metrics_bytes: 100 * step,
        finished: false,
        train_data: DataFingerprint {
            images: 12,
            crc32: 0xdead_beef,
        },
        settings: serde_json::json!({"batch_size": 3, "seed": 5}),
    }
}
