//! `summary`: each layer's output shape and parameter count, like torchinfo, and the
//! memory a training step needs at the batch size asked for.
//!
//! The network runs once on a single image; every output shape at batch N is that shape
//! with N in front, so any batch size can be summarised without allocating it.

use clap::Args;
use models::data::{CHANNELS, IMAGE_SIDE};
use models::layers::Module;
use models::optim::{Adam, AdamConfig};
use models::{Device, Net};

use super::train::batch_one_trace;
use crate::memory::{format_bytes, Footprint};

use crate::plot::thousands;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Batch size of the example input.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
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
    let mut net = Net::new(0, Device::Cpu)?;
    let trace = batch_one_trace(&mut net, Device::Cpu)?;
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
    // The notebook's optimizer: two moments per parameter.
    let adam = Adam::new(net.parameters(), AdamConfig::default())?;
    let optimizer_values: usize = adam.state().tensors.iter().map(|(_, t)| t.numel()).sum();
    let step = Footprint::training(&trace, total, optimizer_values, 4, 0, 0);
    println!("{rule}");
    println!("Total params: {}", thousands(total as u64));
    println!("Trainable params: {}", thousands(total as u64));
    println!("Params size (MB): {:.2}", total as f64 * 4.0 / 1e6);
    println!(
        "Training step at batch {batch} with Adam, estimated: {}",
        format_bytes(step.bytes(batch))
    );
    println!("{rule}");
    Ok(())
}
