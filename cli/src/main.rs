//! `cli`: train the notebook's CIFAR-10 network, evaluate it, predict images, print its summary.

mod commands;
mod device;
// The models crate's fuzz helpers, so every fuzzed reader shares one mutation and runner.
#[cfg(test)]
#[path = "../../models/tests/fuzz_support/mod.rs"]
mod fuzz_support;
mod interrupt;
mod memory;
mod metrics;

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// mimalloc, set up by [`keep_freed_memory`] as the first thing `main` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A training step frees and re-allocates the same multi-megabyte activations and
/// gradients every step. Memory handed back to the OS comes back as fresh pages, one page
/// fault per 4 KiB (about 10,000 per step at batch 32, 56,000 at batch 128 with glibc's
/// malloc): keep it instead, and back large blocks with 2 MiB pages where the kernel
/// allows (fewer faults and TLB misses in the matrix products).
fn keep_freed_memory() {
    // Numbers of `mi_option_t` in mimalloc.h, the same in mimalloc 2.x and 3.x.
    const ALLOW_LARGE_OS_PAGES: i32 = 6;
    const PURGE_DELAY: i32 = 15;
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(ALLOW_LARGE_OS_PAGES, 1);
    }
}

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
    keep_freed_memory();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Train(args), Some((_, train))) = (&mut cli.command, matches.subcommand()) {
        args.given = given_flags(train);
    }
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
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
