//! `train`: the notebook's loop — batches of 32, Adam 1e-3, 20 epochs — with progress bars,
//! JSON-lines metrics, checkpoints every epoch and on Ctrl-C or SIGTERM that survive a
//! kill at any instant, and a resume that continues the run exactly as it was set up.

mod airbench94;
mod run_folder;
mod settings;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::checkpoint::{self, Checkpoint, TrainingProgress};
use models::data::{
    ensure_dataset, epoch_batches_from, resolve_data_path, Augmentation, DataFingerprint,
    DataLocation, LoaderConfig, Normalization, Split, CHANNELS, CLASSES, IMAGE_SIDE,
};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer, OptimizerState, Sgd, SgdConfig};
use models::train::{evaluate_until, train_step, Evaluation, StepOutcome, Tally};
use models::{no_grad, DType, Device, Net, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::run_folder::RunFolder;
pub use self::run_folder::METRICS_FILE;
pub use self::settings::RunSettings;
use crate::device::{resolve, DeviceChoice};
use crate::interrupt::{self, Interrupted};
use crate::memory::{self, Footprint};
use crate::metrics::MetricsLog;
use crate::precision::PrecisionChoice;

pub use models::checkpoint::MODEL_FILE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormalizationChoice {
    /// mean 0.5, std 0.5 per channel, as the notebook.
    Notebook,
    /// The training set's own channel statistics.
    Dataset,
    /// airbench94's CIFAR-10 statistics (the only one that model trains with).
    Airbench,
}

impl NormalizationChoice {
    pub fn values(self) -> Normalization {
        match self {
            NormalizationChoice::Notebook => Normalization::NOTEBOOK,
            NormalizationChoice::Dataset => Normalization::CIFAR10,
            NormalizationChoice::Airbench => Normalization::AIRBENCH,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NormalizationChoice::Notebook => "notebook",
            NormalizationChoice::Dataset => "dataset",
            NormalizationChoice::Airbench => "airbench",
        }
    }

    /// The one recorded in a model file's metadata (the notebook's when absent or unknown).
    pub fn recorded(metadata: &HashMap<String, String>) -> NormalizationChoice {
        match metadata.get("normalization").map(String::as_str) {
            Some("dataset") => NormalizationChoice::Dataset,
            Some("airbench") => NormalizationChoice::Airbench,
            _ => NormalizationChoice::Notebook,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// The network: the notebook's `net`, or `airbench94`, which trains with its own recipe
    /// (whitening, SGD with lookahead, 9.9 epochs of batch 1024, TTA at the end).
    #[arg(long, default_value = "net",
          value_parser = clap::builder::PossibleValuesParser::new(models::networks::names()))]
    pub model: String,
    /// airbench94: stop after N steps (the schedule still spans the whole run), for quick
    /// runs like the PyTorch port's --steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Where to train: auto takes CUDA when a GPU is usable.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Let cuBLAS use TF32 tensor cores for the convolution and linear products on CUDA
    /// (much faster on Ampere and later, about 3 significant digits in each product).
    #[arg(long)]
    pub tf32: bool,
    /// Total number of epochs (a resumed run continues up to this number).
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// Images per training step; one larger than the training set is lowered to its size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Arithmetic of the convolutions and linear layers: f32, or bf16 products summed in
    /// f32 (PyTorch's autocast; on the CPU needs AMX or AVX512-BF16; on CUDA, cuBLAS).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionChoice,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// The optimizer: the notebook's Adam, or SGD (with --momentum and --nesterov).
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerChoice,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// L2 weight decay (both optimizers, PyTorch's formula).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seeds the initial weights, the shuffling, dropout and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate on the first N test images only (0: no test at all).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// CIFAR-10 location: a cifar-10-batches-bin folder, the .tar.gz, or a folder holding
    /// either [default: the resumed run's, else $CIFAR10_PATH, else ./data, where the
    /// official archive is downloaded if it is missing].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Never download the dataset; fail if it is not found.
    #[arg(long)]
    pub no_download: bool,
    /// Folder for the run's checkpoints and metrics; one already holding a run is refused
    /// [default: runs/train-<unix seconds>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run in the --out folder instead of refusing to train over it.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue the run in this folder from its newest checkpoint, with its settings
    /// (weights, optimizer, data, batch size, position, random streams); only --epochs and
    /// flags that do not change the training may be given again.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Evaluate on the test set after every epoch, not just at the end.
    #[arg(long)]
    pub eval_every_epoch: bool,
    /// Random crops (4-pixel padding) and horizontal flips; off like the notebook.
    #[arg(long)]
    pub augment: bool,
    /// Input normalization.
    #[arg(long, value_enum, default_value = "notebook")]
    pub normalization: NormalizationChoice,
    /// Print the notebook's line (epoch, mean loss, accuracy) every N steps.
    #[arg(long, default_value_t = 500)]
    pub log_every: u64,
    /// Background threads preparing batches.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// No progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Do not draw the run's pictures (curves.png, confusion.png, ...) at the end.
    #[arg(long)]
    pub no_plots: bool,
    /// The flags given on the command line (clap ids), filled in by `main`: a resumed run
    /// checks these against its saved settings.
    #[arg(skip)]
    pub given: BTreeSet<String>,
}

/// More loader threads than this only hold more batches in memory.
const MAX_WORKERS: usize = 64;

impl TrainArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if self.log_every == 0 {
            bail!("--log-every must be at least 1");
        }
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        if self.workers > MAX_WORKERS {
            bail!(
                "--workers {}: at most {MAX_WORKERS} threads can prepare batches",
                self.workers
            );
        }
        if self.optimizer == OptimizerChoice::Adam {
            for flag in ["nesterov", "momentum"] {
                if self.given.contains(flag) {
                    bail!("--{flag} is for SGD; Adam has no such setting (add --optimizer sgd)");
                }
            }
        }
        if self.steps == Some(0) {
            bail!("--steps must be at least 1");
        }
        if self.resume.is_some() {
            if self.overwrite {
                bail!("--overwrite starts a new run, --resume continues one: give only one");
            }
            if self.out.is_some() && self.out != self.resume {
                bail!(
                    "--resume continues the run in its own folder; drop --out (to start a \
                     new run from scratch, give only --out)"
                );
            }
        }
        Ok(())
    }
}

