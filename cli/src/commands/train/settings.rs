//! A run's settings: what `--resume` restores from the checkpoint and checks the command
//! line against.
//!
//! One plain struct, saved as JSON in the training state. Each field is named like the
//! `train` flag that sets it (`batch_size` is `--batch-size`), and that is the whole
//! mechanism: a resumed run takes every field from its checkpoint, and a flag given on the
//! command line must agree with the saved value unless the field is [`ADJUSTABLE`] (it
//! cannot change what is trained). A new setting joins by becoming a field — with
//! `#[serde(default)]` giving the value runs saved before it existed were trained with —
//! and a `train` flag of the same name; nothing else changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{NormalizationChoice, OptimizerChoice, TrainArgs};
use crate::precision::PrecisionChoice;

/// Everything that defines a run, as its flags set it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The network (a name in `models::networks`); runs saved before it existed are `net`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Stop after this many steps, the schedule still spanning the whole run (airbench94).
    #[serde(default)]
    pub steps: Option<u64>,
    /// Where the data was read (absolute once the run has started).
    pub data: Option<PathBuf>,
    pub limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub batch_size: usize,
    pub optimizer: OptimizerChoice,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub seed: u64,
    pub augment: bool,
    pub normalization: NormalizationChoice,
    pub eval_every_epoch: bool,
    pub log_every: u64,
    /// Runs saved before this setting existed trained in f32.
    #[serde(default)]
    pub precision: PrecisionChoice,
}

/// Settings a resumed run may change: where the same data is read from, and what is
/// printed and evaluated between epochs. Every other setting shapes the trained weights.
pub const ADJUSTABLE: [&str; 3] = ["data", "eval_every_epoch", "log_every"];

impl RunSettings {
    /// The settings the command line asks for (defaults where a flag is absent).
    pub fn from_args(args: &TrainArgs) -> RunSettings {
        let airbench = args.model == models::networks::Airbench94::NAME;
        RunSettings {
            model: args.model.clone(),
            steps: args.steps,
            data: args.data.clone(),
            limit: args.limit,
            test_limit: args.test_limit,
            // airbench94's recipe trains in batches of 1024 unless told otherwise.
            batch_size: if airbench && !args.given.contains("batch_size") {
                models::recipes::Airbench94Recipe::default().batch_size
            } else {
                args.batch_size
            },
            optimizer: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            nesterov: args.nesterov,
            weight_decay: args.weight_decay,
            seed: args.seed,
            augment: args.augment,
            normalization: if airbench {
                NormalizationChoice::Airbench
            } else {
                args.normalization
            },
            eval_every_epoch: args.eval_every_epoch,
            log_every: args.log_every,
            precision: args.precision,
        }
    }

    /// The settings of the run in `run` (`saved`, from its checkpoint), with the
    /// adjustable flags given now (`given` holds the flags on the command line) applied.
    /// A given flag that would change the run is an error naming it and both values.
    pub fn resumed(
        saved: &Value,
        requested: &RunSettings,
        given: &BTreeSet<String>,
        run: &Path,
    ) -> anyhow::Result<RunSettings> {
        let Value::Object(mut merged) = saved.clone() else {
            bail!(
                "{}: the checkpoint's settings are not a JSON object",
                run.display()
            );
        };
        let Value::Object(requested) = serde_json::to_value(requested)? else {
            bail!("run settings must serialize to a JSON object");
        };
        let mut conflicts = Vec::new();
        for (key, asked) in requested {
            if !given.contains(&key) {
                continue;
            }
            let trained = merged.get(&key).cloned().unwrap_or(Value::Null);
            if ADJUSTABLE.contains(&key.as_str()) {
                merged.insert(key, asked);
            } else if trained != asked {
                conflicts.push(format!(
                    "--{}: the run was trained with {}, this command asks for {}",
                    key.replace('_', "-"),
                    show(&trained),
                    show(&asked)
                ));
            }
        }
        if !conflicts.is_empty() {
            bail!(
                "{}; a resumed run keeps the settings of the run in {} (drop those flags, \
                 or start a new run with another --out)",
                conflicts.join("; "),
                run.display()
            );
        }
        serde_json::from_value(Value::Object(merged)).with_context(|| {
            format!(
                "{}: the checkpoint's settings are unreadable",
                run.display()
            )
        })
    }
}

fn default_model() -> String {
    models::networks::Net::NAME.to_string()
}

/// A setting's value as a user would type it.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    fn args(flags: &[&str]) -> TrainArgs {
        use clap::FromArgMatches;
        let command = TrainArgs::augment_args(Command::new("train"));
        let matches = command
            .try_get_matches_from(std::iter::once("train").chain(flags.iter().copied()))
            .unwrap();
        let mut args = TrainArgs::from_arg_matches(&matches).unwrap();
        args.given = crate::given_flags(&matches);
        args
    }

    #[test]
    fn every_setting_is_the_train_flag_of_the_same_name() {
        let command = TrainArgs::augment_args(Command::new("train"));
        let flags: Vec<String> = command
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let Value::Object(fields) =
            serde_json::to_value(RunSettings::from_args(&args(&[]))).unwrap()
        else {
            panic!("settings are an object")
        };
        for key in fields.keys() {
            assert!(flags.contains(key), "setting {key} has no train flag");
        }
        for key in ADJUSTABLE {
            assert!(fields.contains_key(key), "{key}");
        }
    }

    #[test]
    fn a_resumed_run_keeps_its_settings_and_names_a_conflicting_flag() {
        let saved = serde_json::to_value(RunSettings::from_args(&args(&[
            "--limit",
            "2000",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
        ])))
        .unwrap();
        let run = Path::new("runs/quick");

        // Flags left out come from the checkpoint, not from the defaults.
        let now = args(&["--epochs", "4"]);
        let settings =
            RunSettings::resumed(&saved, &RunSettings::from_args(&now), &now.given, run).unwrap();
        assert_eq!((settings.limit, settings.batch_size), (Some(2000), 64));
        assert_eq!(settings.lr, 0.01);

        // The same values given again are fine; adjustable ones replace the saved ones.
        let now = args(&["--lr", "1e-2", "--log-every", "7", "--data", "/elsewhere"]);
        let settings =
            RunSettings::resumed(&saved, &RunSettings::from_args(&now), &now.given, run).unwrap();
        assert_eq!(settings.log_every, 7);
        assert_eq!(settings.data, Some(PathBuf::from("/elsewhere")));

        let now = args(&["--batch-size", "32", "--optimizer", "sgd"]);
        let err = RunSettings::resumed(&saved, &RunSettings::from_args(&now), &now.given, run)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--batch-size: the run was trained with 64, this command asks for 32")
                && err.contains(
                    "--optimizer: the run was trained with adam, this command asks for sgd"
                )
                && err.contains("runs/quick"),
            "{err}"
        );
        let now = args(&["--test-limit", "5"]);
        let err = RunSettings::resumed(&saved, &RunSettings::from_args(&now), &now.given, run)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--test-limit: the run was trained with none, this command asks for 5"),
            "{err}"
        );
    }

    #[test]
    fn a_setting_missing_from_an_older_checkpoint_is_an_error_not_a_guess() {
        // A new setting without #[serde(default)] could not read older runs: this guards
        // the rule in the module documentation for the settings that exist now.
        let mut saved = serde_json::to_value(RunSettings::from_args(&args(&[]))).unwrap();
        saved.as_object_mut().unwrap().remove("seed");
        let now = args(&[]);
        let err = RunSettings::resumed(
            &saved,
            &RunSettings::from_args(&now),
            &now.given,
            Path::new("r"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("seed"), "{err:#}");
    }
}
