//! Autocast's bf16 on a CUDA device, against oracles computed on the CPU. Needs a GPU:
//! each test prints `SKIPPED: no CUDA device (<reason>)` and returns where none opens
//! (with `REQUIRE_CUDA=1`, as `scripts/gpu-check.sh` sets, a missing device fails).
//!
//! - Convolutions and linear layers: against the f64 op on the bf16-rounded operands. An
//!   f32 result (the weight and bias gradients, the linear output) carries f32 sums of
//!   exact products: norm-wise within [`F32_SUMS`]. A bf16 result is that sum rounded
//!   once more: within [`BF16_OUTPUT`] (2^-8, one bf16 rounding, norm-wise).
//! - Without a GPU, the same kernels run in the CPU emulator (`kernels/src/cuda/
//!   emulated_bf16*_tests.rs`); these tests add cuBLAS's bf16 products and the device.

use kernels::conv2d::{self, Conv2dGeometry};
use kernels::linear::{self, LinearGeometry};
use kernels::{cuda, DType, Device, Storage};

/// Norm-wise relative difference allowed for f32 sums of bf16 products (cuBLAS sums in
/// f32 in its own order; 1e-5 is f32 noise over these lengths, with room).
const F32_SUMS: f64 = 1e-4;

/// One bf16 rounding of every value: relative 2^-9 each at most, norm-wise the same;
/// 2^-8 leaves room for the f32 sums under it.
const BF16_OUTPUT: f64 = 1.0 / 256.0;

/// SplitMix64, so a failing case replays from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Values in `[-1, 1)`, already bf16 (so the f64 oracle sees what the GPU sees).
    fn bf16_values(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let v = (self.next_u64() >> 40) as f32 / (1u32 << 23) as f32 - 1.0;
                f64::from(half::bf16::from_f32(v).to_f32())
            })
            .collect()
    }
}

fn host(values: &[f64], dtype: DType) -> Storage {
    Storage::f64(values.to_vec()).to_dtype(dtype).unwrap()
}

fn on(device: Device, values: &[f64], dtype: DType) -> Storage {
    host(values, dtype).to_device(device).unwrap()
}

fn assert_near(what: &str, got: &Storage, want: &Storage, dtype: DType, tolerance: f64) {
    assert_eq!(got.dtype(), dtype, "{what}: dtype");
    let (g, w) = (got.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    assert_eq!(g.len(), w.len(), "{what}: length");
    let diff: f64 = g.iter().zip(&w).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f64 = w.iter().map(|b| b * b).sum();
    let rel = if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    };
    assert!(
        rel <= tolerance,
        "{what}: {rel:e} from the f64 oracle (allowed {tolerance:e})"
    );
}

/// The CPU's bf16 kernels, or `None` after saying why they cannot run here.
fn cpu_or_skip(test: &str) -> Option<Device> {
    match kernels::bf16::Isa::best() {
        Ok(_) => Some(Device::Cpu),
        Err(err) => {
            println!("SKIPPED: no bf16 instructions on this CPU ({err}) [{test}]");
            None
        }
    }
}

fn cuda_or_skip(test: &str) -> Option<Device> {
    cuda::open_or_skip(test).map(|gpu| Device::Cuda(gpu.ordinal()))
}

#[test]
fn bf16_convolutions_on_cuda_match_f64_on_the_rounded_operands_or_skip() {
    if let Some(device) = cuda_or_skip("bf16_convolutions_on_cuda") {
        check_convolutions(device);
    }
}

/// The same checks on the CPU's bf16 kernels: the oracle and its bounds, shown to hold
/// for kernels that run here.
#[test]
fn bf16_convolutions_on_the_cpu_meet_the_same_bounds_or_skip() {
    if let Some(device) = cpu_or_skip("bf16_convolutions_on_the_cpu") {
        check_convolutions(device);
    }
}

