//! Every op, forward and backward, on random shapes: the CUDA kernels against the CPU
//! kernels, and the CPU's f32 path against its f64 path (which shows the tolerance means
//! something: it is what f32 itself achieves).
//!
//! [`parity!`] makes two tests per op, `ops::<op>::cpu_f32_matches_f64` and
//! `ops::<op>::cuda_matches_cpu_or_skips`. The CUDA one runs where a device opens (with TF32
//! off, so cuBLAS computes in plain f32) and otherwise prints
//! `SKIPPED: no CUDA device (<reason>)` and returns: Rust has no "skipped" outcome, so
//! read the output (`cargo test -- --nocapture`) to see which ran. With
//! `REQUIRE_CUDA=1` (as `scripts/gpu-check.sh` sets on the GPU machine) a missing device
//! is a failure instead.
//!
//! Outputs are compared norm-wise: `|gpu - cpu| / |cpu| < 1e-5` over each output buffer,
//! the usual measure for results that sum many products in a different order.

use kernels::batch_norm::{self, BatchNormGeometry};
use kernels::conv2d::{self, Conv2dGeometry};
use kernels::linear::{self, LinearGeometry};
use kernels::matmul::{self, MatmulGeometry};
use kernels::optim::{self, AdamConfig, SgdConfig};
use kernels::pool2d::{self, Pool2dGeometry, PoolKind};
use kernels::{
    cross_entropy, cuda, dropout, elementwise, log_softmax, reduce, relu, DType, Device, Error,
    Result, Storage,
};

/// Largest norm-wise relative difference accepted between two f32 results.
const TOLERANCE: f64 = 1e-5;

/// Random cases per op, unless `$CUDA_PARITY_CASES` says how many (`scripts/gpu-check.sh`
/// runs one under compute-sanitizer, where every launch is many times slower).
const CASES: u64 = 4;

fn cases() -> u64 {
    std::env::var("CUDA_PARITY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// f32-representable values uniform in `[-1, 1)`, so both dtypes start from the
    /// same numbers.
    fn values(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| ((self.next_u64() >> 40) as f32 / (1u32 << 23) as f32 - 1.0) as f64)
            .collect()
    }

    fn chance(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// Where one run of a case computes.
#[derive(Clone, Copy, Debug)]
struct On {
    device: Device,
    dtype: DType,
}

impl On {
    fn put(&self, values: &[f64]) -> Storage {
        Storage::f64(values.to_vec())
            .to_dtype(self.dtype)
            .and_then(|host| host.to_device(self.device))
            .expect("upload")
    }
}

/// The named host copies of everything a case computed.
type Outputs = Vec<(String, Vec<f64>)>;

fn out(outputs: &mut Outputs, name: impl Into<String>, s: &Storage) -> Result<()> {
    outputs.push((name.into(), s.to_vec_f64()?));
    Ok(())
}

/// `|a - b| / |b|` (0 when both are all zeros).
fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    if norm == 0.0 {
        if diff == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (diff / norm).sqrt()
    }
}

type Case = fn(&mut Rng, On) -> Result<Outputs>;

/// Runs `case` with the same random inputs on `test` and `reference` and compares.
fn compare(op: &str, case: Case, test: On, reference: On) {
    for seed in 0..cases() {
        let run = |on: On| {
            case(&mut Rng(seed * 7919 + 1), on)
                .unwrap_or_else(|e| panic!("{op} case {seed} on {on:?}: {e}"))
        };
        let (got, want) = (run(test), run(reference));
        assert_eq!(got.len(), want.len());
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{op} case {seed}: {name} length");
            let rel = relative_difference(g, w);
            assert!(
                rel < TOLERANCE,
                "{op} case {seed}: {name} on {test:?} differs from {reference:?} by {rel:e} \
                 (norm-wise relative); first values {:?} vs {:?}",
                &g[..g.len().min(4)],
                &w[..w.len().min(4)]
            );
        }
    }
}

/// Device 0 with TF32 off, or why there is none (printed as a skip). With
/// `REQUIRE_CUDA=1` a missing device fails the test instead.
fn cuda_or_skip(test: &str) -> Option<Device> {
    cuda::open_or_skip(test).map(|gpu| Device::Cuda(gpu.ordinal()))
}

