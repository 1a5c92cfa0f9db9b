//! Criterion benchmarks of the CPU kernels at the shapes of the notebook's network.
//!
//! Run: `cargo bench -p benches --bench kernels` (all, a few minutes on 2 cores), or filter:
//! `cargo bench -p benches --bench kernels -- conv2d_fwd/layer3`.
//!
//! Throughput units:
//! - GEMM, conv2d and linear report `Throughput::Elements(flops)`: here an "element" is one
//!   floating-point operation (2 per multiply-add, bias and padding not counted), so
//!   criterion's `elem/s` reads as FLOP/s (`Gelem/s` = GFLOP/s). Backward passes count
//!   twice the forward FLOPs (input and weight gradients), even for `layer1.0`, whose
//!   input gradient is skipped as in training: its rate is therefore overstated.
//! - Memory-bound ops (max pool, batch norm, ReLU, Adam) report `Throughput::Bytes` of their
//!   compulsory traffic: each f32 tensor the op reads or writes counted once (forward: input
//!   read + output written; backward: saved tensor + upstream gradient read, input gradient
//!   written; Adam: param, grad, m, v read, param, m, v written). Kernels that make two passes
//!   (batch norm's statistics) move more than this, so the rate is an effective bandwidth.
//!
//! Everything runs at batch 32 (the notebook's batch size) in f32.

use std::hint::black_box;
use std::time::Duration;

use benches::{
    all_convs, numel, random_labels, random_storage, random_storage_in, random_vec,
    total_parameters, BLOCKS, BN_EPS, BN_MOMENTUM, CLASSES, F32_BYTES, FC,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::{batch_norm, conv2d, cross_entropy, gemm, linear, optim, pool2d, relu, Storage};

const BATCH: usize = 32;

fn bytes(elements: usize) -> Throughput {
    Throughput::Bytes(elements as u64 * F32_BYTES)
}

fn flops(count: f64) -> Throughput {
    Throughput::Elements(count as u64)
}

/// Times one `m x n x k` product; `parallel` as the gemm wrapper takes it.
#[allow(clippy::too_many_arguments)]
fn bench_gemm(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    (m, n, k): (usize, usize, usize),
    a_transposed: bool,
    b_transposed: bool,
    parallel: bool,
) {
    let a = random_vec(m * k, 1);
    let b = random_vec(k * n, 2);
    let mut out = vec![0.0f32; m * n];
    c.throughput(flops(2.0 * (m * n * k) as f64));
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
    // single-threaded (see ConvSpec::forward_gemm_shape).
    let threads = rayon::current_num_threads();
    let mut group = c.benchmark_group("gemm_conv_fwd_1thread");
    for conv in all_convs() {
        let (m, n, k) = conv.forward_gemm_shape(BATCH, threads);
        let id = format!("{}_{m}x{n}x{k}", conv.label());
        bench_gemm(&mut group, &id, (m, n, k), false, false, false);
    }
    group.finish();

    // The three products of the 8192 -> 1024 layer, with the linear kernel's transposes.
    let (n, i, o) = (BATCH, FC[0].in_features, FC[0].out_features);
    let mut group = c.benchmark_group("gemm_fc0");
    bench_gemm(&mut group, "fwd_x_wT", (n, o, i), false, true, true);
    bench_gemm(&mut group, "dx_gy_w", (n, i, o), false, false, true);
    bench_gemm(&mut group, "dw_gyT_x", (o, i, n), true, false, true);
    group.finish();
}

fn conv_benches(c: &mut Criterion) {
    let mut fwd = c.benchmark_group("conv2d_fwd");
    for conv in all_convs() {
        let g = conv.geometry(BATCH).expect("network conv geometry");
        let x = random_storage(numel(&g.input_shape()), 1);
        let w = random_storage(numel(&g.weight_shape()), 2);
        let b = random_storage(g.out_channels, 3);
        fwd.throughput(flops(g.forward_flops()));
        fwd.bench_function(conv.label(), |bench| {
            bench.iter(|| conv2d::forward(black_box(&x), &w, Some(&b), &g).unwrap())
        });
    }
    fwd.finish();

    let mut bwd = c.benchmark_group("conv2d_bwd");
    for conv in all_convs() {
        let g = conv.geometry(BATCH).expect("network conv geometry");
        let x = random_storage(numel(&g.input_shape()), 1);
        let w = random_storage(numel(&g.weight_shape()), 2);
        let gy = random_storage(numel(&g.output_shape()), 4);
        // The images need no gradient, so training skips the first layer's input gradient.
        let need_input_grad = conv.name != "layer1.0";
        bwd.throughput(flops(2.0 * g.forward_flops()));
        bwd.bench_function(conv.label(), |bench| {
            bench.iter(|| {
                conv2d::backward(black_box(&x), &w, &gy, &g, true, need_input_grad).unwrap()
            })
        });
    }
    bwd.finish();
}

fn pool_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("max_pool2d");
    for block in &BLOCKS {
        let g = block.pool_geometry(BATCH).expect("network pool geometry");
        let (input, output) = (numel(&g.input_shape()), numel(&g.output_shape()));
        let x = random_storage(input, 1);
        let gy = random_storage(output, 2);
        group.throughput(bytes(input + output));
        group.bench_function(format!("fwd/{}", block.pool_label()), |bench| {
            bench.iter(|| pool2d::forward(black_box(&x), &g).unwrap())
        });
        group.throughput(bytes(2 * input + output));
        group.bench_function(format!("bwd/{}", block.pool_label()), |bench| {
            bench.iter(|| pool2d::backward(black_box(&x), &gy, &g).unwrap())
        });
    }
    group.finish();
}

