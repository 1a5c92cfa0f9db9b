//! `train --model airbench94`: airbench94's recipe ([`models::recipes`]) driven epoch by
//! epoch with the notebook trainer's progress bars, metrics, run folder and checkpoints.
//! A checkpoint holds the weights, SGD's momentum and step count and the lookahead's
//! average, so `--resume` continues a run exactly where it stopped, even mid-epoch; at the
//! end the test set is evaluated without and with test-time augmentation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use models::checkpoint::{self, Checkpoint, TrainingProgress};
use models::data::{DataFingerprint, ResidentLoader, Split, CLASSES};
use models::networks::Airbench94;
use models::recipes::{Airbench94Recipe, Airbench94Trainer};
use models::train::{Evaluation, Tally};
use models::tta::{evaluate_tta_until, TtaLevel};
use models::Device;
use serde_json::json;

use super::run_folder::{RunFolder, METRICS_FILE};
use super::{
    close_epoch, ensure_training_fits, interrupted, model_metadata, optimizer_values, EpochMeter,
    RunSettings, TrainArgs,
};
use crate::interrupt;
use crate::metrics::MetricsLog;

/// What the training state records as the run's optimizer: SGD with airbench's two groups
/// and the lookahead average.
const OPTIMIZER: &str = "airbench94-sgd-lookahead";

/// A run as `train` has set it up: its folder (when resumed), checkpoint, settings and the
/// training images' fingerprint.
pub struct Start {
    pub folder: Option<RunFolder>,
    pub checkpoint: Option<Checkpoint>,
    pub out: PathBuf,
    pub settings: RunSettings,
    pub train_data: DataFingerprint,
}

/// An airbench94 run in progress.
struct Run {
    folder: RunFolder,
    settings: RunSettings,
    trainer: Airbench94Trainer,
    metrics: MetricsLog,
    progress: TrainingProgress,
    unsaved: bool,
}

impl Run {
    fn save(&mut self) -> anyhow::Result<()> {
        self.progress.metrics_bytes = self.metrics.len();
        self.progress.settings = serde_json::to_value(&self.settings)?;
        let metadata = model_metadata(&self.settings, self.progress.global_step);
        let state = self.trainer.state();
        checkpoint::save_checkpoint_state(
            &self.folder.path,
            &mut self.trainer.model,
            &state,
            metadata,
            &self.progress,
        )?;
        self.unsaved = false;
        Ok(())
    }

    fn stop(&mut self, at: &str) -> anyhow::Result<()> {
        if self.unsaved {
            self.save()?;
        }
        Err(interrupted(&self.folder, at))
    }

    /// The test set at `level`, stoppable by an interrupt between batches (`None` then).
    fn evaluate(
        &mut self,
        test: &Split,
        level: TtaLevel,
        batch: usize,
        device: Device,
        label: &str,
    ) -> anyhow::Result<Option<Evaluation>> {
        let stop = || {
            models::test_pause::point(label, &interrupt::requested);
            interrupt::requested()
        };
        let normalization = self.trainer.recipe.loader(0).normalization;
        Ok(evaluate_tta_until(
            &mut self.trainer.model,
            test,
            &normalization,
            level,
            batch,
            device,
            CLASSES.len(),
            &stop,
        )?)
    }
}

/// Trains (or resumes) the airbench94 run `start` describes, then tests it.
pub fn run(
    start: Start,
    args: &TrainArgs,
    device: Device,
    train_split: Arc<Split>,
    test_split: Arc<Split>,
    eval_batch: usize,
) -> anyhow::Result<()> {
    let Start {
        folder,
        checkpoint,
        out,
        settings,
        train_data,
    } = start;
    let recipe = Airbench94Recipe {
        batch_size: settings.batch_size,
        ..Airbench94Recipe::default()
    };
    let model = Airbench94::new(settings.seed, device)?;
    let mut trainer =
        Airbench94Trainer::new(recipe, model, train_split.len(), settings.steps, device)?;
    let state_values = optimizer_values(&trainer.state());
    ensure_training_fits(
        &mut trainer.model,
        state_values,
        &settings,
        eval_batch,
        device,
        args.workers,
    )?;
    let loader = ResidentLoader::new(&train_split, recipe.loader(settings.seed))?;

    let folder = match folder {
        Some(folder) => folder,
        None => RunFolder::for_new_run(&out, args.overwrite)?,
    };
    let metrics_path = out.join(METRICS_FILE);
    let (progress, metrics) = match &checkpoint {
        Some(checkpoint) => {
            checkpoint.restore_model(&mut trainer.model)?;
            trainer.load_state(&checkpoint.optimizer_state(OPTIMIZER)?)?;
            let progress = checkpoint.progress.clone();
            if trainer.steps_done() != progress.global_step {
                bail!(
                    "{}: the optimizer has taken {} steps but the run records {}; the \
                     checkpoint is inconsistent",
                    out.display(),
                    trainer.steps_done(),
                    progress.global_step
                );
            }
            println!(
                "resuming from {} after {} of {} steps",
                out.display(),
                progress.global_step,
                trainer.last_step()
            );
            let metrics = MetricsLog::open_at(&metrics_path, progress.metrics_bytes)?;
            (progress, metrics)
        }
        None => {
            let started = Instant::now();
            trainer.whiten(&train_split)?;
            let seconds = started.elapsed().as_secs_f64();
            let images = recipe.whiten_images.min(train_split.len());
            println!("whitening initialisation from {images} images in {seconds:.2}s");
            let progress = TrainingProgress {
                epochs_done: 0,
                batches_done: 0,
                global_step: 0,
                optimizer: OPTIMIZER.to_string(),
                epoch_tally: Tally::default(),
                log_tally: Tally::default(),
                epoch_seconds: 0.0,
                metrics_bytes: 0,
                finished: false,
                train_data,
                settings: serde_json::Value::Null,
            };
            let mut metrics = MetricsLog::open_at(&metrics_path, 0)?;
            metrics.record(json!({ "kind": "whitening", "images": images, "seconds": seconds }))?;
            (progress, metrics)
        }
    };
    let mut run = Run {
        folder,
        settings,
        trainer,
        metrics,
        progress,
        unsaved: true,
    };
    interrupt::install()?;
    train(&mut run, args, device, &loader, &test_split, eval_batch)
}