/// The flags only the notebook's trainer reads: airbench94's recipe fixes these.
const NOTEBOOK_ONLY: [&str; 8] = [
    "epochs",
    "lr",
    "optimizer",
    "momentum",
    "nesterov",
    "weight_decay",
    "augment",
    "normalization",
];

/// Flags that do not apply to the run's network (`settings.model`, the resumed run's own
/// when resuming) are one error naming them.
fn check_flags_for_model(settings: &RunSettings, given: &BTreeSet<String>) -> anyhow::Result<()> {
    if settings.model == models::networks::Airbench94::NAME {
        let wrong: Vec<String> = NOTEBOOK_ONLY
            .iter()
            .filter(|flag| given.contains(**flag))
            .map(|flag| format!("--{}", flag.replace('_', "-")))
            .collect();
        if !wrong.is_empty() {
            bail!(
                "{} {} not apply to --model airbench94: it trains airbench94's own recipe                  (SGD with lookahead, 9.9 epochs; shorten a run with --steps)",
                wrong.join(", "),
                if wrong.len() == 1 { "does" } else { "do" }
            );
        }
    } else if given.contains("steps") {
        bail!("--steps is for --model airbench94; the notebook's trainer counts --epochs");
    }
    Ok(())
}

/// The model file's metadata: the network, its normalization, the step and class names.
fn model_metadata(settings: &RunSettings, global_step: u64) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("model".to_string(), settings.model.clone()),
        (
            "normalization".to_string(),
            settings.normalization.name().to_string(),
        ),
        ("global_step".to_string(), global_step.to_string()),
        ("classes".to_string(), CLASSES.join(",")),
    ])
}

