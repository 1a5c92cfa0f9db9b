//! `summary`: each layer's output shape and parameter count, like torchinfo.

use clap::Args;
use models::data::{CHANNELS, IMAGE_SIDE};
use models::{no_grad, DType, Device, Net, Tensor};

use crate::plot::thousands;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Batch size of the example input.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
}

pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let mut net = Net::new(0, Device::Cpu)?;
    let input = Tensor::zeros(
        &[args.batch_size, CHANNELS, IMAGE_SIDE, IMAGE_SIDE],
        DType::F32,
        Device::Cpu,
    )?;
    let trace = {
        let _guard = no_grad();
        // Evaluation mode: batch norm on a batch of one has no batch statistics.
        models::layers::Module::set_training(&mut net, false);
        net.trace(&input)?
    };
    let rule = "=".repeat(110);
    println!("{rule}");
    println!(
        "{:<12} {:<18} {:>10}  Layer",
        "Name", "Output Shape", "Param #"
    );
    println!("{rule}");
    println!(
        "{:<12} {:<18} {:>10}  Input",
        "input",
        format!("{:?}", input.shape()),
        "--"
    );
    for row in &trace {
        let params = if row.parameters > 0 {
            thousands(row.parameters as u64)
        } else {
            "--".to_string()
        };
        println!(
            "{:<12} {:<18} {:>10}  {}",
            row.name,
            format!("{:?}", row.output_shape),
            params,
            row.description
        );
    }
    let total = net.num_parameters();
    println!("{rule}");
    println!("Total params: {}", thousands(total as u64));
    println!("Trainable params: {}", thousands(total as u64));
    println!("Params size (MB): {:.2}", total as f64 * 4.0 / 1e6);
    println!("{rule}");
    Ok(())
}