fn check_cpu(op: &str, case: Case) {
    let on = |dtype| On {
        device: Device::Cpu,
        dtype,
    };
    compare(op, case, on(DType::F32), on(DType::F64));
}

fn check_cuda(op: &str, case: Case) {
    let Some(device) = cuda_or_skip(&format!("{op}::cuda_matches_cpu_or_skips")) else {
        return;
    };
    let f32_on = |device| On {
        device,
        dtype: DType::F32,
    };
    compare(op, case, f32_on(device), f32_on(Device::Cpu));
}

/// For each case function, a module `ops::<case>` with the CPU and the CUDA test.
macro_rules! parity {
    ($($op:ident),* $(,)?) => {
        mod ops {
            $(
                mod $op {
                    #[test]
                    fn cpu_f32_matches_f64() {
                        crate::check_cpu(stringify!($op), crate::$op);
                    }

                    #[test]
                    fn cuda_matches_cpu_or_skips() {
                        crate::check_cuda(stringify!($op), crate::$op);
                    }
                }
            )*
        }
    };
}

parity!(
    relu,
    gelu,
    elementwise,
    reduce,
    dropout,
    log_softmax,
    cross_entropy,
    max_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    linear,
    matmul,
    sgd,
    adam,
);

fn relu(rng: &mut Rng, on: On) -> Result<Outputs> {
    let n = rng.range(1, 5000);
    let x = on.put(&rng.values(n));
    let y = relu::forward(&x)?;
    let gx = relu::backward(&x, &on.put(&rng.values(n)))?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &y)?;
    out(&mut o, "backward", &gx)?;
    Ok(o)
}

fn gelu(rng: &mut Rng, on: On) -> Result<Outputs> {
    let n = rng.range(1, 5000);
    let x: Vec<f64> = rng.values(n).iter().map(|v| v * 12.0).collect();
    let x = on.put(&x);
    let y = kernels::gelu::forward(&x)?;
    let gx = kernels::gelu::backward(&x, &on.put(&rng.values(n)))?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &y)?;
    out(&mut o, "backward", &gx)?;
    Ok(o)
}

fn elementwise(rng: &mut Rng, on: On) -> Result<Outputs> {
    let n = rng.range(1, 5000);
    let (a, b) = (on.put(&rng.values(n)), on.put(&rng.values(n)));
    let factor = rng.values(1)[0] * 3.0;
    let mut o = Outputs::new();
    out(&mut o, "add", &elementwise::add(&a, &b)?)?;
    out(&mut o, "mul", &elementwise::mul(&a, &b)?)?;
    out(&mut o, "scale", &elementwise::scale(&a, factor)?)?;
    // In place on a clone: the original must keep its values.
    let mut acc = a.clone();
    elementwise::add_assign(&mut acc, &b)?;
    out(&mut o, "add_assign", &acc)?;
    out(&mut o, "add_assign leaves the clone's source alone", &a)?;
    Ok(o)
}

fn reduce(rng: &mut Rng, on: On) -> Result<Outputs> {
    let n = rng.range(1, 200_000);
    // An offset, so the sum is not a cancellation of positive and negative halves.
    let values: Vec<f64> = rng.values(n).iter().map(|v| v + 0.5).collect();
    let total = reduce::sum(&on.put(&values))?;
    let len = rng.range(1, 3000);
    let spread = reduce::broadcast_scalar(&total, len, 1.0 / n as f64)?;
    let mut o = Outputs::new();
    out(&mut o, "sum", &total)?;
    out(&mut o, "broadcast_scalar", &spread)?;
    Ok(o)
}

fn dropout(rng: &mut Rng, on: On) -> Result<Outputs> {
    let n = rng.range(1, 20_000);
    let p = [0.0, 0.1, 0.5, 0.9][rng.range(0, 3)];
    let seed = rng.next_u64();
    let y = dropout::forward(&on.put(&rng.values(n)), p, seed)?;
    let gx = dropout::backward(&on.put(&rng.values(n)), p, seed)?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &y)?;
    out(&mut o, "backward", &gx)?;
    Ok(o)
}