fn default_out_dir() -> PathBuf {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("train-{seconds}"))
}

fn progress_bar(len: u64, epoch: u64, epochs: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// Prints a line above the progress bar (a hidden bar drops `bar.println`).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn build_optimizer(settings: &RunSettings, net: &mut Net) -> anyhow::Result<Optimizer> {
    let params = net.parameters();
    Ok(match settings.optimizer {
        OptimizerChoice::Adam => Optimizer::Adam(Adam::new(
            params,
            AdamConfig {
                lr: settings.lr,
                weight_decay: settings.weight_decay,
                ..AdamConfig::default()
            },
        )?),
        OptimizerChoice::Sgd => Optimizer::Sgd(Sgd::new(
            params,
            SgdConfig {
                lr: settings.lr,
                momentum: settings.momentum,
                dampening: 0.0,
                weight_decay: settings.weight_decay,
                nesterov: settings.nesterov,
            },
        )?),
    })
}

/// The network's layer outputs at batch 1, in evaluation mode (batch norm has no batch
/// statistics on one image) and without recording a graph; the weights, running
/// statistics and dropout streams are left as they were.
pub fn batch_one_trace(
    net: &mut dyn Module,
    device: Device,
) -> anyhow::Result<Vec<models::layers::LayerTrace>> {
    let input = Tensor::zeros(&[1, CHANNELS, IMAGE_SIDE, IMAGE_SIDE], DType::F32, device)?;
    let _guard = no_grad();
    net.set_training(false);
    let trace = net.trace(&input)?;
    Ok(trace)
}

/// Values of one input image.
const INPUT_VALUES: usize = CHANNELS * IMAGE_SIDE * IMAGE_SIDE;

/// The batches a loader with `workers` threads holds at once: its prefetch, the one being
/// used and the one being prepared.
pub fn batches_in_flight(workers: usize) -> usize {
    2 * workers.max(1) + 2
}

/// What a training step of `net` with an optimizer keeping `optimizer_values` values
/// needs, and an evaluation between epochs (when the weights, gradients and optimizer
/// state stay in memory).
pub fn training_footprints(
    net: &mut dyn Module,
    optimizer_values: usize,
    device: Device,
    workers: usize,
) -> anyhow::Result<(Footprint, Footprint)> {
    let trace = batch_one_trace(net, device)?;
    let parameters = net.num_parameters();
    let in_flight = batches_in_flight(workers);
    let step = Footprint::training(
        &trace,
        parameters,
        optimizer_values,
        4,
        INPUT_VALUES,
        in_flight,
    );
    let evaluation = Footprint {
        fixed: step.fixed,
        ..Footprint::evaluation(&trace, parameters, 4, INPUT_VALUES, in_flight)
    };
    Ok((step, evaluation))
}

/// The values an optimizer's state holds.
pub fn optimizer_values(state: &OptimizerState) -> usize {
    state.tensors.iter().map(|(_, t)| t.numel()).sum()
}

/// Refuses a batch size whose training step or evaluation would not fit in the memory
/// available on `device`.
fn ensure_training_fits(
    net: &mut dyn Module,
    optimizer_values: usize,
    settings: &RunSettings,
    eval_batch: usize,
    device: Device,
    workers: usize,
) -> anyhow::Result<()> {
    let available = memory::available(device);
    let (step, evaluation) = training_footprints(net, optimizer_values, device, workers)?;
    let flag = "--batch-size";
    memory::ensure_fits(
        "a training step",
        flag,
        settings.batch_size,
        &step,
        available,
    )?;
    memory::ensure_fits("an evaluation", flag, eval_batch, &evaluation, available)?;
    Ok(())
}

