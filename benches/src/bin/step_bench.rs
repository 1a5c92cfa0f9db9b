//! Whole-step throughput of our stack, one configuration per process, as JSON.
//!
//! Run: `cargo run --release -p benches --bin step_bench -- MODE BATCH [WARMUP] [STEPS]
//! [PRECISION]` where MODE is `train` (forward, cross-entropy, backward, Adam lr 1e-3 through
//! `models::train::train_step`) or `infer` (evaluation-mode forward under `no_grad`);
//! WARMUP (default 3) untimed steps, then STEPS (default 10) timed ones; PRECISION `f32`
//! (default) or `bf16` (`autograd::autocast`, as `--precision bf16` in the cli). Threads come
//! from `RAYON_NUM_THREADS`.
//!
//! `scripts/compare-pytorch.sh` runs this beside `scripts/pytorch_cpu_bench.py`, which prints
//! the same JSON fields for PyTorch. Each configuration gets its own process so that the peak
//! resident memory (`VmHWM`, read at the end) belongs to that configuration alone.
//!
//! The inputs are random (`benches::random_batch`); the work per step does not depend on the
//! values. For inference the image tensor is built once, outside the timed loop, as the
//! PyTorch side builds its input tensor once; `train_step` converts its batch every step, as
//! the trainer does (a copy of batch x 12 KiB, small beside the step).

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use autograd::{Device, Precision};
use benches::random_batch;
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::{images_tensor, train_step};
use models::Net;

const USAGE: &str = "usage: step_bench train|infer BATCH [WARMUP] [STEPS] [f32|bf16]";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Train,
    Infer,
}

struct Args {
    mode: Mode,
    batch: usize,
    warmup: usize,
    steps: usize,
    precision: Precision,
}

fn parse_count(arg: Option<String>, what: &str, default: usize) -> Result<usize, String> {
    match arg {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e| format!("{what} must be a non-negative integer, got {s:?}: {e}\n{USAGE}")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("train") => Mode::Train,
        Some("infer") => Mode::Infer,
        Some(other) => return Err(format!("unknown mode {other:?}\n{USAGE}")),
        None => return Err(USAGE.to_string()),
    };
    let batch = parse_count(args.next(), "BATCH", 0)?;
    let warmup = parse_count(args.next(), "WARMUP", 3)?;
    let steps = parse_count(args.next(), "STEPS", 10)?;
    let precision = match args.next() {
        None => Precision::F32,
        Some(p) => p.parse().map_err(|e| format!("{e}\n{USAGE}"))?,
    };
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?}\n{USAGE}"));
    }
    // Training-mode batch norm needs two values per channel; inference runs on any batch.
    let min_batch = if mode == Mode::Train { 2 } else { 1 };
    if batch < min_batch {
        return Err(format!(
            "BATCH must be at least {min_batch} for this mode, got {batch}\n{USAGE}"
        ));
    }
    if steps == 0 {
        return Err(format!("STEPS must be at least 1\n{USAGE}"));
    }
    Ok(Args {
        mode,
        batch,
        warmup,
        steps,
        precision,
    })
}

/// Peak resident set size of this process in KiB (`VmHWM`), None off Linux.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `warmup` untimed and `steps` timed calls of `step`, returning each timed duration.
fn run(
    warmup: usize,
    steps: usize,
    mut step: impl FnMut() -> Result<(), Box<dyn Error>>,
) -> Result<Vec<Duration>, Box<dyn Error>> {
    for _ in 0..warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed());
    }
    Ok(times)
}

fn main() {
    allocator::keep_freed_memory();
    let result = parse_args().map_err(Box::<dyn Error>::from).and_then(bench);
    if let Err(e) = result {
        eprintln!("step_bench: {e}");
        std::process::exit(2);
    }
}

fn bench(args: Args) -> Result<(), Box<dyn Error>> {
    args.precision.check(Device::Cpu)?;
    let _precision = autograd::autocast(args.precision);
    let mut net = Net::new(0, Device::Cpu)?;
    let data = random_batch(args.batch, &net, 1);
    let times = match args.mode {
        Mode::Train => {
            net.set_training(true);
            // AdamConfig's default is the notebook's optimiser: lr 1e-3, betas (0.9, 0.999).
            let adam = Adam::new(net.parameters(), AdamConfig::default())?;
            let mut optimizer = Optimizer::Adam(adam);
            run(args.warmup, args.steps, || {
                black_box(train_step(&mut net, &mut optimizer, &data, Device::Cpu)?);
                Ok(())
            })?
        }
        Mode::Infer => {
            net.set_training(false);
            let images = images_tensor(&data, Device::Cpu)?;
            run(args.warmup, args.steps, || {
                let _no_grad = autograd::no_grad();
                black_box(net.forward(black_box(&images))?);
                Ok(())
            })?
        }
    };

    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2].as_secs_f64();
    let step_ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.3}", t.as_secs_f64() * 1e3))
        .collect();
    let peak = peak_rss_kib().map_or("null".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "{{\"impl\": \"ours\", \"mode\": \"{}\", \"batch\": {}, \"warmup\": {}, \"steps\": {}, \
         \"threads\": {}, \"img_per_s\": {:.2}, \"median_step_ms\": {:.3}, \"step_ms\": [{}], \
         \"peak_rss_mib\": {}, \"precision\": \"{}\"}}",
        match args.mode {
            Mode::Train => "train",
            Mode::Infer => "infer",
        },
        args.batch,
        args.warmup,
        args.steps,
        rayon::current_num_threads(),
        (args.batch * args.steps) as f64 / total,
        median * 1e3,
        step_ms.join(", "),
        peak,
        args.precision
    );
    Ok(())
}