fn log_softmax(rng: &mut Rng, on: On) -> Result<Outputs> {
    let (rows, cols) = (rng.range(1, 70), rng.range(1, 120));
    let x: Vec<f64> = rng.values(rows * cols).iter().map(|v| v * 8.0).collect();
    let y = log_softmax::forward(&on.put(&x), rows, cols)?;
    let gx = log_softmax::backward(&y, &on.put(&rng.values(rows * cols)), rows, cols)?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &y)?;
    out(&mut o, "backward", &gx)?;
    Ok(o)
}

fn cross_entropy(rng: &mut Rng, on: On) -> Result<Outputs> {
    let (rows, cols) = (rng.range(1, 130), rng.range(2, 40));
    let x: Vec<f64> = rng.values(rows * cols).iter().map(|v| v * 6.0).collect();
    let labels: Vec<u32> = (0..rows).map(|_| rng.range(0, cols - 1) as u32).collect();
    // Half the cases as airbench94's loss: label smoothing 0.2, summed over the rows.
    let loss_options = if rng.chance() {
        cross_entropy::CrossEntropy {
            label_smoothing: 0.2,
            reduction: cross_entropy::Reduction::Sum,
        }
    } else {
        cross_entropy::CrossEntropy::default()
    };
    let (loss, probs) =
        cross_entropy::forward_with(&on.put(&x), &labels, rows, cols, loss_options)?;
    let grad_loss = on.put(&[1.0 + rng.values(1)[0]]);
    let gx = cross_entropy::backward_with(&probs, &labels, &grad_loss, rows, cols, loss_options)?;
    let mut o = Outputs::new();
    out(&mut o, "loss", &loss)?;
    out(&mut o, "probs", &probs)?;
    out(&mut o, "backward", &gx)?;
    Ok(o)
}

/// A random valid pooling geometry of `kind`.
fn pool_geometry(rng: &mut Rng, kind: PoolKind) -> Pool2dGeometry {
    loop {
        let shape = [
            rng.range(1, 3),
            rng.range(1, 5),
            rng.range(1, 13),
            rng.range(1, 13),
        ];
        let kernel = [rng.range(1, 4), rng.range(1, 4)];
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let padding = [rng.range(0, kernel[0] / 2), rng.range(0, kernel[1] / 2)];
        if let Ok(g) = Pool2dGeometry::new(kind, &shape, kernel, stride, padding) {
            return g;
        }
    }
}

fn pool(rng: &mut Rng, on: On, kind: PoolKind) -> Result<Outputs> {
    let g = pool_geometry(rng, kind);
    let x = on.put(&rng.values(g.input_shape().iter().product()));
    let y = pool2d::forward(&x, &g)?;
    let gy = on.put(&rng.values(g.output_shape().iter().product()));
    let gx = pool2d::backward(&x, &gy, &g)?;
    let mut o = Outputs::new();
    out(&mut o, format!("forward {g:?}"), &y)?;
    out(&mut o, format!("backward {g:?}"), &gx)?;
    Ok(o)
}

fn max_pool2d(rng: &mut Rng, on: On) -> Result<Outputs> {
    pool(rng, on, PoolKind::Max)
}

fn avg_pool2d(rng: &mut Rng, on: On) -> Result<Outputs> {
    let count_include_pad = rng.chance();
    pool(rng, on, PoolKind::Avg { count_include_pad })
}