/// The batch size evaluations use while training: larger than training's (no gradients to
/// keep), never larger than the test set.
fn eval_batch_size(batch_size: usize, test_images: usize) -> usize {
    batch_size.max(256).min(test_images.max(1))
}

/// One epoch's (or its resumed remainder's) progress bar, timing and step records.
struct EpochMeter {
    bar: ProgressBar,
    epoch: u64,
    /// When this process started on the epoch, and the seconds spent on it before.
    started: Instant,
    seconds_before: f64,
    images_now: u64,
    /// Training images of the epochs before this one (for `images_seen` in the log).
    images_before: u64,
}

impl EpochMeter {
    /// The bar for `epoch` (1-based, of `args.epochs` or the epochs the run spans) of
    /// `batches`, from where `progress` stands; an epoch trains on `epoch_images` images.
    fn start(
        progress: &TrainingProgress,
        batches: u64,
        epoch: u64,
        epoch_images: u64,
        args: &TrainArgs,
    ) -> EpochMeter {
        EpochMeter::of(
            progress,
            batches,
            epoch,
            epoch_images,
            args.epochs,
            args.no_progress,
        )
    }

    fn of(
        progress: &TrainingProgress,
        batches: u64,
        epoch: u64,
        epoch_images: u64,
        epochs: u64,
        hidden: bool,
    ) -> EpochMeter {
        let bar = progress_bar(batches, epoch, epochs, hidden);
        bar.set_position(progress.batches_done);
        EpochMeter {
            bar,
            epoch,
            started: Instant::now(),
            seconds_before: progress.epoch_seconds,
            images_now: 0,
            images_before: (epoch - 1) * epoch_images,
        }
    }

    /// Counts a step into `progress`, moves the bar and, every `log_every` steps of the
    /// epoch, prints the notebook's line and records it in `metrics`.
    fn record(
        &mut self,
        progress: &mut TrainingProgress,
        metrics: &mut MetricsLog,
        outcome: &StepOutcome,
        log_every: u64,
    ) -> anyhow::Result<()> {
        let epoch = self.epoch;
        progress.batches_done += 1;
        progress.global_step += 1;
        progress.epoch_tally.add(outcome);
        progress.log_tally.add(outcome);
        progress.epoch_seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        self.images_now += outcome.count as u64;
        let rate = self.images_now as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "loss {:.4} acc {:.2}% {:.0} img/s",
            progress.epoch_tally.mean_loss(),
            progress.epoch_tally.accuracy(),
            rate
        ));
        self.bar.inc(1);
        let step = progress.batches_done;
        if step.is_multiple_of(log_every) {
            let window = progress.log_tally;
            say(
                &self.bar,
                format!(
                    "Epoch: {epoch}, loss: {:.4}, accuracy: {:.2}%",
                    window.mean_loss(),
                    window.accuracy()
                ),
            );
            progress.log_tally = Tally::default();
            // Against images seen, runs with different batch sizes line up in curves.png.
            let images_seen = self.images_before + progress.epoch_tally.images;
            metrics.record(json!({
                "kind": "step", "epoch": epoch, "step": step,
                "global_step": progress.global_step, "images_seen": images_seen,
                "loss": window.mean_loss(), "accuracy": window.accuracy(),
                "images_per_sec": rate,
            }))?;
        }
        Ok(())
    }

    /// Whether Ctrl-C or SIGTERM asked to stop after this step (the bar is left as is).
    fn interrupted(&self) -> bool {
        models::test_pause::point("train:step", &interrupt::requested);
        let stop = interrupt::requested();
        if stop {
            self.bar.abandon();
        }
        stop
    }

    /// The epoch's seconds so far, over every process that trained it.
    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    /// The epoch's metrics record as its steps leave it in `progress`.
    fn epoch_record(&self, progress: &TrainingProgress) -> serde_json::Value {
        let tally = progress.epoch_tally;
        json!({
            "kind": "epoch", "epoch": self.epoch, "global_step": progress.global_step,
            "train_loss": tally.mean_loss(), "train_accuracy": tally.accuracy(),
        })
    }

    /// Prints the test after the epoch and adds it to its `record`.
    fn add_test(&self, record: &mut serde_json::Value, evaluation: &Evaluation) {
        println!(
            "epoch {}: test accuracy {:.2}%, test loss {:.4}",
            self.epoch,
            evaluation.accuracy(),
            evaluation.loss
        );
        record["test_accuracy"] = json!(evaluation.accuracy());
        record["test_loss"] = json!(evaluation.loss);
    }

    /// Completes the epoch's `record` with its timing, prints the epoch's line (of
    /// `epochs`), writes the record and moves the run on to the next epoch.
    fn close(
        &self,
        run: &mut Run,
        mut record: serde_json::Value,
        epochs: u64,
    ) -> anyhow::Result<()> {
        let tally = run.progress.epoch_tally;
        let seconds = self.seconds();
        record["seconds"] = json!(seconds);
        record["images_per_sec"] = json!(tally.images as f64 / seconds.max(1e-9));
        println!(
            "epoch {}/{epochs} done in {seconds:.1}s: train loss {:.4}, train accuracy {:.2}%",
            self.epoch,
            tally.mean_loss(),
            tally.accuracy()
        );
        run.metrics.record(record)?;
        close_epoch(&mut run.progress, self.epoch);
        Ok(())
    }
}

