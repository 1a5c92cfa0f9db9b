//! `eval`: test accuracy, per-class accuracy and the confusion matrix of a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use models::checkpoint::{self, TRAINING_STATE_FILE};
use models::data::{
    ensure_dataset, resolve_data_path, DataLocation, LoaderConfig, CHANNELS, CLASSES, IMAGE_SIDE,
};
use models::networks::{self, Airbench94};
use models::train::evaluate;
use models::tta::{evaluate_tta_until, TtaLevel};
use models::Model;

use super::train::{batch_one_trace, batches_in_flight, NormalizationChoice, MODEL_FILE};
use crate::device::{resolve, DeviceChoice};
use crate::memory::{self, Footprint};
use crate::precision::PrecisionChoice;

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
    /// CIFAR-10 location [default: the one the checkpoint's run trained on, else
    /// $CIFAR10_PATH, else ./data, where the official archive is downloaded if missing].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Never download the dataset.
    #[arg(long)]
    pub no_download: bool,
    /// Arithmetic of the convolutions and linear layers: f32, or bf16 products summed in
    /// f32 (PyTorch's autocast; on the CPU needs AMX or AVX512-BF16; on CUDA, cuBLAS).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionChoice,
    /// Images per evaluation batch (no effect on the results).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Input normalization [default: the one recorded in the checkpoint, else the
    /// network's own].
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
    /// The network the checkpoint holds [default: the one recorded in it, else net]; for
    /// files written elsewhere, such as scripts/airbench94_pytorch.py --save-state.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(networks::names()))]
    pub model: Option<String>,
    /// Test-time augmentation: average each image's logits with its mirror and with both
    /// copies shifted one pixel up-left and down-right (6 passes) [default: on for
    /// airbench94, off otherwise].
    #[arg(long, conflicts_with = "no_tta")]
    pub tta: bool,
    /// No test-time augmentation, also for airbench94.
    #[arg(long)]
    pub no_tta: bool,
}

/// `model.safetensors` itself, or the one inside a run folder.
pub fn model_path(path: PathBuf) -> PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path
    }
}

/// Builds the network a checkpoint holds and loads it: the network is `model` when given,
/// else the one the checkpoint records, else the notebook's. Returns it with its
/// normalization: `normalization` when given, else the recorded one, else the network's.
pub fn load_net(
    checkpoint_path: &std::path::Path,
    device: models::Device,
    model: Option<&str>,
    normalization: Option<NormalizationChoice>,
) -> anyhow::Result<(Box<dyn Model>, NormalizationChoice)> {
    let metadata = checkpoint::read_metadata(checkpoint_path)?;
    let recorded = metadata.get("model").map(String::as_str);
    let name = match (model, recorded) {
        (Some(asked), Some(recorded)) if asked != recorded => anyhow::bail!(
            "{}: holds the {recorded} network, not --model {asked}",
            checkpoint_path.display()
        ),
        (Some(name), _) | (None, Some(name)) => name,
        (None, None) => models::Net::NAME,
    };
    let mut net = networks::by_name(name, 0, device)?;
    checkpoint::load_model(net.as_mut(), checkpoint_path)?;
    let own = if name == Airbench94::NAME {
        NormalizationChoice::Airbench
    } else {
        NormalizationChoice::Notebook
    };
    let recorded = metadata
        .contains_key("normalization")
        .then(|| NormalizationChoice::recorded(&metadata));
    Ok((net, normalization.or(recorded).unwrap_or(own)))
}

/// The data the run that wrote `model` trained on, as its training state (beside the model
/// file) records it, when that place still exists.
pub fn recorded_data(model: &Path) -> Option<PathBuf> {
    let state = model.parent()?.join(TRAINING_STATE_FILE);
    let progress = checkpoint::read_progress(&state).ok()?;
    let data = PathBuf::from(progress.settings.get("data")?.as_str()?);
    data.exists().then_some(data)
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    if args.limit == Some(0) {
        anyhow::bail!("--limit must be at least 1: there is nothing to evaluate on 0 images");
    }
    let device = resolve(args.device, args.tf32)?;
    let _precision = args.precision.enable(device)?;
    let checkpoint_path = model_path(args.checkpoint);
    let available = memory::available(device);
    let (mut net, normalization) = load_net(
        &checkpoint_path,
        device,
        args.model.as_deref(),
        args.normalization,
    )?;
    let tta = args.tta || (net.name() == Airbench94::NAME && !args.no_tta);
    let location = match args
        .data
        .clone()
        .or_else(|| recorded_data(&checkpoint_path))
    {
        Some(path) => DataLocation::given(&path),
        None => resolve_data_path(None),
    };
    let may_download = location.may_download() && !args.no_download;
    let mut dataset = ensure_dataset(&location.path, may_download, true)
        .with_context(|| format!("reading CIFAR-10 from {location}"))?;
    if let Some(limit) = args.limit {
        dataset.test.truncate(limit);
    }
    let config = LoaderConfig {
        normalization: normalization.values(),
        ..LoaderConfig::eval(args.batch_size.min(dataset.test.len()))
    };
    let trace = batch_one_trace(net.as_mut(), device)?;
    let footprint = Footprint::evaluation(
        &trace,
        net.num_parameters(),
        4,
        CHANNELS * IMAGE_SIDE * IMAGE_SIDE,
        batches_in_flight(config.workers),
    );
    let batch = config.batch_size;
    memory::ensure_fits(
        "an evaluation",
        "--batch-size",
        batch,
        &footprint,
        available,
    )?;
    let evaluation = if tta {
        let never = || false;
        let level = TtaLevel::MirrorTranslate;
        let evaluation = evaluate_tta_until(
            net.as_mut(),
            &dataset.test,
            &normalization.values(),
            level,
            batch,
            device,
            CLASSES.len(),
            &never,
        )?;
        println!(
            "with test-time augmentation ({} passes per image; --no-tta for one)",
            level.passes()
        );
        evaluation.expect("never stopped")
    } else {
        evaluate(
            net.as_mut(),
            Arc::new(dataset.test),
            &config,
            device,
            CLASSES.len(),
        )?
    };

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