fn check_convolutions(device: Device) {
    for seed in 0..6u64 {
        let mut rng = Rng(seed * 7919 + 3);
        let g = loop {
            let cin = rng.range(1, 40);
            let input = [rng.range(1, 9), cin, rng.range(3, 17), rng.range(3, 17)];
            let weight = [rng.range(1, 40), cin, rng.range(1, 3), rng.range(1, 3)];
            let stride = [rng.range(1, 2), rng.range(1, 2)];
            let padding = [rng.range(0, 1), rng.range(0, 1)];
            if let Ok(g) = Conv2dGeometry::new(&input, &weight, stride, padding) {
                break g;
            }
        };
        let numel = |s: [usize; 4]| s.iter().product::<usize>();
        let x = rng.bf16_values(numel(g.input_shape()));
        let w = rng.bf16_values(numel(g.weight_shape()));
        let b = rng.bf16_values(g.out_channels);
        let gy = rng.bf16_values(numel(g.output_shape()));
        let f64s = |v: &[f64]| host(v, DType::F64);
        let want_y = conv2d::forward(&f64s(&x), &f64s(&w), Some(&f64s(&b)), &g).unwrap();
        let want = conv2d::backward(&f64s(&x), &f64s(&w), &f64s(&gy), &g, true, true).unwrap();

        // Autocast's case (bf16 activations and gradients), and an f32 first layer's.
        for (x_dtype, out) in [(DType::BF16, DType::BF16), (DType::F32, DType::F32)] {
            let what = |part: &str| format!("seed {seed} {g:?} x {x_dtype} {part}");
            let xd = on(device, &x, x_dtype);
            let (wd, bd) = (on(device, &w, DType::F32), on(device, &b, DType::F32));
            let y = conv2d::forward_bf16(&xd, &wd, Some(&bd), &g, out).unwrap();
            let tolerance = if out == DType::BF16 {
                BF16_OUTPUT
            } else {
                F32_SUMS
            };
            assert_near(&what("output"), &y, &want_y, out, tolerance);
            let gyd = on(device, &gy, out);
            let grads = conv2d::backward_bf16(&xd, &wd, &gyd, &g, true, true).unwrap();
            assert_near(
                &what("weight grad"),
                &grads.weight,
                &want.weight,
                DType::F32,
                F32_SUMS,
            );
            let bias = grads.bias.as_ref().unwrap();
            assert_near(
                &what("bias grad"),
                bias,
                want.bias.as_ref().unwrap(),
                DType::F32,
                F32_SUMS,
            );
            let gx = grads.input.as_ref().unwrap();
            let tolerance = if x_dtype == DType::BF16 {
                BF16_OUTPUT
            } else {
                F32_SUMS
            };
            assert_near(
                &what("input grad"),
                gx,
                want.input.as_ref().unwrap(),
                x_dtype,
                tolerance,
            );
        }
    }
}

#[test]
fn bf16_linear_layers_on_cuda_match_f64_on_the_rounded_operands_or_skip() {
    if let Some(device) = cuda_or_skip("bf16_linear_layers_on_cuda") {
        check_linear_layers(device);
    }
}

#[test]
fn bf16_linear_layers_on_the_cpu_meet_the_same_bounds_or_skip() {
    if let Some(device) = cpu_or_skip("bf16_linear_layers_on_the_cpu") {
        check_linear_layers(device);
    }
}

fn check_linear_layers(device: Device) {
    for seed in 0..6u64 {
        let mut rng = Rng(seed * 104_729 + 5);
        let (n, i, o) = (rng.range(1, 64), rng.range(1, 600), rng.range(1, 70));
        let g = LinearGeometry::new(&[n, i], &[o, i]).unwrap();
        let x = rng.bf16_values(n * i);
        let w = rng.bf16_values(o * i);
        let b = rng.bf16_values(o);
        let gy = rng.bf16_values(n * o);
        let f64s = |v: &[f64]| host(v, DType::F64);
        let want_y = linear::forward(&f64s(&x), &f64s(&w), Some(&f64s(&b)), &g).unwrap();
        let want = linear::backward(&f64s(&x), &f64s(&w), &f64s(&gy), &g, true, true).unwrap();
        for x_dtype in [DType::BF16, DType::F32] {
            let what = |part: &str| format!("seed {seed} n={n} i={i} o={o} x {x_dtype} {part}");
            let xd = on(device, &x, x_dtype);
            let (wd, bd) = (on(device, &w, DType::F32), on(device, &b, DType::F32));
            let y = linear::forward_bf16(&xd, &wd, Some(&bd), &g).unwrap();
            assert_near(&what("output"), &y, &want_y, DType::F32, F32_SUMS);
            // The logits' gradient is f32 under autocast; a bf16 one must give the same.
            for gy_dtype in [DType::F32, DType::BF16] {
                let gyd = on(device, &gy, gy_dtype);
                let grads = linear::backward_bf16(&xd, &wd, &gyd, &g, true, true).unwrap();
                let what = |part: &str| what(&format!("grad_out {gy_dtype} {part}"));
                assert_near(
                    &what("weight grad"),
                    &grads.weight,
                    &want.weight,
                    DType::F32,
                    F32_SUMS,
                );
                let bias = grads.bias.as_ref().unwrap();
                assert_near(
                    &what("bias grad"),
                    bias,
                    want.bias.as_ref().unwrap(),
                    DType::F32,
                    F32_SUMS,
                );
                let gx = grads.input.as_ref().unwrap();
                let tolerance = if x_dtype == DType::BF16 {
                    BF16_OUTPUT
                } else {
                    F32_SUMS
                };
                assert_near(
                    &what("input grad"),
                    gx,
                    want.input.as_ref().unwrap(),
                    x_dtype,
                    tolerance,
                );
            }
        }
    }
}
