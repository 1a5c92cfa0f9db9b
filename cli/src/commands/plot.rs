//! `plot`: the pictures of a run (curves, confusion matrix, mistakes, first-layer filters),
//! written into its folder; `train` calls [`write_pictures`] when it finishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use models::data::{ensure_dataset, resolve_data_path, DataLocation, LoaderConfig, Split, CLASSES};
use models::layers::Module;
use models::train::{evaluate, Evaluation};

use super::eval::{load_net, model_path, recorded_data};
use super::train::{NormalizationChoice, MODEL_FILE};
use crate::device::{resolve, DeviceChoice};
use crate::plot::filters::ConvWeight;
use crate::plot::history::History;
use crate::plot::{confusion, curves, filters, mistakes};

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The run folder (what `train --out` wrote); a second one is overlaid on the curves.
    /// The confusion matrix, mistakes and filters are of the first run's model.
    #[arg(required = true, num_args = 1..=2, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Folder for the pictures [default: the first run folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CIFAR-10 location, for the test set [default: $CIFAR10_PATH, else ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Input normalization [default: the one recorded in the checkpoint].
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
}

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    // Everything that can be wrong with the inputs is found before anything is drawn.
    let mut histories = args
        .runs
        .iter()
        .map(|run| History::read(run))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if histories.len() == 2 && histories[0].name == histories[1].name {
        for (history, run) in histories.iter_mut().zip(&args.runs) {
            history.name = run.display().to_string();
        }
    }
    let run = &args.runs[0];
    let checkpoint = model_path(run.clone());
    if !checkpoint.is_file() {
        anyhow::bail!(
            "{} has no {MODEL_FILE}: the run saved no checkpoint yet",
            run.display()
        );
    }
    // Like eval: --data, else the data the run was trained on, else the usual places.
    let location = match args.data.clone().or_else(|| recorded_data(&checkpoint)) {
        Some(path) => DataLocation::given(&path),
        None => resolve_data_path(None),
    };
    let mut dataset = ensure_dataset(&location.path, false, false).with_context(|| {
        format!(
            "the confusion matrix and the mistakes need the CIFAR-10 test set, not found at {location} (pass --data PATH or set CIFAR10_PATH)"
        )
    })?;
    if let Some(limit) = args.limit {
        dataset.test.truncate(limit);
    }
    if dataset.test.is_empty() {
        anyhow::bail!("--limit 0 leaves no test image to evaluate");
    }

    let device = resolve(args.device, false)?;
    let (mut net, normalization) = load_net(&checkpoint, device, None, args.normalization)?;
    let config = LoaderConfig {
        normalization: normalization.values(),
        ..LoaderConfig::eval(args.batch_size)
    };
    let test = Arc::new(dataset.test);
    // One pass per image (no test-time augmentation): what the network itself says.
    let evaluation = evaluate(net.as_mut(), test.clone(), &config, device, CLASSES.len())?;
    println!(
        "{}: test accuracy {:.2}% on {} images",
        run.display(),
        evaluation.accuracy(),
        evaluation.total()
    );
    let out = args.out.clone().unwrap_or_else(|| run.clone());
    for written in write_pictures(&out, &histories, net.as_mut(), &test, &evaluation)? {
        println!("wrote {}", written.display());
    }
    Ok(())
}

/// Writes `curves.png` of `histories` (one run, or two compared) and the pictures of `net`
/// evaluated on `test` (`confusion.png`, `mistakes.png`, `filters.png`) into `out`.
/// Returns the files written.
pub fn write_pictures(
    out: &Path,
    histories: &[History],
    net: &mut dyn Module,
    test: &Split,
    evaluation: &Evaluation,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create folder {}", out.display()))?;
    let path = |name: &str| out.join(name);
    let mut written = Vec::new();
    curves::draw(histories, &path("curves.png"))?;
    written.push(path("curves.png"));
    confusion::draw(&evaluation.confusion, &CLASSES, &path("confusion.png"))?;
    written.push(path("confusion.png"));
    mistakes::draw(
        test,
        &evaluation.predictions,
        &CLASSES,
        &path("mistakes.png"),
    )?;
    written.push(path("mistakes.png"));
    filters::draw(&ConvWeight::first_of(net)?, &path("filters.png"))?;
    written.push(path("filters.png"));
    Ok(written)
}

/// What `train` does when it finishes: the pictures of the run it just wrote, from the
/// evaluation it already made. A picture that cannot be drawn is a warning, not a failed
/// run: the checkpoint is saved, and `cli plot` can draw them later.
pub fn after_training(out: &Path, net: &mut dyn Module, test: &Split, evaluation: &Evaluation) {
    let result = History::read(out)
        .and_then(|history| write_pictures(out, &[history], net, test, evaluation));
    match result {
        Ok(written) => {
            let names: Vec<String> = written
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            println!("pictures in {}: {}", out.display(), names.join(", "));
        }
        Err(error) => eprintln!("warning: no pictures written: {error:#}"),
    }
}