fn batch_norm(rng: &mut Rng, on: On) -> Result<Outputs> {
    let (n, c) = (rng.range(2, 6), rng.range(1, 7));
    let shape = if rng.chance() {
        vec![n * 4, c]
    } else {
        vec![n, c, rng.range(2, 6), rng.range(2, 6)]
    };
    let g = BatchNormGeometry::new(&shape, c)?;
    let len: usize = shape.iter().product();
    // An offset mean and a spread of scales, as activations have.
    let x: Vec<f64> = rng.values(len).iter().map(|v| 2.0 + 3.0 * v).collect();
    let x = on.put(&x);
    let gamma = on.put(&rng.values(c));
    let beta = on.put(&rng.values(c));
    let mut running_mean = on.put(&rng.values(c));
    let var: Vec<f64> = rng.values(c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let mut running_var = on.put(&var);
    let gy = on.put(&rng.values(len));
    let (eval_mean, eval_var) = (running_mean.clone(), running_var.clone());
    let (y, stats) = batch_norm::forward_train(
        &x,
        &gamma,
        &beta,
        &mut running_mean,
        &mut running_var,
        0.1,
        1e-5,
        &g,
    )?;
    let grads = batch_norm::backward_train(&x, &gamma, &stats, &gy, &g)?;
    let y_eval = batch_norm::forward_eval(&x, &gamma, &beta, &eval_mean, &eval_var, 1e-5, &g)?;
    let eval = batch_norm::backward_eval(&x, &gamma, &eval_mean, &eval_var, 1e-5, &gy, &g)?;
    let mut o = Outputs::new();
    for (name, s) in [
        ("train forward", &y),
        ("running_mean", &running_mean),
        ("running_var", &running_var),
        ("running_mean's clone is unchanged", &eval_mean),
        ("stats.mean", &stats.mean),
        ("stats.inv_std", &stats.inv_std),
        ("train grad input", &grads.input),
        ("train grad gamma", &grads.gamma),
        ("train grad beta", &grads.beta),
        ("eval forward", &y_eval),
        ("eval grad input", &eval.input),
        ("eval grad gamma", &eval.gamma),
        ("eval grad beta", &eval.beta),
    ] {
        out(&mut o, name, s)?;
    }
    Ok(o)
}

fn conv2d(rng: &mut Rng, on: On) -> Result<Outputs> {
    let g = loop {
        let cin = rng.range(1, 5);
        let input = [rng.range(1, 4), cin, rng.range(3, 12), rng.range(3, 12)];
        let weight = [rng.range(1, 6), cin, rng.range(1, 4), rng.range(1, 4)];
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let padding = [rng.range(0, 2), rng.range(0, 2)];
        if let Ok(g) = Conv2dGeometry::new(&input, &weight, stride, padding) {
            break g;
        }
    };
    let numel = |s: [usize; 4]| s.iter().product::<usize>();
    let x = on.put(&rng.values(numel(g.input_shape())));
    let w = on.put(&rng.values(numel(g.weight_shape())));
    let bias = rng.chance().then(|| on.put(&rng.values(g.out_channels)));
    let need_input_grad = rng.range(0, 3) > 0;
    let y = conv2d::forward(&x, &w, bias.as_ref(), &g)?;
    let gy = on.put(&rng.values(numel(g.output_shape())));
    let grads = conv2d::backward(&x, &w, &gy, &g, bias.is_some(), need_input_grad)?;
    assert_eq!(grads.input.is_some(), need_input_grad);
    assert_eq!(grads.bias.is_some(), bias.is_some());
    let mut o = Outputs::new();
    out(&mut o, format!("forward {g:?}"), &y)?;
    out(&mut o, "grad weight", &grads.weight)?;
    if let Some(gx) = &grads.input {
        out(&mut o, "grad input", gx)?;
    }
    if let Some(gb) = &grads.bias {
        out(&mut o, "grad bias", gb)?;
    }
    // The bias gradient alone, what the backward of a frozen layer on data computes.
    out(&mut o, "grad bias alone", &conv2d::bias_grad(&gy, &g)?)?;
    Ok(o)
}

fn linear(rng: &mut Rng, on: On) -> Result<Outputs> {
    let (n, i, o_) = (rng.range(1, 40), rng.range(1, 300), rng.range(1, 60));
    let g = LinearGeometry::new(&[n, i], &[o_, i])?;
    let x = on.put(&rng.values(n * i));
    let w = on.put(&rng.values(o_ * i));
    let bias = rng.chance().then(|| on.put(&rng.values(o_)));
    let y = linear::forward(&x, &w, bias.as_ref(), &g)?;
    let gy = on.put(&rng.values(n * o_));
    let grads = linear::backward(&x, &w, &gy, &g, bias.is_some(), true)?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &y)?;
    out(&mut o, "grad weight", &grads.weight)?;
    out(
        &mut o,
        "grad input",
        grads.input.as_ref().expect("asked for"),
    )?;
    if let Some(gb) = &grads.bias {
        out(&mut o, "grad bias", gb)?;
    }
    Ok(o)
}

