//! `train`: the notebook's loop — batches of 32, Adam 1e-3, 20 epochs — with progress bars,
//! JSON-lines metrics, atomic checkpoints every epoch and on Ctrl-C, and exact resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::checkpoint::{self, TrainingProgress};
use models::data::{
    ensure_dataset, epoch_batches, resolve_data_path, Augmentation, LoaderConfig, Normalization,
    CLASSES,
};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use models::train::{evaluate, train_step};
use models::Net;
use serde_json::json;

use crate::device::{resolve, DeviceChoice};
use crate::metrics::MetricsLog;

pub const MODEL_FILE: &str = "model.safetensors";
pub const TRAINING_STATE_FILE: &str = "training_state.safetensors";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerChoice {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormalizationChoice {
    /// mean 0.5, std 0.5 per channel, as the notebook.
    Notebook,
    /// The training set's own channel statistics.
    Dataset,
}

impl NormalizationChoice {
    pub fn values(self) -> Normalization {
        match self {
            NormalizationChoice::Notebook => Normalization::NOTEBOOK,
            NormalizationChoice::Dataset => Normalization::CIFAR10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NormalizationChoice::Notebook => "notebook",
            NormalizationChoice::Dataset => "dataset",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
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
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
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
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// CIFAR-10 location: a cifar-10-batches-bin folder, the .tar.gz, or a folder holding
    /// either [default: $CIFAR10_PATH, else ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Never download the dataset; fail if it is not found.
    #[arg(long)]
    pub no_download: bool,
    /// Folder for the run's checkpoints and metrics [default: runs/<timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from a run folder's checkpoint (weights, optimizer, epoch, RNG).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Evaluate on the test set after every epoch, not just at the end.
    #[arg(long)]
    pub eval_every_epoch: bool,
    /// Random crops (4-pixel padding) and horizontal flips; off like the notebook.
    #[arg(long)]
    pub augment: bool,
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
}

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
        Ok(())
    }

    /// The options that shape the trajectory; a resumed run must agree on them to
    /// reproduce the uninterrupted one.
    fn trajectory_options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("batch_size".into(), self.batch_size.to_string()),
            ("lr".into(), self.lr.to_string()),
            ("momentum".into(), self.momentum.to_string()),
            ("nesterov".into(), self.nesterov.to_string()),
            ("weight_decay".into(), self.weight_decay.to_string()),
            ("limit".into(), format!("{:?}", self.limit)),
            ("augment".into(), self.augment.to_string()),
            ("normalization".into(), self.normalization.name().into()),
        ])
    }

    fn optimizer(&self, net: &mut Net) -> anyhow::Result<Optimizer> {
        let params = net.parameters();
        Ok(match self.optimizer {
            OptimizerChoice::Adam => Optimizer::Adam(Adam::new(
                params,
                AdamConfig {
                    lr: self.lr,
                    weight_decay: self.weight_decay,
                    ..AdamConfig::default()
                },
            )?),
            OptimizerChoice::Sgd => Optimizer::Sgd(Sgd::new(
                params,
                SgdConfig {
                    lr: self.lr,
                    momentum: self.momentum,
                    dampening: 0.0,
                    weight_decay: self.weight_decay,
                    nesterov: self.nesterov,
                },
            )?),
        })
    }
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

/// Running sums between two log lines.
#[derive(Default)]
struct Window {
    loss: f64,
    correct: usize,
    images: usize,
    steps: u64,
}

impl Window {
    fn add(&mut self, loss: f64, correct: usize, images: usize) {
        self.loss += loss;
        self.correct += correct;
        self.images += images;
        self.steps += 1;
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.steps.max(1) as f64
    }

    fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.images.max(1) as f64
    }
}

struct Run<'a> {
    args: &'a TrainArgs,
    out: PathBuf,
    net: Net,
    optimizer: Optimizer,
    metrics: MetricsLog,
    progress: TrainingProgress,
}

