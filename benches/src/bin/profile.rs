//! Where the time of one training step goes, layer by layer, measured inside real steps.
//!
//! Run: `cargo run --release -p benches --bin profile -- [--model NAME] [BATCH]`, NAME one
//! of the networks `models::networks` registers (default `net`), BATCH default 32.
//!
//! Runs real training steps — `models::train::train_step`: forward, cross-entropy,
//! backward, Adam — of the network on random data, each recorded by `autograd::profile`,
//! which times every op's forward and backward call under the layer that ran it. After
//! warm-up steps it records at least `MIN_STEPS` steps and `MIN_TIME`, then prints per
//! layer the median forward and backward time, the rate (GFLOP/s for convolutions and
//! linear layers, GB/s of compulsory traffic for memory-bound ops, as in
//! `benches/kernels.rs`, from the layer's `benches::LayerCase`) and the share of the step;
//! then the loss, the optimizer, and what the ops do not account for (the backward pass's
//! graph walk and gradient accumulation, and the rest of the step: the batch's copy,
//! graph building, work between layers); totals per kind; and a measured 4096^3 sgemm
//! ceiling on 2 threads.
//!
//! Timing the real step rather than replaying its kernels one by one matters: a replay
//! runs each kernel on operands the previous run left in the caches, and measured 10-20%
//! faster than the same kernels inside a step.

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use autograd::{autocast, profile, Device, Precision};
use benches::{build_model, random_batch, random_vec, LayerCase, Work};
use clap::Parser;
use models::layers::LayerKind;
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::train_step;

const WARMUP_STEPS: usize = 2;
const MIN_STEPS: usize = 5;
const MAX_STEPS: usize = 100;
const MIN_TIME: Duration = Duration::from_secs(2);

/// Per-layer time of real training steps.
#[derive(Parser)]
#[command(name = "profile")]
struct Args {
    /// The network, by its name in `models::networks`.
    #[arg(long, default_value = "net")]
    model: String,
    /// Images per step (at least 2: batch norm needs two values per channel).
    #[arg(default_value_t = 32, value_parser = clap::value_parser!(u64).range(2..))]
    batch: u64,
    /// Arithmetic of the convolutions and linear layers: f32, or bf16 products summed in f32
    /// (as `train --precision bf16`; needs AMX or AVX512-BF16).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
}

/// Scopes `models::train::train_step` and the optimizer open besides the layers'.
const BACKWARD_SCOPE: &str = "backward";
const OPTIMIZER_SCOPE: &str = "optimizer";

