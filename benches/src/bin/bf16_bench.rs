//! Speed of the bf16 kernels (`kernels::bf16`), one JSON line per measurement, for
//! `scripts/bf16-bench.sh` to set beside PyTorch's (`scripts/bf16_bench.py`).
//!
//! ```text
//! bf16_bench peak                  the dot-product instructions' peak, 1 thread and all
//! bf16_bench gemm                  the GEMM at the networks' product shapes (f32 in and out)
//! bf16_bench gemm-shapes           those shapes as JSON, for the PyTorch script
//! bf16_bench layers NET BATCH [fwd] each conv / linear layer of NET (notebook, airbench):
//!                                  forward, and backward (input and weight gradients)
//!                                  unless `fwd`
//! bf16_bench list NET BATCH [fwd]  the layers as JSON, for the PyTorch script
//! ```
//!
//! Times are medians of at least 3 calls and 0.3 s after a warm-up call, on the rayon
//! threads (`RAYON_NUM_THREADS`). With `BF16_BENCH_CLOCK=cpu` they are instead the least
//! CPU time (of the whole process) any one call took: on a machine shared with other
//! work, the call least disturbed by it, and time the process spent waiting for a core
//! does not count (use it with one thread, where no thread waits for another). The
//! instruction set is the best one unless `KERNELS_BF16_ISA=avx512-bf16` caps it.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{random_vec, Kernel};
use kernels::bf16::{self, Isa, MatMut, MatRef};
use kernels::conv2d::{self, Conv2dGeometry};
use kernels::linear::{self, LinearGeometry};
use kernels::{DType, Storage};

const MIN_TIME: Duration = Duration::from_millis(300);

/// Seconds of CPU time used by every thread of this process.
fn process_cpu_time() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the address given, which points at
    // `t`, alive and writable for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(
        rc, 0,
        "CLOCK_PROCESS_CPUTIME_ID is available on every Linux"
    );
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The time of one call of `f`: the median wall time over at least 3 calls and 0.3 s, or
/// with `BF16_BENCH_CLOCK=cpu` the least process CPU time over at least 5 calls and 0.6 s,
/// after a warm-up call.
fn median_secs<R>(mut f: impl FnMut() -> R) -> f64 {
    let cpu = std::env::var("BF16_BENCH_CLOCK").is_ok_and(|c| c == "cpu");
    black_box(f());
    let mut samples = Vec::new();
    let start = Instant::now();
    let (least, time) = if cpu {
        (5, 2 * MIN_TIME)
    } else {
        (3, MIN_TIME)
    };
    while samples.len() < least || (start.elapsed() < time && samples.len() < 200) {
        let (t, c) = (Instant::now(), process_cpu_time());
        black_box(f());
        samples.push(if cpu {
            process_cpu_time() - c
        } else {
            t.elapsed().as_secs_f64()
        });
    }
    samples.sort_by(f64::total_cmp);
    if cpu {
        samples[0]
    } else {
        samples[samples.len() / 2]
    }
}

/// One layer of a network, as both benchmarks time it.
struct Layer {
    net: &'static str,
    forward_only: bool,
    name: String,
    kind: Kind,
    batch: usize,
    bias: bool,
    input_grad: bool,
}

enum Kind {
    Conv {
        c_in: usize,
        c_out: usize,
        k: usize,
        pad: usize,
        hw: usize,
    },
    Linear {
        inputs: usize,
        outputs: usize,
    },
}