impl Run<'_> {
    fn save(&mut self) -> anyhow::Result<()> {
        // Training state first: a model file newer than its state would resume wrongly;
        // the epoch in both lets `--resume` check that they belong together.
        checkpoint::save_training_state(
            &self.out.join(TRAINING_STATE_FILE),
            &mut self.net,
            &self.optimizer,
            &self.progress,
        )?;
        let metadata = std::collections::HashMap::from([
            ("format".to_string(), "pt".to_string()),
            (
                "normalization".to_string(),
                self.args.normalization.name().to_string(),
            ),
            (
                "global_step".to_string(),
                self.progress.global_step.to_string(),
            ),
            ("classes".to_string(), CLASSES.join(",")),
        ]);
        checkpoint::save_model(&mut self.net, &self.out.join(MODEL_FILE), metadata)?;
        Ok(())
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.validate()?;
    let device = resolve(args.device, args.tf32)?;
    let data_path = resolve_data_path(args.data.as_deref());
    let mut dataset = ensure_dataset(&data_path, !args.no_download, !args.no_progress)
        .with_context(|| format!("loading CIFAR-10 from {}", data_path.display()))?;
    if let Some(limit) = args.limit {
        dataset.train.truncate(limit);
    }
    if let Some(limit) = args.test_limit {
        dataset.test.truncate(limit);
    }
    let train_split = Arc::new(dataset.train);
    let test_split = Arc::new(dataset.test);

    let mut net = Net::new(args.seed, device)?;
    let optimizer = args.optimizer(&mut net)?;
    let out = args
        .out
        .clone()
        .or_else(|| args.resume.clone())
        .unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    let mut run = Run {
        args: &args,
        out: out.clone(),
        net,
        optimizer,
        metrics: MetricsLog::open(&out.join("metrics.jsonl"))?,
        progress: TrainingProgress {
            epochs_done: 0,
            batches_done: 0,
            global_step: 0,
            seed: args.seed,
            optimizer: String::new(),
            options: args.trajectory_options(),
        },
    };
    run.progress.optimizer = run.optimizer.name().to_string();
    if let Some(from) = &args.resume {
        resume(&mut run, from)?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second handler cannot be installed (tests call run() repeatedly): ignore that.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    println!(
        "training on {} images ({} test) on {}, {} epochs of batch {}, {} lr {}; run folder {}",
        train_split.len(),
        test_split.len(),
        device,
        args.epochs,
        args.batch_size,
        run.optimizer.name(),
        args.lr,
        out.display()
    );
    let loader = LoaderConfig {
        batch_size: args.batch_size,
        shuffle: true,
        seed: args.seed,
        normalization: args.normalization.values(),
        augmentation: if args.augment {
            Augmentation::STANDARD
        } else {
            Augmentation::NONE
        },
        workers: args.workers,
        prefetch: 2 * args.workers.max(1),
    };
    loader.validate()?;
    let eval_loader = LoaderConfig {
        augmentation: Augmentation::NONE,
        ..LoaderConfig::eval(args.batch_size.max(256))
    };

    let started = Instant::now();
    while run.progress.epochs_done < args.epochs {
        let epoch = run.progress.epochs_done + 1;
        let epoch_started = Instant::now();
        run.net.set_training(true);
        let skip = run.progress.batches_done as usize;
        let batches = epoch_batches(train_split.clone(), &loader, epoch - 1);
        let bar = progress_bar(batches.len() as u64, epoch, args.epochs, args.no_progress);
        bar.set_position(skip as u64);
        let mut epoch_window = Window::default();
        let mut log_window = Window::default();
        let mut images_seen = 0usize;
        for (index, batch) in batches.enumerate().skip(skip) {
            let outcome = train_step(&mut run.net, &mut run.optimizer, &batch, device)?;
            if !outcome.loss.is_finite() {
                bail!(
                    "the loss became {} at epoch {epoch}, step {}: lower --lr",
                    outcome.loss,
                    index + 1
                );
            }
            run.progress.batches_done = index as u64 + 1;
            run.progress.global_step += 1;
            images_seen += outcome.count;
            epoch_window.add(outcome.loss, outcome.correct, outcome.count);
            log_window.add(outcome.loss, outcome.correct, outcome.count);
            let rate = images_seen as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                epoch_window.mean_loss(),
                epoch_window.accuracy(),
                rate
            ));
            bar.inc(1);
            if (index as u64 + 1).is_multiple_of(args.log_every) {
                let line = format!(
                    "Epoch: {epoch}, loss: {}, accuracy: {}%",
                    log_window.mean_loss(),
                    log_window.accuracy()
                );
                // A hidden bar (--no-progress, or stderr not a terminal) drops println.
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
                let images_seen = (epoch - 1) * train_split.len() as u64
                    + ((index as u64 + 1) * args.batch_size as u64).min(train_split.len() as u64);
                run.metrics.record(json!({
                    "kind": "step", "epoch": epoch, "step": index + 1,
                    "global_step": run.progress.global_step, "images_seen": images_seen,
                    "loss": log_window.mean_loss(), "accuracy": log_window.accuracy(),
                    "images_per_sec": rate,
                }))?;
                log_window = Window::default();
            }
            if interrupted.load(Ordering::SeqCst) {
                bar.abandon();
                run.save()?;
                bail!(
                    "interrupted at epoch {epoch}, step {}; checkpoint saved, continue with --resume {}",
                    index + 1,
                    out.display()
                );
            }
        }
        bar.finish();
        run.progress.epochs_done = epoch;
        run.progress.batches_done = 0;
        let seconds = epoch_started.elapsed().as_secs_f64();
        let mut record = json!({
            "kind": "epoch", "epoch": epoch, "global_step": run.progress.global_step,
            "train_loss": epoch_window.mean_loss(), "train_accuracy": epoch_window.accuracy(),
            "seconds": seconds,
            "images_per_sec": images_seen as f64 / seconds.max(1e-9),
        });
        if args.eval_every_epoch && epoch < args.epochs {
            let evaluation = evaluate(
                &mut run.net,
                test_split.clone(),
                &eval_loader,
                device,
                CLASSES.len(),
            )?;
            println!("epoch {epoch}: test accuracy {:.2}%", evaluation.accuracy());
            record["test_accuracy"] = json!(evaluation.accuracy());
            record["test_loss"] = json!(evaluation.loss);
        }
        run.save()?;
        println!(
            "epoch {epoch}/{} done in {seconds:.1}s: train loss {:.4}, train accuracy {:.2}%",
            args.epochs,
            epoch_window.mean_loss(),
            epoch_window.accuracy()
        );
        run.metrics.record(record)?;
    }

    println!("{}", "-".repeat(20));
    let evaluation = evaluate(
        &mut run.net,
        test_split.clone(),
        &eval_loader,
        device,
        CLASSES.len(),
    )?;
    println!("test accuracy: {}%", evaluation.accuracy());
    run.metrics.record(json!({
        "kind": "test", "epochs": args.epochs, "test_accuracy": evaluation.accuracy(),
        "test_loss": evaluation.loss, "total_seconds": started.elapsed().as_secs_f64(),
    }))?;
    if !args.no_plots {
        super::plot::after_training(&out, &mut run.net, &test_split, &evaluation);
    }
    Ok(())
}