/// Moves `progress` past the finished `epoch`: the next one starts.
fn close_epoch(progress: &mut TrainingProgress, epoch: u64) {
    progress.epochs_done = epoch;
    progress.batches_done = 0;
    progress.epoch_tally = Tally::default();
    progress.log_tally = Tally::default();
    progress.epoch_seconds = 0.0;
}

/// A run in progress: its folder, settings, metrics and where the loop stands. What it
/// trains (the notebook's network and optimizer, or airbench94's trainer) is the caller's
/// and handed to [`Run::save`] as a model and the state its trainer keeps.
struct Run {
    folder: RunFolder,
    settings: RunSettings,
    metrics: MetricsLog,
    progress: TrainingProgress,
    /// The progress has moved since the last save.
    unsaved: bool,
}

impl Run {
    /// Saves `model` and its trainer's `state` (the `optimizer.*` entries) with the run's
    /// progress as the run folder's checkpoint.
    fn save(&mut self, model: &mut dyn Module, state: &OptimizerState) -> anyhow::Result<()> {
        self.progress.metrics_bytes = self.metrics.len();
        self.progress.settings = serde_json::to_value(&self.settings)?;
        let metadata = model_metadata(&self.settings, self.progress.global_step);
        checkpoint::save_checkpoint_state(
            &self.folder.path,
            model,
            state,
            metadata,
            &self.progress,
        )?;
        self.unsaved = false;
        Ok(())
    }

    /// Saves (unless nothing moved since the last save) and returns the error that ends
    /// an interrupted run, saying where it stopped and how to continue.
    fn stop(
        &mut self,
        model: &mut dyn Module,
        state: &OptimizerState,
        at: &str,
    ) -> anyhow::Result<()> {
        if self.unsaved {
            self.save(model, state)?;
        }
        Err(Interrupted(format!(
            "interrupted {at}; checkpoint saved, continue with --resume {}",
            self.folder.path.display()
        ))
        .into())
    }
}

/// Whether an evaluation should stop before its next batch: Ctrl-C or SIGTERM came (tests
/// pause at `label` first).
fn interrupt_requested(label: &str) -> impl Fn() -> bool + '_ {
    move || {
        models::test_pause::point(label, &interrupt::requested);
        interrupt::requested()
    }
}

