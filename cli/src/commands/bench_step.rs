//! `bench-step`: times whole training steps (forward, cross-entropy, backward, Adam) of the
//! notebook's network on one fixed random batch, the way `scripts/pytorch_step.py` times
//! PyTorch, so the two can be compared on the same machine; with `--model airbench94`,
//! steps of airbench94's recipe (summed label-smoothed loss, SGD groups, lookahead).

use std::time::Instant;

use clap::Args;
use models::data::{Batch, CHANNELS, IMAGE_SIDE};
use models::layers::Module;
use models::networks::{self, Airbench94};
use models::optim::{Adam, AdamConfig, Optimizer};
use models::recipes::{Airbench94Recipe, Airbench94Trainer};
use models::train::train_step;
use models::{Device, Net};

use super::train::{optimizer_values, training_footprints};
use crate::device::{resolve, DeviceChoice};
use crate::memory;
use crate::precision::PrecisionChoice;

#[derive(Args, Debug)]
pub struct BenchStepArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Let cuBLAS use TF32 tensor cores on CUDA (see `train --tf32`).
    #[arg(long)]
    pub tf32: bool,
    /// The network: the notebook's `net` or `airbench94`.
    #[arg(long, default_value = "net",
          value_parser = clap::builder::PossibleValuesParser::new(networks::names()))]
    pub model: String,
    /// Images per step [default: 32, the notebook's; 1024 for airbench94].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Arithmetic of the convolutions and linear layers: f32, or bf16 products summed in
    /// f32 (PyTorch's autocast; on the CPU needs AMX or AVX512-BF16; on CUDA, cuBLAS).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionChoice,
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

/// What a step trains: the notebook's network with Adam, or airbench94's recipe.
enum Stepper {
    Notebook(Net, Optimizer),
    Airbench94(Box<Airbench94Trainer>),
}

impl Stepper {
    /// The stepper for `args`, for batches of `batch_size` and at least `steps` steps.
    fn new(
        args: &BenchStepArgs,
        batch_size: usize,
        steps: usize,
        device: Device,
    ) -> anyhow::Result<Stepper> {
        Ok(if args.model == Airbench94::NAME {
            let recipe = Airbench94Recipe {
                batch_size,
                ..Airbench94Recipe::default()
            };
            let model = Airbench94::new(args.seed, device)?;
            // A training set long enough that the schedule outlasts the steps.
            let train_len = 50_000usize.max(batch_size.saturating_mul(steps));
            let mut trainer = Airbench94Trainer::new(recipe, model, train_len, None, device)?;
            trainer.begin_epoch(0)?;
            Stepper::Airbench94(Box::new(trainer))
        } else {
            let mut net = Net::new(args.seed, device)?;
            let optimizer = Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default())?);
            Stepper::Notebook(net, optimizer)
        })
    }

    fn model(&mut self) -> &mut dyn Module {
        match self {
            Stepper::Notebook(net, _) => net,
            Stepper::Airbench94(trainer) => &mut trainer.model,
        }
    }

    fn optimizer_values(&self) -> usize {
        match self {
            Stepper::Notebook(_, optimizer) => optimizer_values(&optimizer.state()),
            Stepper::Airbench94(trainer) => optimizer_values(&trainer.state()),
        }
    }

    /// One training step; its mean loss.
    fn step(&mut self, batch: &Batch, device: Device) -> anyhow::Result<f64> {
        Ok(match self {
            Stepper::Notebook(net, optimizer) => train_step(net, optimizer, batch, device)?.loss,
            Stepper::Airbench94(trainer) => trainer.step(batch)?.loss,
        })
    }
}

pub fn run(args: BenchStepArgs) -> anyhow::Result<()> {
    let batch_size = args
        .batch_size
        .unwrap_or(if args.model == Airbench94::NAME {
            Airbench94Recipe::default().batch_size
        } else {
            32
        });
    if batch_size == 0 || args.steps == 0 {
        anyhow::bail!("--batch-size and --steps must be at least 1");
    }
    let device = resolve(args.device, args.tf32)?;
    let _precision = args.precision.enable(device)?;
    let available = memory::available(device);
    let mut stepper = Stepper::new(&args, batch_size, args.warmup + args.steps, device)?;
    let values = stepper.optimizer_values();
    let (step, _) = training_footprints(stepper.model(), values, device, 0)?;
    memory::ensure_fits(
        "a training step",
        "--batch-size",
        batch_size,
        &step,
        available,
    )?;
    stepper.model().set_training(true);
    let batch = random_batch(batch_size, args.seed);
    for _ in 0..args.warmup {
        stepper.step(&batch, device)?;
    }
    // Every step ends by reading the loss back, so the clock sees finished work.
    let started = Instant::now();
    let mut loss = 0.0;
    for _ in 0..args.steps {
        loss = stepper.step(&batch, device)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms_per_step = 1e3 * seconds / args.steps as f64;
    let images_per_sec = (batch_size * args.steps) as f64 / seconds;
    println!(
        "bench-step: {} on {device}{} {} batch {} steps {}: {ms_per_step:.2} ms/step, \
         {images_per_sec:.0} images/s (last loss {loss:.4})",
        args.model,
        if args.tf32 { " tf32" } else { "" },
        args.precision.precision(),
        batch_size,
        args.steps,
    );
    Ok(())
}