fn resume(run: &mut Run<'_>, from: &Path) -> anyhow::Result<()> {
    let model_file = from.join(MODEL_FILE);
    let state_file = from.join(TRAINING_STATE_FILE);
    let metadata = checkpoint::load_model(&mut run.net, &model_file)?;
    let progress = checkpoint::load_training_state(&state_file, &mut run.net, &mut run.optimizer)?;
    if let Some(step) = metadata.get("global_step") {
        if *step != progress.global_step.to_string() {
            bail!(
                "{} (step {step}) and {} (step {}) come from different moments of training",
                model_file.display(),
                state_file.display(),
                progress.global_step
            );
        }
    }
    for (key, saved) in &progress.options {
        if let Some(now) = run.progress.options.get(key) {
            if now != saved {
                eprintln!(
                    "warning: resuming with {key} = {now}, the checkpoint was trained with {saved}; the run will not match an uninterrupted one"
                );
            }
        }
    }
    if progress.seed != run.progress.seed {
        eprintln!(
            "warning: resuming with --seed {}, the checkpoint used {}; batches will be drawn in another order",
            run.progress.seed, progress.seed
        );
    }
    println!(
        "resuming from {} after {} epochs and {} batches ({} steps)",
        from.display(),
        progress.epochs_done,
        progress.batches_done,
        progress.global_step
    );
    run.progress.epochs_done = progress.epochs_done;
    run.progress.batches_done = progress.batches_done;
    run.progress.global_step = progress.global_step;
    Ok(())
}