/// The times of one profiled step.
struct StepTimes {
    /// Forward and backward op time per scope (a layer's name, or `loss`).
    by_scope: HashMap<String, (Duration, Duration)>,
    /// The scopes that ran ops, in the order they first did, and the ops each ran.
    op_names: Vec<(String, Vec<&'static str>)>,
    optimizer: Duration,
    /// `backward()` beyond its ops' backward rules: graph walk, gradient accumulation.
    backward_bookkeeping: Duration,
    /// The step beyond all of the above.
    rest: Duration,
    total: Duration,
}

impl StepTimes {
    fn of(report: &profile::Profile, total: Duration) -> StepTimes {
        let mut by_scope: HashMap<String, (Duration, Duration)> = HashMap::new();
        let mut op_names: Vec<(String, Vec<&'static str>)> = Vec::new();
        for op in &report.ops {
            let slot = by_scope.entry(op.scope.clone()).or_default();
            slot.0 += op.forward;
            slot.1 += op.backward.unwrap_or_default();
            match op_names.iter_mut().find(|(scope, _)| *scope == op.scope) {
                Some((_, names)) if names.contains(&op.op) => {}
                Some((_, names)) => names.push(op.op),
                None => op_names.push((op.scope.clone(), vec![op.op])),
            }
        }
        let forward: Duration = report.ops.iter().map(|o| o.forward).sum();
        let backward: Duration = report.ops.iter().filter_map(|o| o.backward).sum();
        let backward_scope = report.scope_time(BACKWARD_SCOPE).unwrap_or_default();
        let optimizer = report.scope_time(OPTIMIZER_SCOPE).unwrap_or_default();
        StepTimes {
            by_scope,
            op_names,
            optimizer,
            backward_bookkeeping: backward_scope.saturating_sub(backward),
            rest: total.saturating_sub(forward + backward_scope + optimizer),
            total,
        }
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// A time and, where known, the work done in it.
type Timed = Option<(Duration, Option<Work>)>;

/// One line of the table.
struct Row {
    label: String,
    kind: &'static str,
    fwd: Timed,
    bwd: Timed,
}

impl Row {
    fn total(&self) -> Duration {
        self.fwd.map_or(Duration::ZERO, |f| f.0) + self.bwd.map_or(Duration::ZERO, |b| b.0)
    }
}

fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1e3
}

/// Milliseconds with about three significant digits, so microsecond ops do not read as 0.
fn fmt_ms(t: Duration) -> String {
    let v = ms(t);
    match v {
        v if v >= 100.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v if v >= 0.01 => format!("{v:.3}"),
        v => format!("{v:.4}"),
    }
}

/// The table's rows from the recorded steps: the traced layers in order, any other scope
/// that ran ops (the loss), the optimizer, and what the ops leave unaccounted.
fn rows(
    layers: &[(String, &'static str, Option<LayerCase>)],
    steps: &[StepTimes],
    optimizer_work: Work,
) -> Vec<Row> {
    let scope_median = |scope: &str, pick: fn(&(Duration, Duration)) -> Duration| {
        median(
            steps
                .iter()
                .map(|s| s.by_scope.get(scope).map(pick).unwrap_or_default())
                .collect(),
        )
    };
    let mut rows = Vec::new();
    for (index, (name, kind, case)) in layers.iter().enumerate() {
        // A module the network calls more than once (airbench94's `activ`) is one scope:
        // its row is every call together, shown once, with the work of all of them.
        if layers[..index].iter().any(|(earlier, ..)| earlier == name) {
            continue;
        }
        let calls = layers.iter().filter(|(other, ..)| other == name).count();
        let label = case
            .as_ref()
            .map_or_else(|| name.clone(), |c| c.label.clone());
        let label = if calls > 1 {
            format!("{label} (x{calls})")
        } else {
            label
        };
        rows.push(Row {
            label,
            kind,
            fwd: Some((
                scope_median(name, |t| t.0),
                case.as_ref().map(|c| c.forward_work().times(calls)),
            )),
            bwd: Some((
                scope_median(name, |t| t.1),
                case.as_ref().map(|c| c.backward_work().times(calls)),
            )),
        });
    }
    // Scopes outside the layers that ran ops, in the order the first step met them.
    let others = steps[0]
        .op_names
        .iter()
        .filter(|(scope, _)| !layers.iter().any(|(name, ..)| name == scope));
    for (scope, ops) in others {
        let ops = ops.join("+");
        let label = if scope.is_empty() {
            format!("(outside any layer: {ops})")
        } else {
            format!("{scope} ({ops})")
        };
        rows.push(Row {
            label,
            kind: if scope == "loss" { "loss" } else { "other ops" },
            fwd: Some((scope_median(scope, |t| t.0), None)),
            bwd: Some((scope_median(scope, |t| t.1), None)),
        });
    }
    let of = |pick: fn(&StepTimes) -> Duration| median(steps.iter().map(pick).collect());
    rows.push(Row {
        label: "optimizer step".to_string(),
        kind: "optimizer",
        fwd: None,
        bwd: Some((of(|s| s.optimizer), Some(optimizer_work))),
    });
    rows.push(Row {
        label: "autograd: graph walk, grad sums".to_string(),
        kind: "framework",
        fwd: None,
        bwd: Some((of(|s| s.backward_bookkeeping), None)),
    });
    rows.push(Row {
        label: "rest: batch copy, graph, glue".to_string(),
        kind: "framework",
        fwd: Some((of(|s| s.rest), None)),
        bwd: None,
    });
    rows
}

fn print_table(rows: &[Row], step: Duration) {
    println!(
        "{:<34} {:>9} {:>12} {:>9} {:>12} {:>7}",
        "layer", "fwd ms", "fwd rate", "bwd ms", "bwd rate", "% step"
    );
    let cell = |c: Timed| match c {
        Some((t, work)) => (
            fmt_ms(t),
            work.filter(|_| !t.is_zero())
                .map_or_else(String::new, |w| w.rate(t.as_secs_f64())),
        ),
        None => (String::new(), String::new()),
    };
    for r in rows {
        let (fwd_ms, fwd_rate) = cell(r.fwd);
        let (bwd_ms, bwd_rate) = cell(r.bwd);
        let share = 100.0 * r.total().as_secs_f64() / step.as_secs_f64();
        println!(
            "{:<34} {fwd_ms:>9} {fwd_rate:>12} {bwd_ms:>9} {bwd_rate:>12} {share:>6.1}%",
            r.label
        );
    }
    let sum = |pick: fn(&Row) -> Timed| -> Duration {
        rows.iter().filter_map(pick).map(|(t, _)| t).sum()
    };
    let (fwd, bwd) = (sum(|r| r.fwd), sum(|r| r.bwd));
    println!(
        "{:<34} {:>9} {:>12} {:>9} {:>12} {:>6.1}%",
        "sum of the rows",
        fmt_ms(fwd),
        "",
        fmt_ms(bwd),
        "",
        100.0 * (fwd + bwd).as_secs_f64() / step.as_secs_f64()
    );

    println!("\nby kind:");
    let mut kinds: Vec<&str> = Vec::new();
    for r in rows {
        if !kinds.contains(&r.kind) {
            kinds.push(r.kind);
        }
    }
    for kind in kinds {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.kind == kind).collect();
        let t: Duration = of_kind.iter().map(|r| r.total()).sum();
        let flops: f64 = of_kind
            .iter()
            .flat_map(|r| [r.fwd, r.bwd])
            .flatten()
            .map(|(_, w)| if let Some(Work::Flops(f)) = w { f } else { 0.0 })
            .sum();
        let rate = if flops > 0.0 {
            format!("  {:.1} GFLOP/s overall", flops / t.as_secs_f64() / 1e9)
        } else {
            String::new()
        };
        println!(
            "  {kind:<12} {:>9.3} ms {:>6.1}%{rate}",
            ms(t),
            100.0 * t.as_secs_f64() / step.as_secs_f64()
        );
    }
}

/// Median time of `f` over at least 3 calls and 0.2 s, after one untimed warm-up call.
fn time(mut f: impl FnMut()) -> Duration {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 3 || (start.elapsed() < Duration::from_millis(200) && samples.len() < 100)
    {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    median(samples)
}

/// 4096^3 single-precision product on a 2-thread pool: what the GEMM can reach here.
fn gemm_ceiling() -> Result<f64, Box<dyn Error>> {
    const N: usize = 4096;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let a = random_vec(N * N, 1);
    let b = random_vec(N * N, 2);
    let mut c = vec![0.0f32; N * N];
    let t = pool.install(|| {
        time(|| {
            kernels::gemm::gemm(N, N, N, &a, false, &b, false, &mut c, false, true);
            black_box(&c);
        })
    });
    Ok(2.0 * (N as f64).powi(3) / t.as_secs_f64() / 1e9)
}

/// The bf16 instruction set the products ran on and its dot-product instruction's peak
/// on every thread of the pool: a host whose matrix unit is slowed (shared, throttled)
/// shows here, beside the convolutions' rates above.
fn print_bf16_peak() -> Result<(), Box<dyn Error>> {
    let isa = kernels::bf16::Isa::best()?;
    let per_thread =
        rayon::broadcast(|_| kernels::bf16::instruction_peak(isa, Duration::from_millis(300)));
    let mut total = 0.0;
    for peak in per_thread {
        total += peak?;
    }
    println!(
        "bf16 products on {isa}: the instruction's peak, back to back on {} threads = {:.1} GFLOP/s",
        rayon::current_num_threads(),
        total / 1e9
    );
    Ok(())
}

/// The 1-minute load average (Linux), to tell a quiet run from one that shared its cores.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn print_load(when: &str) {
    if let Some(load) = load_average() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let note = if load > cpus as f64 {
            " (above the core count: other processes share the cores, timings are inflated and noisy)"
        } else {
            ""
        };
        println!("load average {when}: {load:.2} on {cpus} cores{note}");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    allocator::keep_freed_memory();
    let args = Args::parse();
    let batch = args.batch as usize;
    let mut model = build_model(&args.model)?;
    let parameters = model.parameters();
    let total_parameters: usize = parameters.iter().map(|(_, p)| p.numel()).sum();

    // The layers, their kinds and shapes, from the network itself.
    let trace = model.layers_at(batch)?;
    model.set_training(true);
    let mut layers = Vec::new();
    for (index, row) in trace.iter().enumerate() {
        let case = LayerCase::from_trace(row, index == 0).unwrap_or_else(|e| {
            eprintln!("profile: no rate for {e}");
            None
        });
        let kind = match (&case, &row.kind) {
            (Some(case), _) => case.kind(),
            (None, LayerKind::Flatten) => "flatten",
            (None, _) => "other",
        };
        layers.push((row.name.clone(), kind, case));
    }

    println!(
        "training step of {} ({total_parameters} parameters), batch {batch}, {}, {} rayon threads",
        args.model,
        args.precision,
        rayon::current_num_threads()
    );
    println!("(real models::train::train_step calls timed op by op with autograd::profile: median of >= {MIN_STEPS} steps and {} s after {WARMUP_STEPS} warm-up steps; rates: GF/s = GFLOP/s, GB/s = compulsory traffic)", MIN_TIME.as_secs());
    println!("(a convolution's GFLOP/s counts the direct product's multiply-adds: the padded 1x1 layers multiply only the image, and 3x3 stride-1 layers with 16-256 channels run Winograd's F(2x2,3x3), F(4x4,3x3) from 32x32 (from 15x15 at 128 images and more), so theirs can exceed the GEMM ceiling)");
    print_load("before");
    println!();

    let _precision = autocast(if args.precision == "bf16" {
        Precision::Bf16
    } else {
        Precision::F32
    });
    let mut optimizer = Optimizer::Adam(Adam::new(parameters, AdamConfig::default())?);
    let data = random_batch(batch, model.as_ref(), 1);
    for _ in 0..WARMUP_STEPS {
        train_step(model.as_mut(), &mut optimizer, &data, Device::Cpu)?;
    }
    let mut steps = Vec::new();
    let started = Instant::now();
    while steps.len() < MIN_STEPS || (started.elapsed() < MIN_TIME && steps.len() < MAX_STEPS) {
        let session = profile::start()?;
        let t = Instant::now();
        train_step(model.as_mut(), &mut optimizer, &data, Device::Cpu)?;
        let total = t.elapsed();
        steps.push(StepTimes::of(&session.finish(), total));
    }

    // Adam reads param, grad, m and v and writes param, m and v.
    let optimizer_work = Work::Elements(7 * total_parameters);
    let rows = rows(&layers, &steps, optimizer_work);
    let step = median(steps.iter().map(|s| s.total).collect());
    print_table(&rows, step);
    println!(
        "\nstep {:.1} ms = {:.1} images/s (median of {} real steps, batch {batch}; the rows' medians need not add up to it exactly)",
        ms(step),
        batch as f64 / step.as_secs_f64(),
        steps.len()
    );

    let ceiling = gemm_ceiling()?;
    println!("GEMM ceiling: 4096x4096x4096 sgemm on 2 threads = {ceiling:.1} GFLOP/s");
    if args.precision == "bf16" {
        print_bf16_peak()?;
    }
    print_load("after");
    Ok(())
}