fn batch_norm_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_norm_train");
    for block in &BLOCKS {
        let g = block
            .bn_geometry(BATCH)
            .expect("network batch norm geometry");
        let (len, ch) = (numel(&block.bn_shape(BATCH)), block.channels());
        let x = random_storage(len, 1);
        let gy = random_storage(len, 2);
        let gamma = random_storage_in(ch, 0.5, 1.5, 3);
        let beta = random_storage(ch, 4);
        let mut running_mean = Storage::f32(vec![0.0; ch]);
        let mut running_var = Storage::f32(vec![1.0; ch]);
        group.throughput(bytes(2 * len));
        group.bench_function(format!("fwd/{}", block.bn_label()), |bench| {
            bench.iter(|| {
                batch_norm::forward_train(
                    black_box(&x),
                    &gamma,
                    &beta,
                    &mut running_mean,
                    &mut running_var,
                    BN_MOMENTUM,
                    BN_EPS,
                    &g,
                )
                .unwrap()
            })
        });
        let (_, stats) = batch_norm::forward_train(
            &x,
            &gamma,
            &beta,
            &mut running_mean,
            &mut running_var,
            BN_MOMENTUM,
            BN_EPS,
            &g,
        )
        .expect("batch norm forward");
        group.throughput(bytes(3 * len));
        group.bench_function(format!("bwd/{}", block.bn_label()), |bench| {
            bench.iter(|| {
                batch_norm::backward_train(black_box(&x), &gamma, &stats, &gy, &g).unwrap()
            })
        });
    }
    group.finish();
}

fn relu_benches(c: &mut Criterion) {
    let mut shapes: Vec<(String, usize)> = BLOCKS
        .iter()
        .map(|b| (b.relu_label(), numel(&b.bn_shape(BATCH))))
        .collect();
    let fc_relus = FC.iter().enumerate().filter(|(_, l)| l.relu_dropout);
    shapes.extend(fc_relus.map(|(i, l)| {
        // The ReLU follows linear `i` of layer_fc.
        let name = format!("layer_fc.{}_{}", 3 * i + 1, l.out_features);
        (name, BATCH * l.out_features)
    }));
    let mut group = c.benchmark_group("relu");
    for (label, len) in shapes {
        let x = random_storage(len, 1);
        let y = relu::forward(&x).expect("relu forward");
        let gy = random_storage(len, 2);
        group.throughput(bytes(2 * len));
        group.bench_function(format!("fwd/{label}"), |bench| {
            bench.iter(|| relu::forward(black_box(&x)).unwrap())
        });
        group.throughput(bytes(3 * len));
        group.bench_function(format!("bwd/{label}"), |bench| {
            bench.iter(|| relu::backward(black_box(&y), &gy).unwrap())
        });
    }
    group.finish();
}

fn linear_benches(c: &mut Criterion) {
    let fc = &FC[0];
    let g = fc.geometry(BATCH).expect("network linear geometry");
    let x = random_storage(BATCH * fc.in_features, 1);
    let w = random_storage(numel(&fc.weight_shape()), 2);
    let b = random_storage(fc.out_features, 3);
    let gy = random_storage(BATCH * fc.out_features, 4);
    let mut group = c.benchmark_group("linear");
    group.throughput(flops(g.forward_flops()));
    group.bench_function(format!("fwd/{}", fc.label()), |bench| {
        bench.iter(|| linear::forward(black_box(&x), &w, Some(&b), &g).unwrap())
    });
    group.throughput(flops(2.0 * g.forward_flops()));
    group.bench_function(format!("bwd/{}", fc.label()), |bench| {
        bench.iter(|| linear::backward(black_box(&x), &w, &gy, &g, true, true).unwrap())
    });
    group.finish();

    let logits = random_storage(BATCH * CLASSES, 5);
    let labels = random_labels(BATCH, 6);
    let mut group = c.benchmark_group("cross_entropy");
    group.bench_function("fwd_bwd/32x10", |bench| {
        bench.iter(|| {
            let (loss, probs) =
                cross_entropy::forward(black_box(&logits), &labels, BATCH, CLASSES).unwrap();
            let one = Storage::f32(vec![1.0]);
            (
                loss,
                cross_entropy::backward(&probs, &labels, &one, BATCH, CLASSES).unwrap(),
            )
        })
    });
    group.finish();
}

fn adam_benches(c: &mut Criterion) {
    let len = total_parameters();
    let mut param = random_storage(len, 1);
    let grad = random_storage(len, 2);
    let mut m = Storage::f32(vec![0.0; len]);
    let mut v = Storage::f32(vec![0.0; len]);
    let cfg = optim::AdamConfig::default();
    let mut step = 0;
    let mut group = c.benchmark_group("adam");
    group.throughput(bytes(7 * len));
    group.bench_function(format!("step/{len}_params"), |bench| {
        bench.iter(|| {
            step += 1;
            optim::adam_step(&mut param, black_box(&grad), &mut m, &mut v, step, &cfg).unwrap()
        })
    });
    group.finish();
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
    targets = gemm_benches, conv_benches, pool_benches, batch_norm_benches, relu_benches,
        linear_benches, adam_benches
}
criterion_main!(kernel_benches);
