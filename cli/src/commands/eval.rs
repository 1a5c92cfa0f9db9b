//! `eval`: test accuracy, per-class accuracy and the confusion matrix of a checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use models::checkpoint;
use models::data::{ensure_dataset, resolve_data_path, LoaderConfig, CLASSES};
use models::train::evaluate;
use models::Net;

use super::train::{NormalizationChoice, MODEL_FILE};
use crate::device::{resolve, DeviceChoice};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model.safetensors file, or a run folder holding one.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Let cuBLAS use TF32 tensor cores for the convolution and linear products on CUDA
    /// (much faster on Ampere and later, about 3 significant digits in each product).
    #[arg(long)]
    pub tf32: bool,
    /// CIFAR-10 location [default: $CIFAR10_PATH, else ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Never download the dataset.
    #[arg(long)]
    pub no_download: bool,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Input normalization [default: the one recorded in the checkpoint, else notebook].
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
}

/// `model.safetensors` itself, or the one inside a run folder.
pub fn model_path(path: PathBuf) -> PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path
    }
}

/// Builds the network and loads the checkpoint; returns the normalization it was trained with.
pub fn load_net(
    checkpoint_path: &std::path::Path,
    device: models::Device,
    normalization: Option<NormalizationChoice>,
) -> anyhow::Result<(Net, NormalizationChoice)> {
    let mut net = Net::new(0, device)?;
    let metadata = checkpoint::load_model(&mut net, checkpoint_path)?;
    let recorded = match metadata.get("normalization").map(String::as_str) {
        Some("dataset") => NormalizationChoice::Dataset,
        _ => NormalizationChoice::Notebook,
    };
    Ok((net, normalization.unwrap_or(recorded)))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let device = resolve(args.device, args.tf32)?;
    let checkpoint_path = model_path(args.checkpoint);
    let (mut net, normalization) = load_net(&checkpoint_path, device, args.normalization)?;
    let data_path = resolve_data_path(args.data.as_deref());
    let mut dataset = ensure_dataset(&data_path, !args.no_download, true)
        .with_context(|| format!("loading CIFAR-10 from {}", data_path.display()))?;
    if let Some(limit) = args.limit {
        dataset.test.truncate(limit);
    }
    let config = LoaderConfig {
        normalization: normalization.values(),
        ..LoaderConfig::eval(args.batch_size)
    };
    let evaluation = evaluate(
        &mut net,
        Arc::new(dataset.test),
        &config,
        device,
        CLASSES.len(),
    )?;

    println!(
        "test accuracy: {:.2}% ({} of {} images), mean loss {:.4}",
        evaluation.accuracy(),
        evaluation.correct(),
        evaluation.total(),
        evaluation.loss
    );
    println!("\nper-class accuracy:");
    for (class, accuracy) in CLASSES.iter().zip(evaluation.per_class_accuracy()) {
        match accuracy {
            Some(a) => println!("  {class:<10} {a:6.2}%"),
            None => println!("  {class:<10}    n/a"),
        }
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    print!("{:>12}", "");
    for class in CLASSES {
        print!("{:>6}", &class[..class.len().min(5)]);
    }
    println!();
    for (class, row) in CLASSES.iter().zip(&evaluation.confusion) {
        print!("{class:>12}");
        for count in row {
            print!("{count:>6}");
        }
        println!();
    }
    Ok(())
}