fn matmul(rng: &mut Rng, on: On) -> Result<Outputs> {
    let (m, k, n) = (rng.range(1, 50), rng.range(1, 50), rng.range(1, 50));
    let g = MatmulGeometry::new(&[m, k], &[k, n])?;
    let a = on.put(&rng.values(m * k));
    let b = on.put(&rng.values(k * n));
    let c = matmul::forward(&a, &b, &g)?;
    let (ga, gb) = matmul::backward(&a, &b, &on.put(&rng.values(m * n)), &g)?;
    let mut o = Outputs::new();
    out(&mut o, "forward", &c)?;
    out(&mut o, "grad a", &ga)?;
    out(&mut o, "grad b", &gb)?;
    Ok(o)
}

fn sgd(rng: &mut Rng, on: On) -> Result<Outputs> {
    let len = rng.range(1, 5000);
    let momentum = [0.0, 0.9][rng.range(0, 1)];
    let cfg = SgdConfig {
        lr: 0.05,
        momentum,
        dampening: if momentum > 0.0 && rng.chance() {
            0.1
        } else {
            0.0
        },
        weight_decay: [0.0, 1e-2][rng.range(0, 1)],
        nesterov: false,
    };
    let cfg = SgdConfig {
        nesterov: cfg.momentum > 0.0 && cfg.dampening == 0.0 && rng.chance(),
        ..cfg
    };
    let mut param = on.put(&rng.values(len));
    let mut buffer = None;
    for _ in 0..3 {
        optim::sgd_step(&mut param, &on.put(&rng.values(len)), &mut buffer, &cfg)?;
    }
    let mut o = Outputs::new();
    out(&mut o, format!("param {cfg:?}"), &param)?;
    if let Some(buffer) = &buffer {
        out(&mut o, "momentum buffer", buffer)?;
    }
    Ok(o)
}

fn adam(rng: &mut Rng, on: On) -> Result<Outputs> {
    let len = rng.range(1, 5000);
    let cfg = AdamConfig {
        weight_decay: [0.0, 1e-2][rng.range(0, 1)],
        ..AdamConfig::default()
    };
    let mut param = on.put(&rng.values(len));
    let (mut m, mut v) = (on.put(&vec![0.0; len]), on.put(&vec![0.0; len]));
    for step in 1..=3 {
        optim::adam_step(
            &mut param,
            &on.put(&rng.values(len)),
            &mut m,
            &mut v,
            step,
            &cfg,
        )?;
    }
    let mut o = Outputs::new();
    out(&mut o, format!("param {cfg:?}"), &param)?;
    out(&mut o, "exp_avg", &m)?;
    out(&mut o, "exp_avg_sq", &v)?;
    Ok(o)
}

// What needs no device: asking for CUDA where there is none, or for f64 on CUDA, is an
// error that says so, never a panic.

#[test]
fn f64_on_cuda_is_refused_naming_the_op() {
    let err = Storage::from_host(vec![1.0f64], Device::Cuda(0)).unwrap_err();
    assert_eq!(
        err,
        Error::Unsupported {
            op: "to_device",
            dtype: DType::F64,
            device: Device::Cuda(0)
        }
    );
    assert!(
        err.to_string().starts_with(
            "to_device: f64 tensors are not supported on cuda:0 (the CUDA kernels compute in f32"
        ),
        "{err}"
    );
    let err = Storage::zeros(3, DType::F64, Device::Cuda(0)).unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { op: "full", .. }),
        "{err}"
    );
}

#[test]
fn bf16_is_stored_and_converted_but_refused_by_ops_naming_op_dtype_and_device() {
    let x = Storage::f32(vec![1.0, -2.5, 3.0e-3])
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!(x.dtype(), DType::BF16);
    // 3e-3 has no exact bf16: the nearest is 0.0030059814453125 (0x3B45).
    assert_eq!(x.to_vec_f64().unwrap(), vec![1.0, -2.5, 0.0030059814453125]);
    // Average pooling has no bf16 kernel (the layers between convolutions that do, under
    // autocast, are tested in their own modules).
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    let g = Pool2dGeometry::new(avg, &[1, 1, 1, 3], [1, 1], [1, 1], [0, 0]).unwrap();
    let err = pool2d::forward(&x, &g).unwrap_err();
    assert_eq!(
        err,
        Error::Unsupported {
            op: "avg_pool2d",
            dtype: DType::BF16,
            device: Device::Cpu
        }
    );
    assert_eq!(
        err.to_string(),
        "avg_pool2d: bf16 tensors are not supported on cpu"
    );
}

