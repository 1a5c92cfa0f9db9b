//! Where the time of one training step goes, layer by layer.
//!
//! Run: `cargo run --release -p benches --bin profile -- [batch]` (batch defaults to 32).
//!
//! Replays one training step of the notebook's network as direct kernel calls (forward
//! through every layer, cross-entropy, backward in reverse, Adam over every parameter
//! tensor), timing each call on its own: median of at least 3 runs and 0.2 s, after one
//! warm-up run. Activations flow from layer to layer, so pooling and ReLU see realistic
//! values. Then it prints, per op, forward and backward time, the rate (GFLOP/s for
//! convolutions and linear layers, GB/s of compulsory traffic for memory-bound ops, as in
//! `benches/kernels.rs`), and the share of the summed step; then totals per kind of op, a
//! measured 4096^3 sgemm ceiling on 2 threads, and a real `models::train::train_step` for
//! comparison (the difference is autograd's own cost: graph, gradient accumulation, copies).

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use autograd::Device;
use benches::{
    numel, parameter_lengths, random_batch, random_labels, random_storage, random_vec, Rng, BLOCKS,
    BN_EPS, BN_MOMENTUM, CLASSES, DROPOUT_P, F32_BYTES, FC, IMAGE_CHANNELS, IMAGE_SIDE,
};
use kernels::{batch_norm, conv2d, cross_entropy, dropout, linear, optim, pool2d, relu, Storage};
use models::layers::Module;
use models::optim::{Adam, AdamConfig, Optimizer};

const MIN_TIME: Duration = Duration::from_millis(200);
const MIN_REPS: usize = 3;
const MAX_REPS: usize = 100;

/// Median time of `f` (after one untimed warm-up call) and its last result.
fn time<R>(mut f: impl FnMut() -> R) -> (Duration, R) {
    let mut out = f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < MIN_REPS || (start.elapsed() < MIN_TIME && samples.len() < MAX_REPS) {
        let t = Instant::now();
        let result = black_box(f());
        samples.push(t.elapsed());
        // Dropped outside the timed region.
        out = result;
    }
    samples.sort();
    (samples[samples.len() / 2], out)
}

/// What one call does, to turn its time into a rate.
#[derive(Clone, Copy)]
enum Work {
    Flops(f64),
    /// Compulsory traffic in f32 elements: each tensor read or written counted once.
    Elements(usize),
    Unmeasured,
}

impl Work {
    fn rate(self, t: Duration) -> String {
        let s = t.as_secs_f64();
        match self {
            Work::Flops(f) => format!("{:7.1} GF/s", f / s / 1e9),
            Work::Elements(n) => format!("{:7.1} GB/s", (n as u64 * F32_BYTES) as f64 / s / 1e9),
            Work::Unmeasured => String::new(),
        }
    }
}

struct Row {
    op: String,
    kind: &'static str,
    fwd: Option<(Duration, Work)>,
    bwd: Option<(Duration, Work)>,
}

impl Row {
    fn new(op: String, kind: &'static str, t: Duration, work: Work) -> Row {
        Row {
            op,
            kind,
            fwd: Some((t, work)),
            bwd: None,
        }
    }

    fn total(&self) -> Duration {
        self.fwd.map_or(Duration::ZERO, |f| f.0) + self.bwd.map_or(Duration::ZERO, |b| b.0)
    }
}

