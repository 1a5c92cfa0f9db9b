//! A run's `metrics.jsonl` read back as the points of its training curves.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

/// The metrics file `train` writes into its run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPoint {
    pub epoch: u64,
    /// Optimizer steps taken when the epoch ended.
    pub global_step: u64,
    pub train_loss: f64,
    /// Percent.
    pub train_accuracy: f64,
    /// Present where the test set was evaluated after this epoch.
    pub test_loss: Option<f64>,
    /// Percent.
    pub test_accuracy: Option<f64>,
}

/// One logged window of training steps (`--log-every`): their mean loss.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPoint {
    pub global_step: u64,
    /// Training images seen so far, where the log records it.
    pub images_seen: Option<u64>,
    pub loss: f64,
    /// The window's length in steps: the record's step within its epoch for the first one.
    pub step_in_epoch: u64,
}

/// The curves of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The run folder's name, for legends.
    pub name: String,
    /// In epoch order.
    pub epochs: Vec<EpochPoint>,
    /// In step order.
    pub steps: Vec<StepPoint>,
}

impl History {
    /// Reads `run/metrics.jsonl`. A log that restarts (a run resumed from an earlier
    /// checkpoint, or trained again into the same folder) appends records whose step
    /// counter goes back: the later records replace the earlier ones from that step on.
    pub fn read(run: &Path) -> anyhow::Result<History> {
        let path = metrics_path(run)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut history = History {
            name: run_name(run),
            epochs: Vec::new(),
            steps: Vec::new(),
        };
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Value = match serde_json::from_str(line) {
                Ok(record) => record,
                // A last line without its newline is a write cut short by a kill: skip it.
                Err(_) if index + 1 == lines.len() && !text.ends_with('\n') => {
                    eprintln!(
                        "warning: {}: ignoring the unfinished last line",
                        path.display()
                    );
                    continue;
                }
                Err(e) => bail!("{} line {}: not JSON ({e})", path.display(), index + 1),
            };
            history
                .add(&record)
                .with_context(|| format!("{} line {}", path.display(), index + 1))?;
        }
        if history.epochs.is_empty() && history.steps.is_empty() {
            bail!(
                "{} has no finished epoch and no logged step yet: nothing to plot",
                path.display()
            );
        }
        Ok(history)
    }

    fn add(&mut self, record: &Value) -> anyhow::Result<()> {
        match record["kind"].as_str() {
            Some("step") => {
                let point = StepPoint {
                    global_step: integer(record, "global_step")?,
                    images_seen: record["images_seen"].as_u64(),
                    loss: number(record, "loss")?,
                    step_in_epoch: integer(record, "step")?,
                };
                // This step again: everything from it on is being recorded anew.
                self.steps.retain(|s| s.global_step < point.global_step);
                self.epochs.retain(|e| e.global_step < point.global_step);
                self.steps.push(point);
            }
            Some("epoch") => {
                let point = EpochPoint {
                    epoch: integer(record, "epoch")?,
                    global_step: integer(record, "global_step")?,
                    train_loss: number(record, "train_loss")?,
                    train_accuracy: number(record, "train_accuracy")?,
                    test_loss: record["test_loss"].as_f64(),
                    test_accuracy: record["test_accuracy"].as_f64(),
                };
                // The epoch's own last step may be logged just before it, at the same count.
                self.steps.retain(|s| s.global_step <= point.global_step);
                self.epochs
                    .retain(|e| e.global_step < point.global_step && e.epoch < point.epoch);
                self.epochs.push(point);
            }
            // The evaluation at the end of training belongs to the last epoch.
            // airbench94's record counts steps, not epochs: it follows its last epoch.
            Some("test") => {
                let epoch = match record.get("epochs") {
                    Some(_) => integer(record, "epochs")?,
                    None => self.last_epoch(),
                };
                if let Some(point) = self.epochs.iter_mut().find(|e| e.epoch == epoch) {
                    point.test_loss = Some(number(record, "test_loss")?);
                    point.test_accuracy = Some(number(record, "test_accuracy")?);
                }
            }
            Some(_) => {} // Kinds this version does not plot.
            None => bail!("a record without a \"kind\""),
        }
        Ok(())
    }

    /// The largest epoch recorded, 0 if none.
    pub fn last_epoch(&self) -> u64 {
        self.epochs.last().map_or(0, |e| e.epoch)
    }
}

/// `run/metrics.jsonl`, after checking that `run` is a run folder.
fn metrics_path(run: &Path) -> anyhow::Result<PathBuf> {
    if !run.exists() {
        bail!("run folder {}: no such folder", run.display());
    }
    if !run.is_dir() {
        bail!(
            "{} is not a run folder (give the folder `train --out` wrote)",
            run.display()
        );
    }
    let path = run.join(METRICS_FILE);
    if !path.is_file() {
        bail!(
            "{} is not a run folder: it has no {METRICS_FILE} (train writes one)",
            run.display()
        );
    }
    Ok(path)
}

/// The folder's own name (`runs/quick` -> `quick`), or the path as given.
pub fn run_name(run: &Path) -> String {
    let absolute = std::path::absolute(run).unwrap_or_else(|_| run.to_path_buf());
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string())
}

