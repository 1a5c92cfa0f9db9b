//! Criterion benchmarks of the CPU kernels at the shapes of every network the `models`
//! crate registers, generated from each network's trace (`benches::model_cases`): every
//! convolution, max pool, batch norm, ReLU, dropout and linear layer, forward and backward.
//!
//! Run: `cargo bench -p benches --bench kernels` (all, a few minutes on 2 cores per
//! network), or filter: `cargo bench -p benches --bench kernels -- conv2d_fwd/net/layer3`.
//! Ids read `<group>/<network>/<layer label>`, e.g. `conv2d_bwd/net/layer3.2_1x1_128x9x9`.
//!
//! Throughput units:
//! - GEMM, conv2d and linear report `Throughput::Elements(flops)`: here an "element" is one
//!   floating-point operation (2 per multiply-add, bias and padding not counted), so
//!   criterion's `elem/s` reads as FLOP/s (`Gelem/s` = GFLOP/s). Backward passes count
//!   the weight product plus, except for the layer reading the images (whose input
//!   gradient training skips, as here), the input product: twice the forward FLOPs.
//! - Memory-bound ops (max pool, batch norm, ReLU, dropout, Adam) report `Throughput::Bytes`
//!   of their compulsory traffic: each f32 tensor the op reads or writes counted once
//!   (forward: input read + output written; backward: saved tensor + upstream gradient read,
//!   input gradient written; Adam: param, grad, m, v read, param, m, v written). Kernels
//!   that make two passes (batch norm's statistics) move more than this, so the rate is an
//!   effective bandwidth.
//!
//! Everything runs at batch 32 (the notebook's batch size) in f32.

use std::hint::black_box;
use std::time::Duration;

use benches::{
    build_model, model_cases, numel, random_labels, random_storage, random_storage_in, random_vec,
    Kernel, LayerCase, Work, F32_BYTES,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use kernels::Storage;
use kernels::{batch_norm, conv2d, cross_entropy, dropout, gemm, linear, optim, pool2d, relu};

const BATCH: usize = 32;

fn throughput(work: Work) -> Throughput {
    match work {
        Work::Flops(count) => Throughput::Elements(count as u64),
        Work::Elements(n) => Throughput::Bytes(n as u64 * F32_BYTES),
    }
}

/// Every registered network with its layer cases at [`BATCH`].
fn networks() -> Vec<(&'static str, Vec<LayerCase>)> {
    models::networks::names()
        .into_iter()
        .map(|name| {
            let cases = model_cases(name, BATCH).unwrap_or_else(|e| panic!("{e}"));
            (name, cases)
        })
        .collect()
}

/// Times one `m x n x k` product; `parallel` as the gemm wrapper takes it.
#[allow(clippy::too_many_arguments)]
fn bench_gemm(
    c: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    (m, n, k): (usize, usize, usize),
    a_transposed: bool,
    b_transposed: bool,
    parallel: bool,
) {
    let a = random_vec(m * k, 1);
    let b = random_vec(k * n, 2);
    let mut out = vec![0.0f32; m * n];
    c.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    c.bench_function(id, |bench| {
        bench.iter(|| {
            gemm::gemm(
                m,
                n,
                k,
                black_box(&a),
                a_transposed,
                black_box(&b),
                b_transposed,
                &mut out,
                false,
                parallel,
            )
        })
    });
}

fn gemm_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_square");
    for size in [256, 512, 1024] {
        bench_gemm(
            &mut group,
            &size.to_string(),
            (size, size, size),
            false,
            false,
            true,
        );
    }
    group.finish();

    // The forward products the convolutions issue at batch 32: one per thread, each
    // single-threaded (see LayerCase::forward_gemm_shape).
    let threads = rayon::current_num_threads();
    let networks = networks();
    let mut group = c.benchmark_group("gemm_conv_fwd_1thread");
    for (network, cases) in &networks {
        for case in cases {
            if let Some((m, n, k)) = case.forward_gemm_shape(threads) {
                let id = format!("{network}/{}_{m}x{n}x{k}", case.label);
                bench_gemm(&mut group, &id, (m, n, k), false, false, false);
            }
        }
    }
    group.finish();

    // The three products of each network's widest linear layer, with the linear kernel's
    // transposes.
    let mut group = c.benchmark_group("gemm_linear");
    for (network, cases) in &networks {
        let widest = cases
            .iter()
            .filter_map(|case| match case.kernel {
                Kernel::Linear { geometry, .. } => Some((case, geometry)),
                _ => None,
            })
            .max_by_key(|(_, g)| g.in_features * g.out_features);
        if let Some((case, g)) = widest {
            let (n, i, o) = (g.batch, g.in_features, g.out_features);
            let id = |product: &str| format!("{network}/{}/{product}", case.label);
            bench_gemm(&mut group, &id("fwd_x_wT"), (n, o, i), false, true, true);
            bench_gemm(&mut group, &id("dx_gy_w"), (n, i, o), false, false, true);
            bench_gemm(&mut group, &id("dw_gyT_x"), (o, i, n), true, false, true);
        }
    }
    group.finish();
}

