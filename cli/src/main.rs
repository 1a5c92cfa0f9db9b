//! `cli`: train the notebook's CIFAR-10 network, evaluate it, predict images, draw pictures
//! of a run, print its summary.

mod commands;
mod device;
// The models crate's fuzz helpers, so every fuzzed reader shares one mutation and runner.
#[cfg(test)]
#[path = "../../models/tests/fuzz_support/mod.rs"]
mod fuzz_support;
mod interrupt;
mod memory;
mod metrics;
mod plot;
mod precision;

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cli",
    version,
    about = "Train and use the course notebook's CIFAR-10 CNN, from scratch in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the network on CIFAR-10 (the notebook's recipe by default).
    Train(commands::train::TrainArgs),
    /// Test-set accuracy, per-class accuracy and the confusion matrix of a checkpoint.
    Eval(commands::eval::EvalArgs),
    /// Top-3 classes for images (PNG, JPEG, GIF, BMP or WebP, told apart by content).
    Predict(commands::predict::PredictArgs),
    /// Pictures of a run: training curves, confusion matrix, mistakes, first-layer filters.
    Plot(commands::plot::PlotArgs),
    /// Each layer's output shape and parameter count.
    Summary(commands::summary::SummaryArgs),
    /// Time whole training steps on a fixed random batch (images/s), to compare devices.
    BenchStep(commands::bench_step::BenchStepArgs),
}

/// The arguments given on the command line (not defaulted), by clap id.
fn given_flags(matches: &ArgMatches) -> BTreeSet<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Train(args), Some((_, train))) = (&mut cli.command, matches.subcommand()) {
        args.given = given_flags(train);
    }
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::BenchStep(args) => commands::bench_step::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<interrupt::Interrupted>() => {
            eprintln!("{error}");
            ExitCode::from(interrupt::EXIT_STATUS)
        }
        Err(error) => {
            // One clear line (with its causes), no backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