fn number(record: &Value, key: &str) -> anyhow::Result<f64> {
    record[key]
        .as_f64()
        .filter(|v| v.is_finite())
        .with_context(|| format!("a {} record without a number \"{key}\"", kind(record)))
}

fn integer(record: &Value, key: &str) -> anyhow::Result<u64> {
    record[key]
        .as_u64()
        .with_context(|| format!("a {} record without a whole number \"{key}\"", kind(record)))
}

fn kind(record: &Value) -> &str {
    record["kind"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_log(lines: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(METRICS_FILE), lines.join("\n") + "\n").unwrap();
        dir
    }

    #[test]
    fn epochs_steps_and_the_final_test_are_read() {
        let dir = write_log(&[
            r#"{"kind":"step","epoch":1,"step":2,"global_step":2,"loss":2.0,"accuracy":10.0,"images_seen":64}"#,
            r#"{"kind":"epoch","epoch":1,"global_step":3,"train_loss":1.9,"train_accuracy":20.0,"test_loss":1.8,"test_accuracy":30.0}"#,
            r#"{"kind":"epoch","epoch":2,"global_step":6,"train_loss":1.5,"train_accuracy":40.0}"#,
            r#"{"kind":"test","epochs":2,"test_loss":1.4,"test_accuracy":50.0}"#,
        ]);
        let history = History::read(dir.path()).unwrap();
        assert_eq!(history.steps.len(), 1);
        assert_eq!(history.steps[0].images_seen, Some(64));
        assert_eq!(history.epochs.len(), 2);
        assert_eq!(history.epochs[0].test_accuracy, Some(30.0));
        assert_eq!(history.epochs[1].test_accuracy, Some(50.0));
        assert_eq!(history.epochs[1].test_loss, Some(1.4));
    }

    #[test]
    fn a_test_record_counting_steps_belongs_to_the_last_epoch() {
        let dir = write_log(&[
            r#"{"kind":"epoch","epoch":1,"global_step":48,"train_loss":1.8,"train_accuracy":49.0}"#,
            r#"{"kind":"epoch","epoch":2,"global_step":92,"train_loss":1.4,"train_accuracy":72.0}"#,
            r#"{"kind":"test","steps":92,"test_loss":0.5,"test_accuracy":90.0,"tta_accuracy":90.6}"#,
        ]);
        let history = History::read(dir.path()).unwrap();
        assert_eq!(history.epochs[0].test_accuracy, None);
        assert_eq!(history.epochs[1].test_accuracy, Some(90.0));
        assert_eq!(history.epochs[1].test_loss, Some(0.5));
    }

    #[test]
    fn a_restarted_log_replaces_what_it_records_again() {
        let dir = write_log(&[
            r#"{"kind":"step","epoch":1,"step":1,"global_step":1,"loss":2.0}"#,
            r#"{"kind":"step","epoch":1,"step":2,"global_step":2,"loss":1.95}"#,
            r#"{"kind":"epoch","epoch":1,"global_step":2,"train_loss":1.9,"train_accuracy":20.0}"#,
            r#"{"kind":"step","epoch":2,"step":1,"global_step":3,"loss":9.0}"#,
            // Interrupted during epoch 2 before its checkpoint, resumed after epoch 1.
            r#"{"kind":"step","epoch":2,"step":1,"global_step":3,"loss":1.7}"#,
            r#"{"kind":"epoch","epoch":2,"global_step":4,"train_loss":1.6,"train_accuracy":30.0}"#,
        ]);
        let history = History::read(dir.path()).unwrap();
        let losses: Vec<f64> = history.steps.iter().map(|s| s.loss).collect();
        assert_eq!(losses, vec![2.0, 1.95, 1.7]);
        assert_eq!(history.epochs.len(), 2);
        assert_eq!(history.last_epoch(), 2);
    }

    #[test]
    fn bad_logs_name_the_file_and_line() {
        let dir = write_log(&[
            r#"{"kind":"epoch","epoch":1,"global_step":2,"train_loss":1.9,"train_accuracy":20.0}"#,
            r#"{"kind":"epoch","epoch":2,"global_step":4,"train_accuracy":20.0}"#,
        ]);
        let error = format!("{:#}", History::read(dir.path()).unwrap_err());
        assert!(error.contains("metrics.jsonl line 2"), "{error}");
        assert!(error.contains("train_loss"), "{error}");

        let dir = write_log(&["not json"]);
        let error = format!("{:#}", History::read(dir.path()).unwrap_err());
        assert!(error.contains("line 1: not JSON"), "{error}");

        let dir = write_log(&[r#"{"kind":"note"}"#]);
        let error = format!("{:#}", History::read(dir.path()).unwrap_err());
        assert!(error.contains("nothing to plot"), "{error}");

        let empty = tempfile::tempdir().unwrap();
        let error = format!("{:#}", History::read(empty.path()).unwrap_err());
        assert!(error.contains("has no metrics.jsonl"), "{error}");
    }

    #[test]
    fn a_line_cut_short_at_the_end_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(METRICS_FILE),
            "{\"kind\":\"epoch\",\"epoch\":1,\"global_step\":2,\"train_loss\":1.9,\"train_accuracy\":20.0}\n{\"kind\":\"ep",
        )
        .unwrap();
        assert_eq!(History::read(dir.path()).unwrap().epochs.len(), 1);
    }
}