fn train(
    run: &mut Run,
    args: &TrainArgs,
    device: Device,
    loader: &ResidentLoader,
    test_split: &Split,
    eval_batch: usize,
) -> anyhow::Result<()> {
    let per_epoch = loader.batches_per_epoch() as u64;
    let last_step = run.trainer.last_step();
    let epochs = last_step.div_ceil(per_epoch);
    let stopping_early = if last_step < run.trainer.total_steps() {
        format!(
            " (stopping after {last_step} of the recipe's {})",
            run.trainer.total_steps()
        )
    } else {
        String::new()
    };
    println!(
        "training airbench94 on {} images ({} test) on {device}: {last_step} steps of batch {}{stopping_early}, {epochs} epochs; run folder {}",
        loader.len(),
        test_split.len(),
        run.settings.batch_size,
        run.folder.path.display()
    );
    let started = Instant::now();
    while !run.trainer.finished() {
        let done = run.trainer.steps_done();
        let epoch = done / per_epoch + 1;
        let end = per_epoch.min(last_step - (epoch - 1) * per_epoch);
        run.trainer.begin_epoch(epoch - 1)?;
        let plan = loader.epoch(epoch - 1);
        let mut meter = EpochMeter::of(&run.progress, end, epoch, epochs, args.no_progress);
        for index in done % per_epoch..end {
            let outcome = run.trainer.step(&plan.batch(index as usize))?;
            if !outcome.loss.is_finite() {
                bail!(
                    "the loss became {} at epoch {epoch}, step {}",
                    outcome.loss,
                    index + 1
                );
            }
            run.unsaved = true;
            meter.record(
                &mut run.progress,
                &mut run.metrics,
                &outcome,
                run.settings.log_every,
            )?;
            if meter.interrupted() {
                return run.stop(&format!("at epoch {epoch}, step {}", index + 1));
            }
        }
        meter.bar.finish();

        let tally = run.progress.epoch_tally;
        let mut record = json!({
            "kind": "epoch", "epoch": epoch, "global_step": run.progress.global_step,
            "train_loss": tally.mean_loss(), "train_accuracy": tally.accuracy(),
        });
        if run.settings.eval_every_epoch && epoch < epochs && !test_split.is_empty() {
            match run.evaluate(
                test_split,
                TtaLevel::Plain,
                eval_batch,
                device,
                "eval:epoch",
            )? {
                Some(evaluation) => {
                    println!(
                        "epoch {epoch}: test accuracy {:.2}%, test loss {:.4}",
                        evaluation.accuracy(),
                        evaluation.loss
                    );
                    record["test_accuracy"] = json!(evaluation.accuracy());
                    record["test_loss"] = json!(evaluation.loss);
                }
                None => return run.stop(&format!("during the evaluation after epoch {epoch}")),
            }
        }
        let seconds = meter.seconds();
        record["seconds"] = json!(seconds);
        record["images_per_sec"] = json!(tally.images as f64 / seconds.max(1e-9));
        println!(
            "epoch {epoch}/{epochs} done in {seconds:.1}s: train loss {:.4}, train accuracy {:.2}%",
            tally.mean_loss(),
            tally.accuracy()
        );
        run.metrics.record(record)?;
        close_epoch(&mut run.progress, epoch);
        run.save()?;
        if interrupt::requested() {
            return run.stop(&format!("after epoch {epoch}"));
        }
    }

    println!("{}", "-".repeat(20));
    if test_split.is_empty() {
        println!("test: skipped (--test-limit 0)");
    } else {
        let mut record = json!({ "kind": "test", "steps": run.progress.global_step });
        let tta = run.trainer.recipe.tta;
        for (level, key) in [(TtaLevel::Plain, "test"), (tta, "tta")] {
            let eval_started = Instant::now();
            let Some(evaluation) =
                run.evaluate(test_split, level, eval_batch, device, "eval:final")?
            else {
                return run.stop(
                    "during the final test (the trained model is saved; the resumed run only tests)",
                );
            };
            println!(
                "{}: {:.2}%, test loss {:.4} ({} images, {:.1}s)",
                match level {
                    TtaLevel::Plain => "test accuracy without TTA".to_string(),
                    _ => format!("test accuracy with TTA ({} passes)", level.passes()),
                },
                evaluation.accuracy(),
                evaluation.loss,
                evaluation.total(),
                eval_started.elapsed().as_secs_f64()
            );
            record[format!("{key}_accuracy")] = json!(evaluation.accuracy());
            record[format!("{key}_loss")] = json!(evaluation.loss);
            record[format!("{key}_seconds")] = json!(eval_started.elapsed().as_secs_f64());
        }
        record["total_seconds"] = json!(started.elapsed().as_secs_f64());
        run.metrics.record(record)?;
    }
    run.progress.finished = true;
    run.save()
}