/// Benches the forward and backward calls of every layer of every network, one criterion
/// group per kernel and direction.
fn layer_benches(c: &mut Criterion) {
    for (network, cases) in networks() {
        for case in &cases {
            bench_layer(c, network, case);
        }
    }
}

fn bench_layer(c: &mut Criterion, network: &str, case: &LayerCase) {
    let id = format!("{network}/{}", case.label);
    let fwd_work = throughput(case.forward_work());
    let bwd_work = throughput(case.backward_work());
    let mut pair = |group: &str, forward: &mut dyn FnMut(), backward: &mut dyn FnMut()| {
        let mut fwd = c.benchmark_group(format!("{group}_fwd"));
        fwd.throughput(fwd_work.clone());
        fwd.bench_function(&id, |bench| bench.iter(&mut *forward));
        fwd.finish();
        let mut bwd = c.benchmark_group(format!("{group}_bwd"));
        bwd.throughput(bwd_work.clone());
        bwd.bench_function(&id, |bench| bench.iter(&mut *backward));
        bwd.finish();
    };
    match case.kernel {
        Kernel::Conv2d { geometry: g, bias } => {
            let x = random_storage(numel(&g.input_shape()), 1);
            let w = random_storage(numel(&g.weight_shape()), 2);
            let b = random_storage(g.out_channels, 3);
            let gy = random_storage(numel(&g.output_shape()), 4);
            let b = bias.then_some(&b);
            pair(
                "conv2d",
                &mut || {
                    black_box(conv2d::forward(black_box(&x), &w, b, &g).unwrap());
                },
                &mut || {
                    let grads =
                        conv2d::backward(black_box(&x), &w, &gy, &g, bias, case.input_needs_grad);
                    black_box(grads.unwrap());
                },
            );
        }
        Kernel::MaxPool2d(g) => {
            let x = random_storage(numel(&g.input_shape()), 1);
            let gy = random_storage(numel(&g.output_shape()), 2);
            pair(
                "max_pool2d",
                &mut || {
                    black_box(pool2d::forward(black_box(&x), &g).unwrap());
                },
                &mut || {
                    black_box(pool2d::backward(black_box(&x), &gy, &g).unwrap());
                },
            );
        }
        Kernel::BatchNorm2d {
            geometry: g,
            eps,
            momentum,
        } => {
            let (len, ch) = (g.batch * g.channels * g.spatial, g.channels);
            let x = random_storage(len, 1);
            let gy = random_storage(len, 2);
            let gamma = random_storage_in(ch, 0.5, 1.5, 3);
            let beta = random_storage(ch, 4);
            let mut running_mean = Storage::f32(vec![0.0; ch]);
            let mut running_var = Storage::f32(vec![1.0; ch]);
            let forward = |mean: &mut Storage, var: &mut Storage| {
                batch_norm::forward_train(&x, &gamma, &beta, mean, var, momentum, eps, &g)
                    .expect("batch norm forward")
            };
            let (_, stats) = forward(&mut running_mean, &mut running_var);
            pair(
                "batch_norm_train",
                &mut || {
                    black_box(forward(&mut running_mean, &mut running_var));
                },
                &mut || {
                    let grads = batch_norm::backward_train(black_box(&x), &gamma, &stats, &gy, &g);
                    black_box(grads.unwrap());
                },
            );
        }
        Kernel::Relu { len } => {
            let x = random_storage(len, 1);
            let gy = random_storage(len, 2);
            pair(
                "relu",
                &mut || {
                    black_box(relu::forward(black_box(&x)).unwrap());
                },
                &mut || {
                    black_box(relu::backward(black_box(&x), &gy).unwrap());
                },
            );
        }
        Kernel::Dropout { len, p } => {
            let x = random_storage(len, 1);
            let gy = random_storage(len, 2);
            pair(
                "dropout",
                &mut || {
                    black_box(dropout::forward(black_box(&x), p, 7).unwrap());
                },
                &mut || {
                    black_box(dropout::backward(black_box(&gy), p, 7).unwrap());
                },
            );
        }
        Kernel::Linear { geometry: g, bias } => {
            let x = random_storage(g.batch * g.in_features, 1);
            let w = random_storage(g.out_features * g.in_features, 2);
            let b = random_storage(g.out_features, 3);
            let gy = random_storage(g.batch * g.out_features, 4);
            let b = bias.then_some(&b);
            pair(
                "linear",
                &mut || {
                    black_box(linear::forward(black_box(&x), &w, b, &g).unwrap());
                },
                &mut || {
                    let grads =
                        linear::backward(black_box(&x), &w, &gy, &g, bias, case.input_needs_grad);
                    black_box(grads.unwrap());
                },
            );
        }
    }
}