/// Uniform weights in `±1/sqrt(fan_in)` (PyTorch's default bound), so activations stay O(1).
fn weights(len: usize, fan_in: usize, seed: u64) -> Storage {
    let bound = 1.0 / (fan_in as f32).sqrt();
    Storage::f32(
        random_vec(len, seed)
            .into_iter()
            .map(|v| v * bound)
            .collect(),
    )
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

/// What the backward pass of each layer needs from the forward pass.
enum Saved {
    Conv {
        row: usize,
        g: conv2d::Conv2dGeometry,
        x: Storage,
        w: Storage,
        first: bool,
    },
    Pool {
        row: usize,
        g: pool2d::Pool2dGeometry,
        x: Storage,
    },
    BatchNorm {
        row: usize,
        g: batch_norm::BatchNormGeometry,
        x: Storage,
        gamma: Storage,
        stats: batch_norm::BatchStats,
    },
    Relu {
        row: usize,
        y: Storage,
    },
    Linear {
        row: usize,
        g: linear::LinearGeometry,
        x: Storage,
        w: Storage,
    },
    Dropout {
        row: usize,
        seed: u64,
    },
}

fn forward(
    batch: usize,
    rows: &mut Vec<Row>,
    saved: &mut Vec<Saved>,
) -> kernels::Result<(Storage, Vec<u32>)> {
    let mut seeds = Rng::new(42);
    let mut x = random_storage(batch * IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE, 1);
    for block in &BLOCKS {
        for (i, c) in block.convs.iter().enumerate() {
            let g = c.geometry(batch)?;
            let fan_in = c.in_channels * c.kernel * c.kernel;
            let w = weights(numel(&g.weight_shape()), fan_in, seeds.next_u64());
            let b = weights(c.out_channels, fan_in, seeds.next_u64());
            let (t, y) = time(|| conv2d::forward(&x, &w, Some(&b), &g));
            rows.push(Row::new(
                c.label(),
                "conv",
                t,
                Work::Flops(g.forward_flops()),
            ));
            let first = block.name == BLOCKS[0].name && i == 0;
            let row = rows.len() - 1;
            saved.push(Saved::Conv {
                row,
                g,
                x,
                w,
                first,
            });
            x = y?;
        }

        let g = block.pool_geometry(batch)?;
        let (t, y) = time(|| pool2d::forward(&x, &g));
        let work = Work::Elements(numel(&g.input_shape()) + numel(&g.output_shape()));
        rows.push(Row::new(block.pool_label(), "max_pool", t, work));
        saved.push(Saved::Pool {
            row: rows.len() - 1,
            g,
            x,
        });
        x = y?;

        let g = block.bn_geometry(batch)?;
        let ch = block.channels();
        let gamma = Storage::f32(vec![1.0; ch]);
        let beta = Storage::f32(vec![0.0; ch]);
        let (mut running_mean, mut running_var) =
            (Storage::f32(vec![0.0; ch]), Storage::f32(vec![1.0; ch]));
        let (t, out) = time(|| {
            batch_norm::forward_train(
                &x,
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                BN_MOMENTUM,
                BN_EPS,
                &g,
            )
        });
        let (y, stats) = out?;
        rows.push(Row::new(
            block.bn_label(),
            "batch_norm",
            t,
            Work::Elements(2 * x.len()),
        ));
        let row = rows.len() - 1;
        saved.push(Saved::BatchNorm {
            row,
            g,
            x,
            gamma,
            stats,
        });
        x = y;

        let (t, y) = time(|| relu::forward(&x));
        let y = y?;
        rows.push(Row::new(
            block.relu_label(),
            "relu",
            t,
            Work::Elements(2 * x.len()),
        ));
        saved.push(Saved::Relu {
            row: rows.len() - 1,
            y: y.clone(),
        });
        x = y;
    }

    // The flatten to [N, 8192] is free: NCHW is already contiguous in that order.
    for (i, l) in FC.iter().enumerate() {
        let g = l.geometry(batch)?;
        let w = weights(numel(&l.weight_shape()), l.in_features, seeds.next_u64());
        let b = weights(l.out_features, l.in_features, seeds.next_u64());
        let (t, y) = time(|| linear::forward(&x, &w, Some(&b), &g));
        rows.push(Row::new(
            l.label(),
            "linear",
            t,
            Work::Flops(g.forward_flops()),
        ));
        saved.push(Saved::Linear {
            row: rows.len() - 1,
            g,
            x,
            w,
        });
        x = y?;
        if l.relu_dropout {
            let label = |module: usize| format!("layer_fc.{}_{}", 3 * i + module, l.out_features);
            let (t, y) = time(|| relu::forward(&x));
            let y = y?;
            rows.push(Row::new(label(1), "relu", t, Work::Elements(2 * x.len())));
            saved.push(Saved::Relu {
                row: rows.len() - 1,
                y: y.clone(),
            });
            x = y;

            let seed = seeds.next_u64();
            let (t, y) = time(|| dropout::forward(&x, DROPOUT_P, seed));
            rows.push(Row::new(
                label(2),
                "dropout",
                t,
                Work::Elements(2 * x.len()),
            ));
            saved.push(Saved::Dropout {
                row: rows.len() - 1,
                seed,
            });
            x = y?;
        }
    }

    let labels = random_labels(batch, 7);
    let (t, out) = time(|| cross_entropy::forward(&x, &labels, batch, CLASSES));
    let (_, probs) = out?;
    rows.push(Row::new(
        format!("cross_entropy_{CLASSES}"),
        "loss",
        t,
        Work::Unmeasured,
    ));
    Ok((probs, labels))
}

fn backward(
    batch: usize,
    rows: &mut [Row],
    saved: Vec<Saved>,
    probs: Storage,
    labels: &[u32],
) -> kernels::Result<()> {
    let one = Storage::f32(vec![1.0]);
    let (t, gy) = time(|| cross_entropy::backward(&probs, labels, &one, batch, CLASSES));
    let loss_row = rows.len() - 1;
    rows[loss_row].bwd = Some((t, Work::Unmeasured));
    let mut gy = gy?;
    for s in saved.into_iter().rev() {
        let (row, t, work, grad) = match s {
            Saved::Conv {
                row,
                g,
                x,
                w,
                first,
            } => {
                let (t, out) = time(|| conv2d::backward(&x, &w, &gy, &g, true, !first));
                // The first layer skips its input gradient: only the weight product runs.
                let flops = if first { 1.0 } else { 2.0 } * g.forward_flops();
                let grad = out?.input.unwrap_or_else(empty);
                (row, t, Work::Flops(flops), grad)
            }
            Saved::Pool { row, g, x } => {
                let (t, out) = time(|| pool2d::backward(&x, &gy, &g));
                (row, t, Work::Elements(2 * x.len() + gy.len()), out?)
            }
            Saved::BatchNorm {
                row,
                g,
                x,
                gamma,
                stats,
            } => {
                let (t, out) = time(|| batch_norm::backward_train(&x, &gamma, &stats, &gy, &g));
                (row, t, Work::Elements(3 * x.len()), out?.input)
            }
            Saved::Relu { row, y } => {
                let (t, out) = time(|| relu::backward(&y, &gy));
                (row, t, Work::Elements(3 * y.len()), out?)
            }
            Saved::Linear { row, g, x, w } => {
                let (t, out) = time(|| linear::backward(&x, &w, &gy, &g, true, true));
                let grad = out?.input.unwrap_or_else(empty);
                (row, t, Work::Flops(2.0 * g.forward_flops()), grad)
            }
            Saved::Dropout { row, seed } => {
                let (t, out) = time(|| dropout::backward(&gy, DROPOUT_P, seed));
                (row, t, Work::Elements(2 * gy.len()), out?)
            }
        };
        rows[row].bwd = Some((t, work));
        gy = grad;
    }
    Ok(())
}

/// Stands in for the input gradient the first layer does not compute, ending the chain.
fn empty() -> Storage {
    Storage::f32(Vec::new())
}

/// One Adam step over every parameter tensor of the network, tensor by tensor as the
/// trainer runs it.
fn adam_row() -> kernels::Result<Row> {
    let lens = parameter_lengths();
    let mut state: Vec<[Storage; 4]> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            [
                random_storage(len, 100 + i as u64),
                random_storage(len, 200 + i as u64),
                Storage::f32(vec![0.0; len]),
                Storage::f32(vec![0.0; len]),
            ]
        })
        .collect();
    let cfg = optim::AdamConfig::default();
    let mut step = 0;
    let (t, out) = time(|| {
        step += 1;
        state
            .iter_mut()
            .try_for_each(|[p, g, m, v]| optim::adam_step(p, g, m, v, step, &cfg))
    });
    out?;
    let total: usize = lens.iter().sum();
    Ok(Row {
        op: format!("adam_{}_tensors_{total}", lens.len()),
        kind: "adam",
        fwd: None,
        bwd: Some((t, Work::Elements(7 * total))),
    })
}