#[test]
fn without_a_device_cuda_storage_is_an_error_not_a_panic() {
    if cuda::open(0).is_ok() {
        println!("SKIPPED: a CUDA device is present, so this no-device check does not apply");
        return;
    }
    let err = Storage::zeros(4, DType::F32, Device::Cuda(0)).unwrap_err();
    assert!(matches!(err, Error::CudaUnavailable { .. }), "{err}");
    let err = Storage::f32(vec![1.0])
        .to_device(Device::Cuda(0))
        .unwrap_err();
    assert!(matches!(err, Error::CudaUnavailable { .. }), "{err}");
}

#[test]
fn devices_print_as_pytorch_names_them() {
    assert_eq!(Device::Cpu.to_string(), "cpu");
    assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    assert!(Device::Cuda(0).is_cuda() && !Device::Cpu.is_cuda());
}

#[test]
fn cuda_storage_round_trips_and_mixed_devices_are_a_mismatch_or_skips() {
    let Some(device) = cuda_or_skip("cuda_storage_round_trips_and_mixed_devices_are_a_mismatch")
    else {
        return;
    };
    let values = vec![1.5f32, -2.0, 0.25, 7.0];
    let gpu = Storage::from_host(values.clone(), device).unwrap();
    assert_eq!(gpu.device(), device);
    assert_eq!(gpu.dtype(), DType::F32);
    assert_eq!(gpu.len(), 4);
    assert_eq!(gpu.to_vec_f32().unwrap(), values);
    assert_eq!(
        gpu.to_vec_f64().unwrap(),
        values.iter().map(|&v| v as f64).collect::<Vec<_>>()
    );
    assert_eq!(
        gpu.to_device(Device::Cpu).unwrap(),
        Storage::f32(values.clone())
    );
    assert_eq!(gpu.to_dtype(DType::F32).unwrap(), gpu);
    let err = gpu.to_dtype(DType::F64).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "to_dtype", .. }),
        "{err}"
    );
    assert_eq!(
        Storage::full(3, 2.5, DType::F32, device)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        [2.5; 3]
    );
    assert_eq!(
        Storage::zeros(3, DType::F32, device)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        [0.0; 3]
    );

    // A CUDA buffer is never borrowed as a host slice.
    let err = gpu.host::<f32>("relu", "input").unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "relu", .. }), "{err}");
    assert!(
        err.to_string()
            .contains("input is f32 on cuda:0, expected f32 on cpu"),
        "{err}"
    );

    // Operands on different devices: a Mismatch naming the op, whichever comes first.
    let cpu = Storage::f32(values.clone());
    for (a, b) in [(&gpu, &cpu), (&cpu, &gpu)] {
        let err = elementwise::add(a, b).unwrap_err();
        assert!(matches!(err, Error::Mismatch { op: "add", .. }), "{err}");
        let err = relu::backward(a, b).unwrap_err();
        assert!(matches!(err, Error::Mismatch { op: "relu", .. }), "{err}");
    }
    let g = MatmulGeometry::new(&[2, 2], &[2, 2]).unwrap();
    let err = matmul::forward(&gpu, &cpu, &g).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "matmul", .. }), "{err}");
    assert!(
        err.to_string()
            .contains("b is f32 on cpu, expected f32 on cuda:0"),
        "{err}"
    );

    // A failed in-place step leaves the parameter and the state as they were.
    let mut param = gpu.clone();
    let (mut m, mut v) = (
        Storage::zeros(4, DType::F32, device).unwrap(),
        Storage::f32(vec![0.0; 4]),
    );
    let err =
        optim::adam_step(&mut param, &gpu, &mut m, &mut v, 1, &AdamConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "adam", .. }), "{err}");
    assert_eq!(param.to_vec_f32().unwrap(), values);
    assert_eq!(m.to_vec_f32().unwrap(), [0.0; 4]);
}
