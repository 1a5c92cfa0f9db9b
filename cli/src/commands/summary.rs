//! `summary`: each layer's output shape and parameter count, like torchinfo, and the
//! memory a training step needs at the batch size asked for.
//!
//! The network runs once on a single image; every output shape at batch N is that shape
//! with N in front, so any batch size can be summarised without allocating it.

use clap::Args;
use models::data::{CHANNELS, IMAGE_SIDE};
use models::networks::{self, Airbench94};
use models::optim::{Adam, AdamConfig};
use models::recipes::{Airbench94Recipe, Airbench94Trainer};
use models::Device;

use super::train::{batch_one_trace, optimizer_values};
use crate::memory::{format_bytes, Footprint};

use crate::plot::thousands;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Batch size of the example input.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// The network.
    #[arg(long, default_value = "net",
          value_parser = clap::builder::PossibleValuesParser::new(networks::names()))]
    pub model: String,
}

/// The values the network's trainer keeps beside the weights, and what it is called:
/// the notebook's Adam (two moments per parameter), or airbench94's SGD momentum and
/// lookahead average.
fn trainer_state(model: &str) -> anyhow::Result<(usize, &'static str)> {
    if model == Airbench94::NAME {
        let recipe = Airbench94Recipe::default();
        let net = Airbench94::new(0, Device::Cpu)?;
        let trainer = Airbench94Trainer::new(recipe, net, 50_000, None, Device::Cpu)?;
        Ok((
            optimizer_values(&trainer.state()),
            "airbench94's SGD and lookahead",
        ))
    } else {
        let mut net = networks::by_name(model, 0, Device::Cpu)?;
        let adam = Adam::new(net.parameters(), AdamConfig::default())?;
        Ok((optimizer_values(&adam.state()), "Adam"))
    }
}

/// `shape` (batch 1) at batch `batch`, as `[N, C, H, W]`.
fn at_batch(shape: &[usize], batch: usize) -> String {
    let rest: Vec<String> = shape.iter().skip(1).map(usize::to_string).collect();
    format!(
        "[{}]",
        std::iter::once(batch.to_string())
            .chain(rest)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let batch = args.batch_size;
    let mut net = networks::by_name(&args.model, 0, Device::Cpu)?;
    let trace = batch_one_trace(net.as_mut(), Device::Cpu)?;
    let rule = "=".repeat(110);
    println!("{rule}");
    println!(
        "{:<12} {:<22} {:>10}  Layer",
        "Name", "Output Shape", "Param #"
    );
    println!("{rule}");
    println!(
        "{:<12} {:<22} {:>10}  Input",
        "input",
        at_batch(&[1, CHANNELS, IMAGE_SIDE, IMAGE_SIDE], batch),
        "--"
    );
    for row in &trace {
        let params = if row.parameters > 0 {
            thousands(row.parameters as u64)
        } else {
            "--".to_string()
        };
        println!(
            "{:<12} {:<22} {:>10}  {}",
            row.name,
            at_batch(&row.output_shape, batch),
            params,
            row.description
        );
    }
    let total = net.num_parameters();
    let trainable: usize = net
        .parameters()
        .iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(_, p)| p.numel())
        .sum();
    let (optimizer_values, optimizer) = trainer_state(&args.model)?;
    let step = Footprint::training(&trace, total, optimizer_values, 4, 0, 0);
    println!("{rule}");
    println!("Total params: {}", thousands(total as u64));
    println!("Trainable params: {}", thousands(trainable as u64));
    println!("Params size (MB): {:.2}", total as f64 * 4.0 / 1e6);
    println!(
        "Training step at batch {batch} with {optimizer}, estimated: {}",
        format_bytes(step.bytes(batch))
    );
    println!("{rule}");
    Ok(())
}