/// 4096^3 single-precision product on a 2-thread pool: what the GEMM can reach here.
fn gemm_ceiling() -> Result<f64, Box<dyn Error>> {
    const N: usize = 4096;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let a = random_vec(N * N, 1);
    let b = random_vec(N * N, 2);
    let mut c = vec![0.0f32; N * N];
    let (t, ()) = pool.install(|| {
        time(|| kernels::gemm::gemm(N, N, N, &a, false, &b, false, &mut c, false, true))
    });
    Ok(2.0 * (N as f64).powi(3) / t.as_secs_f64() / 1e9)
}

/// The real training step through autograd and the `models` crate.
fn measured_step(batch: usize) -> Result<Duration, Box<dyn Error>> {
    let mut net = models::Net::new(0, Device::Cpu)?;
    net.set_training(true);
    let mut optimizer = Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default())?);
    let data = random_batch(batch, 1);
    let (t, out) = time(|| models::train::train_step(&mut net, &mut optimizer, &data, Device::Cpu));
    out?;
    Ok(t)
}

fn print_table(rows: &[Row], batch: usize) {
    let step: Duration = rows.iter().map(Row::total).sum();
    println!(
        "{:<24} {:>9} {:>12} {:>9} {:>12} {:>7}",
        "op", "fwd ms", "fwd rate", "bwd ms", "bwd rate", "% step"
    );
    let cell = |c: Option<(Duration, Work)>| match c {
        Some((t, w)) => (fmt_ms(t), w.rate(t)),
        None => (String::new(), String::new()),
    };
    for r in rows {
        let (fwd_ms, fwd_rate) = cell(r.fwd);
        let (bwd_ms, bwd_rate) = cell(r.bwd);
        let share = 100.0 * r.total().as_secs_f64() / step.as_secs_f64();
        println!(
            "{:<24} {fwd_ms:>9} {fwd_rate:>12} {bwd_ms:>9} {bwd_rate:>12} {share:>6.1}%",
            r.op
        );
    }

    let sum = |f: &dyn Fn(&Row) -> Option<(Duration, Work)>| -> Duration {
        rows.iter().filter_map(f).map(|(t, _)| t).sum()
    };
    let (fwd, bwd) = (sum(&|r| r.fwd), sum(&|r| r.bwd));
    println!(
        "{:<24} {:>9} {:>12} {:>9} {:>12} {:>6.1}%",
        "total (kernels only)",
        fmt_ms(fwd),
        "",
        fmt_ms(bwd),
        "",
        100.0
    );
    println!(
        "step {:.1} ms = {:.1} images/s (kernel time only, batch {batch})",
        ms(step),
        batch as f64 / step.as_secs_f64()
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
            .map(|(_, w)| if let Work::Flops(f) = w { f } else { 0.0 })
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
    let batch: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| format!("batch size must be a positive integer, got {arg:?}: {e}"))?,
        None => 32,
    };
    if batch < 2 {
        return Err("batch size must be at least 2 (batch norm needs 2 values per channel)".into());
    }
    println!(
        "training step of the notebook's network, batch {batch}, f32, {} rayon threads",
        rayon::current_num_threads()
    );
    println!("(median of >= {MIN_REPS} runs and {} ms per call; rates: GF/s = GFLOP/s, GB/s = compulsory traffic)", MIN_TIME.as_millis());
    println!("(a convolution's GFLOP/s counts the direct product's multiply-adds: the padded 1x1 layers multiply only the image, and 3x3 stride-1 layers with 16-256 channels run Winograd's F(2x2,3x3), F(4x4,3x3) from 32x32, so theirs can exceed the GEMM ceiling)");
    print_load("before");
    println!();
    let mut rows = Vec::new();
    let mut saved = Vec::new();
    let (probs, labels) = forward(batch, &mut rows, &mut saved)?;
    backward(batch, &mut rows, saved, probs, &labels)?;
    rows.push(adam_row()?);
    print_table(&rows, batch);

    let ceiling = gemm_ceiling()?;
    println!("\nGEMM ceiling: 4096x4096x4096 sgemm on 2 threads = {ceiling:.1} GFLOP/s");
    let kernels_step: Duration = rows.iter().map(Row::total).sum();
    let step = measured_step(batch)?;
    println!(
        "models::train::train_step, batch {batch}: {:.1} ms = {:.1} images/s; minus the kernel sum: {:+.1} ms ({:+.1}%, autograd and framework overhead; noise if negative)",
        ms(step),
        batch as f64 / step.as_secs_f64(),
        ms(step) - ms(kernels_step),
        100.0 * (1.0 - kernels_step.as_secs_f64() / step.as_secs_f64())
    );
    print_load("after");
    Ok(())
}
