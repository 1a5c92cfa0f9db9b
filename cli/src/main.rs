//! `cli`: train the notebook's CIFAR-10 network, evaluate it, predict images, draw pictures
//! of a run, print its summary.

mod commands;
mod device;
mod metrics;
mod plot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Top-3 classes for PNG or JPEG images.
    Predict(commands::predict::PredictArgs),
    /// Pictures of a run: training curves, confusion matrix, mistakes, first-layer filters.
    Plot(commands::plot::PlotArgs),
    /// Each layer's output shape and parameter count.
    Summary(commands::summary::SummaryArgs),
    /// Time whole training steps on a fixed random batch (images/s), to compare devices.
    BenchStep(commands::bench_step::BenchStepArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
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
        Err(error) => {
            // One clear line (with its causes), no backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