impl Layer {
    fn json(&self) -> String {
        let shape = match self.kind {
            Kind::Conv {
                c_in,
                c_out,
                k,
                pad,
                hw,
            } => format!(
                r#""kind": "conv", "c_in": {c_in}, "c_out": {c_out}, "k": {k}, "pad": {pad}, "hw": {hw}"#
            ),
            Kind::Linear { inputs, outputs } => {
                format!(r#""kind": "linear", "in": {inputs}, "out": {outputs}"#)
            }
        };
        format!(
            r#""net": "{}", "name": "{}", "batch": {}, "bias": {}, "input_grad": {}, "forward_only": {}, {shape}"#,
            self.net, self.name, self.batch, self.bias, self.input_grad, self.forward_only
        )
    }
}

fn layers(net: &str, batch: usize, forward_only: bool) -> Result<Vec<Layer>, Box<dyn Error>> {
    let conv = |net, name: &str, (c_in, c_out, k, pad, hw), bias, input_grad| Layer {
        net,
        forward_only,
        name: name.to_string(),
        kind: Kind::Conv {
            c_in,
            c_out,
            k,
            pad,
            hw,
        },
        batch,
        bias,
        input_grad,
    };
    match net {
        // The layers as the network registered in `models` builds them.
        "notebook" => Ok(benches::model_cases(models::networks::Net::NAME, batch)?
            .into_iter()
            .filter_map(|case| {
                let kind = match case.kernel {
                    Kernel::Conv2d { geometry: g, .. } => Kind::Conv {
                        c_in: g.in_channels,
                        c_out: g.out_channels,
                        k: g.kernel[0],
                        pad: g.padding[0],
                        hw: g.in_h,
                    },
                    Kernel::Linear { geometry: g, .. } => Kind::Linear {
                        inputs: g.in_features,
                        outputs: g.out_features,
                    },
                    _ => return None,
                };
                let bias = match case.kernel {
                    Kernel::Conv2d { bias, .. } | Kernel::Linear { bias, .. } => bias,
                    _ => false,
                };
                Some(Layer {
                    net: "notebook",
                    forward_only,
                    name: case.name,
                    kind,
                    batch,
                    bias,
                    input_grad: case.input_needs_grad,
                })
            })
            .collect()),
        // airbench94: a frozen 2x2 whitening conv, then three groups of conv, pool, norm,
        // GELU, conv, norm, GELU (3x3, padding 1, no bias), a max pool and 256 -> 10.
        "airbench" => Ok(vec![
            conv("airbench", "whiten", (3, 24, 2, 0, 32), true, false),
            conv(
                "airbench",
                "layers.0.conv1",
                (24, 64, 3, 1, 31),
                false,
                true,
            ),
            conv(
                "airbench",
                "layers.0.conv2",
                (64, 64, 3, 1, 15),
                false,
                true,
            ),
            conv(
                "airbench",
                "layers.1.conv1",
                (64, 256, 3, 1, 15),
                false,
                true,
            ),
            conv(
                "airbench",
                "layers.1.conv2",
                (256, 256, 3, 1, 7),
                false,
                true,
            ),
            conv(
                "airbench",
                "layers.2.conv1",
                (256, 256, 3, 1, 7),
                false,
                true,
            ),
            conv(
                "airbench",
                "layers.2.conv2",
                (256, 256, 3, 1, 3),
                false,
                true,
            ),
            Layer {
                net: "airbench",
                forward_only,
                name: "head".into(),
                kind: Kind::Linear {
                    inputs: 256,
                    outputs: 10,
                },
                batch,
                bias: false,
                input_grad: true,
            },
        ]),
        other => Err(format!("unknown network {other:?} (notebook, airbench)").into()),
    }
}

/// Forward and (unless the layer is forward-only) backward seconds.
fn time_layer(layer: &Layer, seed: u64) -> Result<(f64, Option<f64>), Box<dyn Error>> {
    let b = layer.batch;
    match layer.kind {
        Kind::Conv {
            c_in,
            c_out,
            k,
            pad,
            hw,
        } => {
            let g =
                Conv2dGeometry::new(&[b, c_in, hw, hw], &[c_out, c_in, k, k], [1, 1], [pad; 2])?;
            let x = Storage::f32(random_vec(b * c_in * hw * hw, seed));
            let w = Storage::f32(random_vec(c_out * c_in * k * k, seed + 1));
            let bias = layer
                .bias
                .then(|| Storage::f32(random_vec(c_out, seed + 2)));
            let gy = Storage::f32(random_vec(g.output_shape().iter().product(), seed + 3));
            let fwd = median_secs(|| {
                conv2d::forward_bf16(&x, &w, bias.as_ref(), &g, DType::F32).unwrap()
            });
            let bwd = (!layer.forward_only).then(|| {
                median_secs(|| {
                    conv2d::backward_bf16(&x, &w, &gy, &g, layer.bias, layer.input_grad).unwrap()
                })
            });
            Ok((fwd, bwd))
        }
        Kind::Linear { inputs, outputs } => {
            let g = LinearGeometry::new(&[b, inputs], &[outputs, inputs])?;
            let x = Storage::f32(random_vec(b * inputs, seed));
            let w = Storage::f32(random_vec(outputs * inputs, seed + 1));
            let bias = layer
                .bias
                .then(|| Storage::f32(random_vec(outputs, seed + 2)));
            let gy = Storage::f32(random_vec(b * outputs, seed + 3));
            let fwd = median_secs(|| linear::forward_bf16(&x, &w, bias.as_ref(), &g).unwrap());
            let bwd = (!layer.forward_only).then(|| {
                median_secs(|| {
                    linear::backward_bf16(&x, &w, &gy, &g, layer.bias, layer.input_grad).unwrap()
                })
            });
            Ok((fwd, bwd))
        }
    }
}

/// `(label, m, n, k)`: the products of the hot layers as implicit GEMMs (C_out x pixels x
/// 9 C_in), the first linear layer, and a square one.
const GEMMS: [(&str, usize, usize, usize); 7] = [
    ("notebook layer1.1 fwd, batch 32", 64, 32 * 1024, 576),
    ("notebook layer2.1 fwd, batch 32", 128, 32 * 256, 1152),
    ("notebook layer5.0 fwd, batch 32", 512, 32 * 25, 2304),
    ("notebook layer_fc.0 fwd, batch 32", 32, 1024, 8192),
    (
        "airbench layers.1.conv2 fwd, batch 1024",
        256,
        1024 * 49,
        2304,
    ),
    (
        "airbench layers.0.conv2 fwd, batch 1024",
        64,
        1024 * 225,
        576,
    ),
    ("square 2048", 2048, 2048, 2048),
];

fn main() -> Result<(), Box<dyn Error>> {
    allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = rayon::current_num_threads();
    let isa = Isa::best()?;
    match args.first().map(String::as_str) {
        Some("peak") => {
            for isa in Isa::available() {
                let one = bf16::instruction_peak(isa, Duration::from_millis(300))?;
                let all: f64 = rayon::broadcast(|_| {
                    bf16::instruction_peak(isa, Duration::from_millis(300)).unwrap()
                })
                .into_iter()
                .sum();
                println!(
                    r#"{{"impl": "ours", "what": "peak", "isa": "{isa}", "threads": {threads}, "gflops_1": {:.1}, "gflops": {:.1}, "clock_ghz": {:.2}}}"#,
                    one / 1e9,
                    all / 1e9,
                    clock_ghz()
                );
            }
        }
        Some("gemm-shapes") => {
            for (label, m, n, k) in GEMMS {
                println!(r#"{{"label": "{label}", "m": {m}, "n": {n}, "k": {k}}}"#);
            }
        }
        Some("gemm") => {
            for (label, m, n, k) in GEMMS {
                let a = random_vec(m * k, 1);
                let b = random_vec(k * n, 2);
                let mut c = vec![0.0f32; m * n];
                let secs = median_secs(|| {
                    bf16::gemm_with(
                        isa,
                        MatRef::new(&a, m, k).unwrap(),
                        MatRef::new(&b, k, n).unwrap(),
                        MatMut::new(&mut c, m, n).unwrap(),
                        false,
                    )
                    .unwrap()
                });
                let gflops = 2.0 * (m * n * k) as f64 / secs / 1e9;
                println!(
                    r#"{{"impl": "ours", "what": "gemm", "isa": "{isa}", "threads": {threads}, "label": "{label}", "m": {m}, "n": {n}, "k": {k}, "ms": {:.3}, "gflops": {gflops:.1}}}"#,
                    secs * 1e3
                );
            }
        }
        Some(mode @ ("layers" | "list")) => {
            let net = args.get(1).ok_or("usage: bf16_bench layers NET BATCH")?;
            let batch: usize = args
                .get(2)
                .ok_or("usage: bf16_bench layers NET BATCH")?
                .parse()?;
            let forward_only = args.get(3).is_some_and(|a| a == "fwd");
            for layer in layers(net, batch, forward_only)? {
                if mode == "list" {
                    println!("{{{}}}", layer.json());
                    continue;
                }
                let (fwd, bwd) = time_layer(&layer, 3)?;
                let bwd = bwd.map_or("null".to_string(), |b| format!("{:.3}", b * 1e3));
                println!(
                    r#"{{"impl": "ours", "what": "layer", "isa": "{isa}", "threads": {threads}, {}, "fwd_ms": {:.3}, "bwd_ms": {bwd}}}"#,
                    layer.json(),
                    fwd * 1e3,
                );
            }
        }
        _ => {
            return Err("usage: bf16_bench peak | gemm | layers NET BATCH | list NET BATCH".into())
        }
    }
    Ok(())
}

/// The core clock in GHz while this thread runs (per second of its CPU time): a chain
/// of dependent 64-bit multiplications, 3 cycles each on Intel cores since Sandy Bridge.
fn clock_ghz() -> f64 {
    let n = 100_000_000u64;
    let mut x = 3u64;
    let start = bf16::thread_cpu_time();
    // SAFETY: register-only arithmetic.
    unsafe {
        std::arch::asm!(
            "2:",
            "imul {x}, {x}",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            n = inout(reg) n => _,
            options(nomem, nostack),
        );
    }
    black_box(x);
    3.0 * n as f64 / (bf16::thread_cpu_time() - start) / 1e9
}