fn loss_and_optimizer_benches(c: &mut Criterion) {
    for name in models::networks::names() {
        let mut model = build_model(name).unwrap_or_else(|e| panic!("{e}"));

        let classes = model.num_classes();
        let logits = random_storage(BATCH * classes, 5);
        let labels = random_labels(BATCH, classes, 6);
        let mut group = c.benchmark_group("cross_entropy");
        group.bench_function(format!("{name}/fwd_bwd/{BATCH}x{classes}"), |bench| {
            bench.iter(|| {
                let (loss, probs) =
                    cross_entropy::forward(black_box(&logits), &labels, BATCH, classes).unwrap();
                let one = Storage::f32(vec![1.0]);
                (
                    loss,
                    cross_entropy::backward(&probs, &labels, &one, BATCH, classes).unwrap(),
                )
            })
        });
        group.finish();

        // One update over all of the network's parameters as one buffer (the trainer runs
        // it tensor by tensor; the profile times that).
        let len = model.num_parameters();
        let mut param = random_storage(len, 1);
        let grad = random_storage(len, 2);
        let mut m = Storage::f32(vec![0.0; len]);
        let mut v = Storage::f32(vec![0.0; len]);
        let cfg = optim::AdamConfig::default();
        let mut step = 0;
        let mut group = c.benchmark_group("adam");
        group.throughput(Throughput::Bytes(7 * len as u64 * F32_BYTES));
        group.bench_function(format!("{name}/step/{len}_params"), |bench| {
            bench.iter(|| {
                step += 1;
                optim::adam_step(&mut param, black_box(&grad), &mut m, &mut v, step, &cfg).unwrap()
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = kernel_benches;
    config = config();
    targets = gemm_benches, layer_benches, loss_and_optimizer_benches
}
criterion_main!(kernel_benches);
