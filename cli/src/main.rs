//! `cli`: train the notebook's CIFAR-10 network, evaluate it, predict images, print its summary.

mod commands;
mod device;
mod metrics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Top-3 classes for PNG or JPEG images.
    Predict(commands::predict::PredictArgs),
    /// Each layer's output shape and parameter count.
    Summary(commands::summary::SummaryArgs),
    /// Time whole training steps on a fixed random batch (images/s), to compare devices.
    BenchStep(commands::bench_step::BenchStepArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::BenchStep(args) => commands::bench_step::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One clear line (with its causes), no backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
