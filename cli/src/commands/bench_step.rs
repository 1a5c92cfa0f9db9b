//! `bench-step`: times whole training steps (forward, cross-entropy, backward, Adam) of the
//! notebook's network on one fixed random batch, the way `scripts/pytorch_step.py` times
//! PyTorch, so the two can be compared on the same machine.

use std::time::Instant;

use clap::Args;
use models::data::{Batch, CHANNELS, IMAGE_SIDE};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::train_step;
use models::Net;

use super::train::training_footprints;
use crate::device::{resolve, DeviceChoice};
use crate::memory;

#[derive(Args, Debug)]
pub struct BenchStepArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Let cuBLAS use TF32 tensor cores on CUDA (see `train --tf32`).
    #[arg(long)]
    pub tf32: bool,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A batch of normalised-looking random images (values in [-1, 1)) with labels 0..9.
fn random_batch(size: usize, seed: u64) -> Batch {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    Batch {
        images: (0..size * CHANNELS * IMAGE_SIDE * IMAGE_SIDE)
            .map(|_| next())
            .collect(),
        labels: (0..size).map(|i| (i % 10) as u32).collect(),
    }
}

pub fn run(args: BenchStepArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 || args.steps == 0 {
        anyhow::bail!("--batch-size and --steps must be at least 1");
    }
    let device = resolve(args.device, args.tf32)?;
    let available = memory::available(device);
    let mut net = Net::new(args.seed, device)?;
    let mut optimizer = Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default())?);
    let (step, _) = training_footprints(&mut net, &optimizer, device, 0)?;
    memory::ensure_fits(
        "a training step",
        "--batch-size",
        args.batch_size,
        &step,
        available,
    )?;
    net.set_training(true);
    let batch = random_batch(args.batch_size, args.seed);
    for _ in 0..args.warmup {
        train_step(&mut net, &mut optimizer, &batch, device)?;
    }
    // Every step ends by reading the loss back, so the clock sees finished work.
    let started = Instant::now();
    let mut loss = 0.0;
    for _ in 0..args.steps {
        loss = train_step(&mut net, &mut optimizer, &batch, device)?.loss;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms_per_step = 1e3 * seconds / args.steps as f64;
    let images_per_sec = (args.batch_size * args.steps) as f64 / seconds;
    println!(
        "bench-step: {device}{} batch {} steps {}: {ms_per_step:.2} ms/step, \
         {images_per_sec:.0} images/s (last loss {loss:.4})",
        if args.tf32 { " tf32" } else { "" },
        args.batch_size,
        args.steps,
    );
    Ok(())
}
