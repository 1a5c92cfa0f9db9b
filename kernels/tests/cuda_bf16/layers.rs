//! The layers between two convolutions on bf16 device buffers (autocast on the GPU):
//! GELU, ReLU, max pooling and batch norm against their host bf16 arms, and the errors a
//! wrong operand gets. Runs where a CUDA device opens and otherwise prints `SKIPPED`
//! (with `REQUIRE_CUDA=1`, as `scripts/gpu-check.sh` sets, a missing device fails). The
//! kernels' arithmetic is checked without a GPU by the emulated tests
//! (`kernels/src/cuda/emulated_bf16_tests.rs`); this checks the Rust side's launches,
//! dtypes and errors on a real device.

use half::bf16;
use kernels::batch_norm::{self, BatchNormGeometry};
use kernels::pool2d::{self, Pool2dGeometry, PoolKind};
use kernels::{cuda, gelu, relu, DType, Device, Error, Storage};

fn device_or_skip(test: &str) -> Option<Device> {
    cuda::open_or_skip(test).map(|gpu| Device::Cuda(gpu.ordinal()))
}

/// A host bf16 buffer of `bits`.
fn host_bf16(bits: &[u16]) -> Storage {
    Storage::bf16(bits.iter().map(|&b| bf16::from_bits(b)).collect())
}

/// The bits of a bf16 buffer on any device, checking that it is bf16.
fn bits(s: &Storage) -> Vec<u16> {
    assert_eq!(s.dtype(), DType::BF16);
    let host = s.to_device(Device::Cpu).unwrap();
    host.host_bf16("test", "result")
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Whether two bf16 bit patterns are equal or, with `ulps > 0`, at most `ulps` steps apart
/// with the same sign; a NaN matches any NaN.
fn near(a: u16, b: u16, ulps: u16) -> bool {
    let is_nan = |v: u16| v & 0x7fff > 0x7f80;
    if is_nan(a) || is_nan(b) {
        return is_nan(a) && is_nan(b);
    }
    // Adjacent bf16 values of one sign have adjacent bit patterns.
    a == b || (a >> 15 == b >> 15 && a.abs_diff(b) <= ulps)
}

fn assert_bits(what: &str, got: &[u16], want: &[u16], ulps: u16) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            near(g, w, ulps),
            "{what}[{i}]: got {g:#06x} on the device, the host gives {w:#06x}"
        );
    }
}

/// f32 results within `rel` of the host's (NaN matching NaN).
fn assert_f32(what: &str, got: &Storage, want: &Storage, rel: f32) {
    assert_eq!(
        (got.dtype(), want.dtype()),
        (DType::F32, DType::F32),
        "{what}"
    );
    let (got, want) = (got.to_vec_f32().unwrap(), want.to_vec_f32().unwrap());
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= rel * w.abs(),
            "{what}[{i}]: got {g:e} on the device, the host gives {w:e}"
        );
    }
}

/// Deterministic pseudo-random bf16 bits of values in about [-4, 4).
fn random_bits(n: usize, seed: u64) -> Vec<u16> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0;
            bf16::from_f32(v).to_bits()
        })
        .collect()
}

#[test]
fn bf16_activations_on_the_device_match_the_host_bit_for_bit() {
    let Some(device) = device_or_skip("bf16_activations_on_the_device_match_the_host") else {
        return;
    };
    let x: Vec<u16> = (0..=u16::MAX).collect();
    let dy = random_bits(x.len(), 1);
    let (hx, hdy) = (host_bf16(&x), host_bf16(&dy));
    let (dx, ddy) = (
        hx.to_device(device).unwrap(),
        hdy.to_device(device).unwrap(),
    );
    for (op, on_device, on_host) in [
        ("gelu forward", gelu::forward(&dx), gelu::forward(&hx)),
        ("relu forward", relu::forward(&dx), relu::forward(&hx)),
        (
            "gelu backward",
            gelu::backward(&dx, &ddy),
            gelu::backward(&hx, &hdy),
        ),
        (
            "relu backward",
            relu::backward(&dx, &ddy),
            relu::backward(&hx, &hdy),
        ),
    ] {
        let on_device = on_device.unwrap();
        assert_eq!(on_device.device(), device, "{op}");
        assert_bits(op, &bits(&on_device), &bits(&on_host.unwrap()), 0);
    }
    // The gradient of a bf16 activation is bf16 on its device; anything else is an error.
    let f32_grad = ddy.to_dtype(DType::F32).unwrap();
    for err in [
        gelu::backward(&dx, &f32_grad).unwrap_err(),
        gelu::backward(&dx, &hdy).unwrap_err(),
        relu::backward(&dx, &f32_grad).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("grad_out"), "{err}");
    }
}

