//! `train --model airbench94`: airbench94's recipe ([`models::recipes`]) driven epoch by
//! epoch with the notebook trainer's progress bars, metrics, run folder and checkpoints.
//! A checkpoint holds the weights, SGD's momentum and step count and the lookahead's
//! average, so `--resume` continues a run exactly where it stopped, even mid-epoch; at the
//! end the test set is evaluated without and with test-time augmentation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use models::checkpoint::Checkpoint;
use models::data::{DataFingerprint, ResidentLoader, Split, CLASSES};
use models::networks::Airbench94;
use models::recipes::{Airbench94Recipe, Airbench94Trainer};
use models::train::Evaluation;
use models::tta::{evaluate_tta_until, TtaLevel};
use models::Device;
use serde_json::json;

use super::run_folder::{RunFolder, METRICS_FILE};
use super::{
    ensure_training_fits, interrupt_requested, new_progress, optimizer_values, EpochMeter, Run,
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

/// What airbench94's recipe trains: the network, SGD and lookahead as one trainer.
struct Recipe {
    trainer: Airbench94Trainer,
}

impl Recipe {
    fn save(&mut self, run: &mut Run) -> anyhow::Result<()> {
        let state = self.trainer.state();
        run.save(&mut self.trainer.model, &state)
    }

    fn stop(&mut self, run: &mut Run, at: &str) -> anyhow::Result<()> {
        let state = self.trainer.state();
        run.stop(&mut self.trainer.model, &state, at)
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
        let normalization = self.trainer.recipe.loader(0).normalization;
        Ok(evaluate_tta_until(
            &mut self.trainer.model,
            test,
            &normalization,
            level,
            batch,
            device,
            CLASSES.len(),
            &interrupt_requested(label),
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
            let progress = new_progress(OPTIMIZER, train_data);
            let mut metrics = MetricsLog::open_at(&metrics_path, 0)?;
            metrics.record(json!({ "kind": "whitening", "images": images, "seconds": seconds }))?;
            (progress, metrics)
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
    let mut recipe = Recipe { trainer };
    train(
        &mut run,
        &mut recipe,
        args,
        device,
        &loader,
        &test_split,
        eval_batch,
    )
}

fn train(
    run: &mut Run,
    recipe: &mut Recipe,
    args: &TrainArgs,
    device: Device,
    loader: &ResidentLoader,
    test_split: &Split,
    eval_batch: usize,
) -> anyhow::Result<()> {
    let per_epoch = loader.batches_per_epoch() as u64;
    let last_step = recipe.trainer.last_step();
    let epochs = last_step.div_ceil(per_epoch);
    let stopping_early = if last_step < recipe.trainer.total_steps() {
        format!(
            " (stopping after {last_step} of the recipe's {})",
            recipe.trainer.total_steps()
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
    while !recipe.trainer.finished() {
        let done = recipe.trainer.steps_done();
        let epoch = done / per_epoch + 1;
        let end = per_epoch.min(last_step - (epoch - 1) * per_epoch);
        recipe.trainer.begin_epoch(epoch - 1)?;
        let plan = loader.epoch(epoch - 1);
        let epoch_images = per_epoch * run.settings.batch_size as u64;
        let mut meter = EpochMeter::of(
            &run.progress,
            end,
            epoch,
            epoch_images,
            epochs,
            args.no_progress,
        );
        for index in done % per_epoch..end {
            let outcome = recipe.trainer.step(&plan.batch(index as usize))?;
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
                return recipe.stop(run, &format!("at epoch {epoch}, step {}", index + 1));
            }
        }
        meter.bar.finish();

        let mut record = meter.epoch_record(&run.progress);
        if run.settings.eval_every_epoch && epoch < epochs && !test_split.is_empty() {
            match recipe.evaluate(
                test_split,
                TtaLevel::Plain,
                eval_batch,
                device,
                "eval:epoch",
            )? {
                Some(evaluation) => meter.add_test(&mut record, &evaluation),
                None => {
                    return recipe.stop(run, &format!("during the evaluation after epoch {epoch}"))
                }
            }
        }
        meter.close(run, record, epochs)?;
        recipe.save(run)?;
        if interrupt::requested() {
            return recipe.stop(run, &format!("after epoch {epoch}"));
        }
    }

    println!("{}", "-".repeat(20));
    if test_split.is_empty() {
        println!("test: skipped (--test-limit 0)");
    } else {
        let mut record = json!({ "kind": "test", "steps": run.progress.global_step });
        let tta = recipe.trainer.recipe.tta;
        let mut plain = None;
        for (level, key) in [(TtaLevel::Plain, "test"), (tta, "tta")] {
            let eval_started = Instant::now();
            let Some(evaluation) =
                recipe.evaluate(test_split, level, eval_batch, device, "eval:final")?
            else {
                return recipe.stop(run,
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
            if level == TtaLevel::Plain {
                plain = Some(evaluation);
            }
        }
        record["total_seconds"] = json!(started.elapsed().as_secs_f64());
        run.metrics.record(record)?;
        run.progress.finished = true;
        recipe.save(run)?;
        if let (false, Some(evaluation)) = (args.no_plots, plain) {
            // One pass per image, as `plot` redraws them.
            crate::commands::plot::after_training(
                &run.folder.path,
                &mut recipe.trainer.model,
                test_split,
                &evaluation,
            );
        }
        return Ok(());
    }
    run.progress.finished = true;
    recipe.save(run)
}
