//! Whole-network benchmarks on the CPU, for every network the `models` crate registers:
//! one training step (forward, cross-entropy, backward, Adam) at batch 32 and 128, and
//! inference at 256.
//!
//! Run: `cargo bench -p benches --bench training_step` (about a minute per network on 2
//! cores), or one network: `cargo bench -p benches --bench training_step -- /net/`.
//!
//! Throughput is `Elements(batch)`, so criterion's `elem/s` reads as images per second.
//! The network keeps training on the same random batch across iterations; the values
//! drift but the work per step does not depend on them.

use std::hint::black_box;
use std::time::Duration;

use autograd::Device;
use benches::{build_model, random_batch};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::{images_tensor, train_step};

fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    // A step takes a large fraction of a second: equal-sized samples, not criterion's
    // linear ramp, keep the run short.
    group.sampling_mode(SamplingMode::Flat);
    for name in models::networks::names() {
        for batch_size in [32, 128] {
            let mut model = build_model(name).unwrap_or_else(|e| panic!("{e}"));
            let adam = Adam::new(model.parameters(), AdamConfig::default()).expect("optimizer");
            let mut optimizer = Optimizer::Adam(adam);
            let batch = random_batch(batch_size, model.as_ref(), 1);
            group.throughput(Throughput::Elements(batch_size as u64));
            group.bench_function(format!("{name}/batch_{batch_size}"), |bench| {
                bench.iter(|| {
                    train_step(
                        model.as_mut(),
                        &mut optimizer,
                        black_box(&batch),
                        Device::Cpu,
                    )
                    .expect("training step")
                })
            });
        }
    }
    group.finish();
}

fn inference(c: &mut Criterion) {
    let mut group = c.benchmark_group("inference");
    group.sampling_mode(SamplingMode::Flat);
    let batch_size = 256;
    for name in models::networks::names() {
        let mut model = build_model(name).unwrap_or_else(|e| panic!("{e}"));
        model.set_training(false);
        let batch = random_batch(batch_size, model.as_ref(), 2);
        let images = images_tensor(&batch, Device::Cpu).expect("images");
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(format!("{name}/batch_{batch_size}"), |bench| {
            bench.iter(|| {
                let _no_grad = autograd::no_grad();
                model.forward(black_box(&images)).expect("forward")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = whole_network;
    config = config();
    targets = training_step, inference
}
criterion_main!(whole_network);