/// The progress of a run that has not started: `optimizer` names what its checkpoints'
/// optimizer state comes from.
fn new_progress(optimizer: &str, train_data: DataFingerprint) -> TrainingProgress {
    TrainingProgress {
        epochs_done: 0,
        batches_done: 0,
        global_step: 0,
        optimizer: optimizer.to_string(),
        epoch_tally: Tally::default(),
        log_tally: Tally::default(),
        epoch_seconds: 0.0,
        metrics_bytes: 0,
        finished: false,
        train_data,
        settings: serde_json::Value::Null,
    }
}

/// Where the data is: the flag or the resumed run's location, else `$CIFAR10_PATH`, else
/// the default folder.
fn data_location(settings: &RunSettings, args: &TrainArgs) -> anyhow::Result<DataLocation> {
    Ok(match &settings.data {
        Some(path) if args.data.is_none() && !path.exists() => bail!(
            "the run's data was read from {}, which is gone: give its new place with --data",
            path.display()
        ),
        Some(path) => DataLocation::given(path),
        None => resolve_data_path(None),
    })
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.validate()?;
    let requested = RunSettings::from_args(&args);
    // A resumed run locks its folder before reading the checkpoint (which may complete an
    // interrupted save); a new run's folder is only checked now, and made once the data
    // and the memory are known to be there, so a failed start leaves nothing behind.
    let (folder, checkpoint, mut settings) = match &args.resume {
        Some(dir) => {
            let folder = RunFolder::for_resume(dir)?;
            if !Checkpoint::exists(dir) {
                bail!(
                    "{} holds no checkpoint: its run stopped before its first save; start it \
                     again with --out {} --overwrite",
                    dir.display(),
                    dir.display()
                );
            }
            let checkpoint = Checkpoint::open(dir)
                .with_context(|| format!("cannot resume the run in {}", dir.display()))?;
            let settings =
                RunSettings::resumed(&checkpoint.progress.settings, &requested, &args.given, dir)?;
            (Some(folder), Some(checkpoint), settings)
        }
        None => (None, None, requested),
    };
    check_flags_for_model(&settings, &args.given)?;
    let airbench = settings.model == models::networks::Airbench94::NAME;
    let out = match (&folder, &args.out) {
        (Some(folder), _) => folder.path.clone(),
        (None, Some(out)) => out.clone(),
        (None, None) => default_out_dir(),
    };
    if folder.is_none() {
        run_folder::check_new_run(&out, args.overwrite)?;
    }
    if let Some(checkpoint) = checkpoint.as_ref().filter(|_| airbench) {
        if checkpoint.progress.finished {
            println!(
                "the run in {} has already finished its training and its test; nothing to do",
                out.display()
            );
            return Ok(());
        }
    } else if let Some(checkpoint) = &checkpoint {
        let progress = &checkpoint.progress;
        // A run stopped inside an epoch has that epoch to finish.
        let done = progress.epochs_done + u64::from(progress.batches_done > 0);
        if done > args.epochs {
            bail!(
                "--epochs {}: the run in {} has already trained {done} epochs; ask for at \
                 least that many",
                args.epochs,
                out.display()
            );
        }
        if done == args.epochs && progress.finished {
            println!(
                "the run in {} has already finished its {done} epochs and its test; nothing \
                 to do (ask for more with --epochs)",
                out.display()
            );
            return Ok(());
        }
    }

    let device = resolve(args.device, args.tf32)?;
    let _precision = settings.precision.enable(device)?;
    let location = data_location(&settings, &args)?;
    let may_download = location.may_download() && !args.no_download;
    let mut dataset = ensure_dataset(&location.path, may_download, !args.no_progress)
        .with_context(|| format!("reading CIFAR-10 from {location}"))?;
    settings.data = Some(std::path::absolute(&location.path).unwrap_or(location.path.clone()));
    if let Some(limit) = settings.limit {
        dataset.train.truncate(limit);
    }
    if let Some(limit) = settings.test_limit {
        dataset.test.truncate(limit);
    }
    let train_data = dataset.train.fingerprint();
    if let Some(checkpoint) = &checkpoint {
        let trained_on = checkpoint.progress.train_data;
        if train_data != trained_on {
            bail!(
                "the training images read from {location} ({train_data}) are not the ones \
                 the run in {} was trained on ({trained_on}); give that data with --data",
                out.display()
            );
        }
    }
    if settings.batch_size > dataset.train.len() {
        println!(
            "note: --batch-size {} is more than the {} training images: using batches of {}",
            settings.batch_size,
            dataset.train.len(),
            dataset.train.len()
        );
        settings.batch_size = dataset.train.len();
    }
    let train_split = Arc::new(dataset.train);
    let test_split = Arc::new(dataset.test);
    let eval_batch = eval_batch_size(settings.batch_size, test_split.len());
    if airbench {
        let start = airbench94::Start {
            folder,
            checkpoint,
            out,
            settings,
            train_data,
        };
        return airbench94::run(start, &args, device, train_split, test_split, eval_batch);
    }

    let mut net = Net::new(settings.seed, device)?;
    let mut optimizer = build_optimizer(&settings, &mut net)?;
    ensure_training_fits(
        &mut net,
        optimizer_values(&optimizer.state()),
        &settings,
        eval_batch,
        device,
        args.workers,
    )?;

    let folder = match folder {
        Some(folder) => folder,
        None => RunFolder::for_new_run(&out, args.overwrite)?,
    };
    let metrics_path = out.join(METRICS_FILE);
    let (progress, metrics) = match &checkpoint {
        Some(checkpoint) => {
            checkpoint.restore(&mut net, &mut optimizer)?;
            let progress = checkpoint.progress.clone();
            let metrics = MetricsLog::open_at(&metrics_path, progress.metrics_bytes)?;
            if checkpoint.completed_interrupted_save {
                println!(
                    "completed the checkpoint save that was interrupted in {}",
                    out.display()
                );
            }
            println!(
                "resuming from {} after {} epochs and {} batches ({} steps)",
                out.display(),
                progress.epochs_done,
                progress.batches_done,
                progress.global_step
            );
            (progress, metrics)
        }
        None => {
            let progress = new_progress(optimizer.name(), train_data);
            (progress, MetricsLog::open_at(&metrics_path, 0)?)
        }
    };
    let mut run = Run {
        folder,
        settings,
        metrics,
        progress,
        unsaved: true,
    };
    interrupt::install()?;
    let mut notebook = Notebook { net, optimizer };
    train(
        &mut run,
        &mut notebook,
        &args,
        device,
        train_split,
        test_split,
        eval_batch,
    )
}