#[test]
fn bf16_max_pooling_on_the_device_matches_the_host_bit_for_bit() {
    let Some(device) = device_or_skip("bf16_max_pooling_on_the_device_matches_the_host") else {
        return;
    };
    for (seed, (shape, kernel, stride, padding)) in [
        ([2, 3, 8, 8], [2, 2], [2, 2], [0, 0]),
        ([2, 3, 7, 9], [3, 3], [2, 1], [1, 1]),
    ]
    .into_iter()
    .enumerate()
    {
        let g = Pool2dGeometry::new(PoolKind::Max, &shape, kernel, stride, padding).unwrap();
        // Values on a coarse grid, so that windows tie.
        let x: Vec<u16> = random_bits(shape.iter().product(), seed as u64 + 2)
            .into_iter()
            .map(|b| b & 0xffc0)
            .collect();
        let hx = host_bf16(&x);
        let (want_y, argmax) = pool2d::max_forward_keeping_argmax(&hx, &g).unwrap();
        let dy = random_bits(want_y.len(), seed as u64 + 3);
        let want_dx = pool2d::max_backward_from_argmax(&argmax.unwrap(), &host_bf16(&dy)).unwrap();

        let dx = hx.to_device(device).unwrap();
        // The device keeps no argmax: its backward recomputes the winners from the input.
        let (y, kept) = pool2d::max_forward_keeping_argmax(&dx, &g).unwrap();
        assert!(kept.is_none());
        assert_bits("max pool forward", &bits(&y), &bits(&want_y), 0);
        let ddy = host_bf16(&dy).to_device(device).unwrap();
        let grad = pool2d::backward(&dx, &ddy, &g).unwrap();
        assert_bits("max pool backward", &bits(&grad), &bits(&want_dx), 0);
        let err = pool2d::backward(&dx, &ddy.to_dtype(DType::F32).unwrap(), &g).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    }
    // Average pooling has no bf16 kernel on either device.
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    let g = Pool2dGeometry::new(avg, &[1, 1, 2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
    let x = host_bf16(&[0x3f80; 4]).to_device(device).unwrap();
    assert_eq!(
        pool2d::forward(&x, &g).unwrap_err(),
        Error::Unsupported {
            op: "avg_pool2d",
            dtype: DType::BF16,
            device
        }
    );
}

#[test]
fn bf16_batch_norm_on_the_device_matches_the_host() {
    let Some(device) = device_or_skip("bf16_batch_norm_on_the_device_matches_the_host") else {
        return;
    };
    let shape = [8, 6, 5, 5];
    let g = BatchNormGeometry::new(&shape, 6).unwrap();
    let x = random_bits(shape.iter().product(), 4);
    let dy = random_bits(x.len(), 5);
    let param = |seed| {
        let values: Vec<f32> = random_bits(6, seed)
            .iter()
            .map(|&b| bf16::from_bits(b).to_f32() * 0.25 + 1.0)
            .collect();
        Storage::f32(values)
    };
    let (gamma, beta, rm, rv) = (param(6), param(7), param(8), param(9));
    let on = |s: &Storage| s.to_device(device).unwrap();
    let (hx, hdy) = (host_bf16(&x), host_bf16(&dy));
    let (dx, ddy) = (on(&hx), on(&hdy));
    // The statistics are f64 sums taken in another order on each device and rounded to
    // f32: equal but for a last bit, which may move a bf16 output by one step.
    let (f32_rel, bf16_ulps) = (1e-6, 1);

    let (mut host_rm, mut host_rv) = (rm.clone(), rv.clone());
    let (want_y, want_stats) = batch_norm::forward_train(
        &hx,
        &gamma,
        &beta,
        &mut host_rm,
        &mut host_rv,
        0.1,
        1e-5,
        &g,
    )
    .unwrap();
    let (mut dev_rm, mut dev_rv) = (on(&rm), on(&rv));
    let (y, stats) = batch_norm::forward_train(
        &dx,
        &on(&gamma),
        &on(&beta),
        &mut dev_rm,
        &mut dev_rv,
        0.1,
        1e-5,
        &g,
    )
    .unwrap();
    assert_bits("train forward", &bits(&y), &bits(&want_y), bf16_ulps);
    assert_f32("mean", &stats.mean, &want_stats.mean, f32_rel);
    assert_f32("inv_std", &stats.inv_std, &want_stats.inv_std, f32_rel);
    assert_f32("running_mean", &dev_rm, &host_rm, f32_rel);
    assert_f32("running_var", &dev_rv, &host_rv, f32_rel);

    let want = batch_norm::backward_train(&hx, &gamma, &want_stats, &hdy, &g).unwrap();
    let got = batch_norm::backward_train(&dx, &on(&gamma), &stats, &ddy, &g).unwrap();
    assert_bits(
        "train grad input",
        &bits(&got.input),
        &bits(&want.input),
        bf16_ulps,
    );
    assert_f32("train grad gamma", &got.gamma, &want.gamma, f32_rel);
    assert_f32("train grad beta", &got.beta, &want.beta, f32_rel);

    let want_y = batch_norm::forward_eval(&hx, &gamma, &beta, &rm, &rv, 1e-5, &g).unwrap();
    let y = batch_norm::forward_eval(&dx, &on(&gamma), &on(&beta), &on(&rm), &on(&rv), 1e-5, &g)
        .unwrap();
    assert_bits("eval forward", &bits(&y), &bits(&want_y), 0);
    let want = batch_norm::backward_eval(&hx, &gamma, &rm, &rv, 1e-5, &hdy, &g).unwrap();
    let got =
        batch_norm::backward_eval(&dx, &on(&gamma), &on(&rm), &on(&rv), 1e-5, &ddy, &g).unwrap();
    assert_bits("eval grad input", &bits(&got.input), &bits(&want.input), 0);
    assert_f32("eval grad gamma", &got.gamma, &want.gamma, f32_rel);
    assert_f32("eval grad beta", &got.beta, &want.beta, f32_rel);

    // An f32 gradient of a bf16 input is refused, naming it.
    let err = batch_norm::backward_train(
        &dx,
        &on(&gamma),
        &stats,
        &ddy.to_dtype(DType::F32).unwrap(),
        &g,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("grad_out"), "{err}");
}