/// What the notebook's recipe trains.
struct Notebook {
    net: Net,
    optimizer: Optimizer,
}

impl Notebook {
    fn save(&mut self, run: &mut Run) -> anyhow::Result<()> {
        run.save(&mut self.net, &self.optimizer.state())
    }

    fn stop(&mut self, run: &mut Run, at: &str) -> anyhow::Result<()> {
        run.stop(&mut self.net, &self.optimizer.state(), at)
    }

    /// The test set, stoppable by an interrupt between batches (`None` then).
    fn evaluate(
        &mut self,
        test: &Arc<Split>,
        config: &LoaderConfig,
        device: Device,
        label: &str,
    ) -> anyhow::Result<Option<Evaluation>> {
        Ok(evaluate_until(
            &mut self.net,
            test.clone(),
            config,
            device,
            CLASSES.len(),
            &interrupt_requested(label),
        )?)
    }
}

fn train(
    run: &mut Run,
    notebook: &mut Notebook,
    args: &TrainArgs,
    device: Device,
    train_split: Arc<Split>,
    test_split: Arc<Split>,
    eval_batch: usize,
) -> anyhow::Result<()> {
    let settings = run.settings.clone();
    println!(
        "training on {} images ({} test) on {} in {}, {} epochs of batch {}, {} lr {}; run folder {}",
        train_split.len(),
        test_split.len(),
        device,
        settings.precision.precision(),
        args.epochs,
        settings.batch_size,
        notebook.optimizer.name(),
        settings.lr,
        run.folder.path.display()
    );
    let loader = LoaderConfig {
        batch_size: settings.batch_size,
        shuffle: true,
        seed: settings.seed,
        normalization: settings.normalization.values(),
        augmentation: if settings.augment {
            Augmentation::STANDARD
        } else {
            Augmentation::NONE
        },
        workers: args.workers,
        prefetch: 2 * args.workers.max(1),
    };
    loader.validate()?;
    let eval_loader = LoaderConfig {
        normalization: settings.normalization.values(),
        ..LoaderConfig::eval(eval_batch)
    };
    let testing = !test_split.is_empty();

    let started = Instant::now();
    if run.progress.epochs_done < args.epochs {
        // A finished run asked for more epochs: its test is to be run again at the end.
        run.progress.finished = false;
    }
    while run.progress.epochs_done < args.epochs {
        let epoch = run.progress.epochs_done + 1;
        notebook.net.set_training(true);
        let skip = run.progress.batches_done as usize;
        let batches = epoch_batches_from(train_split.clone(), &loader, epoch - 1, skip);
        let total = loader.num_batches(train_split.len());
        let epoch_images = train_split.len() as u64;
        let mut meter = EpochMeter::start(&run.progress, total as u64, epoch, epoch_images, args);
        for (index, batch) in (skip..).zip(batches) {
            let outcome = train_step(&mut notebook.net, &mut notebook.optimizer, &batch, device)?;
            if !outcome.loss.is_finite() {
                bail!(
                    "the loss became {} at epoch {epoch}, step {}: lower --lr",
                    outcome.loss,
                    index + 1
                );
            }
            run.unsaved = true;
            meter.record(
                &mut run.progress,
                &mut run.metrics,
                &outcome,
                settings.log_every,
            )?;
            if meter.interrupted() {
                return notebook.stop(run, &format!("at epoch {epoch}, step {}", index + 1));
            }
        }
        meter.bar.finish();

        // The epoch's batches are done; its evaluation and record close it. An interrupt
        // during the evaluation saves this position, and a resume redoes only that.
        let mut record = meter.epoch_record(&run.progress);
        if settings.eval_every_epoch && epoch < args.epochs && testing {
            match notebook.evaluate(&test_split, &eval_loader, device, "eval:epoch")? {
                Some(evaluation) => meter.add_test(&mut record, &evaluation),
                None => {
                    return notebook
                        .stop(run, &format!("during the evaluation after epoch {epoch}"))
                }
            }
        }
        meter.close(run, record, args.epochs)?;
        notebook.save(run)?;
        if interrupt::requested() {
            return notebook.stop(run, &format!("after epoch {epoch}"));
        }
    }

    println!("{}", "-".repeat(20));
    if testing {
        let Some(evaluation) =
            notebook.evaluate(&test_split, &eval_loader, device, "eval:final")?
        else {
            return notebook.stop(
                run,
                "during the final test (the trained model is saved; the resumed run only tests)",
            );
        };
        println!(
            "test accuracy: {:.2}%, test loss {:.4} ({} images)",
            evaluation.accuracy(),
            evaluation.loss,
            evaluation.total()
        );
        run.metrics.record(json!({
            "kind": "test", "epochs": args.epochs, "test_accuracy": evaluation.accuracy(),
            "test_loss": evaluation.loss, "total_seconds": started.elapsed().as_secs_f64(),
        }))?;
        run.progress.finished = true;
        notebook.save(run)?;
        if !args.no_plots {
            super::plot::after_training(
                &run.folder.path,
                &mut notebook.net,
                &test_split,
                &evaluation,
            );
        }
        Ok(())
    } else {
        println!("test: skipped (--test-limit 0)");
        run.progress.finished = true;
        notebook.save(run)
    }
}
