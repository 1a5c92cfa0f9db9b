//! The `.cu` kernels' bf16 variants, run by the CPU emulator (`emulated_tests.rs` says
//! how) against the CPU's bf16 kernels, which are themselves tested bit for bit against
//! their f32 kernels on the widened values. A bf16 travels to a kernel as its bits (`u16`).
//!
//! Every bf16 kernel stores a value computed in f32, rounded once, so the emulated kernel
//! and the CPU must agree bit for bit wherever their f32 kernels do; a NaN matches any NaN.

use half::bf16;

use super::emulated_tests::{assert_bitwise, dev, emulator, host, input, output, Arg, Lcg, BLOCK};
use crate::pool2d::{self, Pool2dGeometry, PoolKind};
use crate::{batch_norm, elementwise, gelu, relu, DType, Storage};

/// The bits of `values` rounded to bf16 by the CPU (`half::bf16::from_f32`).
pub(super) fn bf16_bits(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| bf16::from_f32(v).to_bits())
        .collect()
}

/// A host bf16 storage holding `bits`.
pub(super) fn bf16_storage(bits: &[u16]) -> Storage {
    Storage::bf16(bits.iter().map(|&b| bf16::from_bits(b)).collect())
}

/// The bits of a host bf16 storage.
pub(super) fn bits_of(s: &Storage) -> Vec<u16> {
    s.host_bf16("test", "result")
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Same bits, any NaN matching any NaN.
pub(super) fn assert_same_bf16(what: &str, got: &[u16], want: &[u16]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let is_nan = |b: u16| b & 0x7fff > 0x7f80;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (is_nan(g) && is_nan(w)),
            "{what}[{i}]: got {g:#06x}, the CPU gives {w:#06x}"
        );
    }
}

/// f32 values that exercise rounding: ties both ways, values next to ties, overflow to
/// infinity, subnormals, signed zeros, infinities and NaN, beside random ones.
fn rounding_cases(rng: &mut Lcg) -> Vec<f32> {
    let mut x = rng.values(3000, 50.0);
    for bits in [
        0x3f80_8000u32, // 1 + 2^-8: a tie, kept even (down)
        0x3f81_8000,    // a tie rounding up to even
        0x3f80_8001,    // just above a tie
        0x3f80_7fff,    // just below a tie
        0x7f7f_ffff,    // f32::MAX: rounds to infinity
        0x0000_0001,    // the smallest subnormal
        0x0040_8000,    // a subnormal tie
        0x8000_0000,    // -0
        0x7f80_0000,    // inf
        0xff80_0000,    // -inf
        0x7fc0_0000,    // NaN
        0xffa0_0001,    // a signalling NaN with a payload
    ] {
        x.push(f32::from_bits(bits));
    }
    x
}

#[test]
fn emulated_bf16_casts_and_gradient_sums_match_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(11);
    let x = rounding_cases(&mut rng);
    let n = x.len() as u64;

    let mut rounded = vec![0u16; x.len()];
    emu.launch(
        "elementwise_to_bf16",
        3,
        BLOCK,
        &[input(&x), output(&mut rounded), Arg::U64(n)],
    );
    let want = bits_of(&Storage::f32(x.clone()).to_dtype(DType::BF16).unwrap());
    assert_same_bf16("elementwise_to_bf16", &rounded, &want);

    let mut widened = vec![0.0f32; x.len()];
    emu.launch(
        "elementwise_from_bf16",
        3,
        BLOCK,
        &[input(&rounded), output(&mut widened), Arg::U64(n)],
    );
    let want = bf16_storage(&rounded).to_dtype(DType::F32).unwrap();
    for (i, (g, w)) in widened.iter().zip(want.to_vec_f32().unwrap()).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "elementwise_from_bf16[{i}]: got {g:e}, the CPU gives {w:e}"
        );
    }

    let other = bf16_bits(&rng.values(x.len(), 50.0));
    let mut acc = rounded.clone();
    emu.launch(
        "elementwise_add_assign_bf16",
        3,
        BLOCK,
        &[output(&mut acc), input(&other), Arg::U64(n)],
    );
    let mut want = bf16_storage(&rounded);
    elementwise::add_assign(&mut want, &bf16_storage(&other)).unwrap();
    assert_same_bf16("elementwise_add_assign_bf16", &acc, &bits_of(&want));
}

/// The bits of every bf16, NaNs, infinities, signed zeros and subnormals included.
fn every_bf16() -> Vec<u16> {
    (0..=u16::MAX).collect()
}

/// Random gradients rounded to bf16, with a NaN, both infinities and both zeros among them.
fn gradient_bits(rng: &mut Lcg, n: usize) -> Vec<u16> {
    let mut dy = bf16_bits(&rng.values(n, 2.0));
    for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]
        .into_iter()
        .enumerate()
    {
        dy[(i * 7919 + 13) % n] = bf16::from_f32(v).to_bits();
    }
    dy
}

/// An activation's public forward pass (`gelu::forward`, `relu::forward`).
type Forward = fn(&Storage) -> crate::Result<Storage>;

/// An activation's public backward pass, from its input and output gradient.
type Backward = fn(&Storage, &Storage) -> crate::Result<Storage>;

#[test]
fn emulated_bf16_activations_match_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(12);
    // Every input GELU and ReLU can be given, so every branch of the normal cdf, both
    // tails and every special value; 65,536 values spread over several blocks.
    let x = every_bf16();
    let dy = gradient_bits(&mut rng, x.len());
    let n = x.len() as u64;
    let cases: [(&str, Forward); 2] = [("gelu", gelu::forward), ("relu", relu::forward)];
    for (op, cpu_forward) in cases {
        let mut y = vec![0u16; x.len()];
        let kernel = format!("{op}_forward_bf16");
        emu.launch(&kernel, 3, BLOCK, &[input(&x), output(&mut y), Arg::U64(n)]);
        let want = cpu_forward(&bf16_storage(&x)).unwrap();
        assert_same_bf16(&kernel, &y, &bits_of(&want));
    }
    let cases: [(&str, Backward); 2] = [("gelu", gelu::backward), ("relu", relu::backward)];
    for (op, cpu_backward) in cases {
        let mut gx = vec![0u16; x.len()];
        let kernel = format!("{op}_backward_bf16");
        emu.launch(
            &kernel,
            3,
            BLOCK,
            &[input(&x), input(&dy), output(&mut gx), Arg::U64(n)],
        );
        let want = cpu_backward(&bf16_storage(&x), &bf16_storage(&dy)).unwrap();
        assert_same_bf16(&kernel, &gx, &bits_of(&want));
    }
}

#[test]
fn emulated_bf16_max_pooling_matches_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(13);
    // Windows that tile the plane (the CPU's 2x2 path), padded, and overlapping ones
    // (several gradients summed in f32 into one cell, rounded once).
    let cases = [
        ([2, 3, 8, 8], [2, 2], [2, 2], [0, 0]),
        ([2, 3, 7, 9], [2, 2], [2, 2], [1, 1]),
        ([2, 3, 7, 9], [3, 3], [2, 1], [1, 1]),
        ([1, 2, 6, 5], [3, 2], [1, 1], [1, 0]),
    ];
    for (case, (shape, kernel, stride, padding)) in cases.into_iter().enumerate() {
        let g = Pool2dGeometry::new(PoolKind::Max, &shape, kernel, stride, padding).unwrap();
        // Whole numbers from -2 to 2 make ties (the first maximum must win, -0 against +0
        // included), a NaN must win, and infinities must compare as numbers.
        let mut x: Vec<f32> = rng
            .whole(shape.iter().product(), 5)
            .iter()
            .map(|v| v - 2.0)
            .collect();
        for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, -0.0, -0.0]
            .into_iter()
            .enumerate()
        {
            let at = (5 + 37 * i) % x.len();
            x[at] = v;
        }
        let x = bf16_bits(&x);
        let (want_y, argmax) = pool2d::max_forward_keeping_argmax(&bf16_storage(&x), &g).unwrap();
        // The argmax-keeping forward, the one autocast trains with: its value is the first
        // maximum's, as the kernel's. (The CPU's plain bf16 forward folds windows in
        // another order, so where -0 and +0 tie for the maximum it may return the other
        // zero.)
        let want_y = bits_of(&want_y);
        let mut dy = gradient_bits(&mut rng, want_y.len());
        if g.kernel == [2, 2] && g.stride == [2, 2] && g.padding == [0, 0] {
            // There the CPU copies each gradient to its cell, a -0 included, while the
            // gather adds it to +0 (as the f32 kernel does against the f32 CPU path).
            for v in dy.iter_mut().filter(|v| **v == 0x8000) {
                *v = 0;
            }
        }
        let want_gx = bits_of(
            &pool2d::max_backward_from_argmax(&argmax.unwrap(), &bf16_storage(&dy)).unwrap(),
        );
        let dims = [
            g.batch * g.channels,
            g.in_h,
            g.in_w,
            kernel[0],
            kernel[1],
            stride[0],
            stride[1],
            padding[0],
            padding[1],
            g.out_h,
            g.out_w,
        ]
        .map(|d| Arg::I32(d as i32));
        let mut y = vec![0u16; want_y.len()];
        let args: Vec<Arg> = [input(&x), output(&mut y)]
            .into_iter()
            .chain(dims)
            .collect();
        emu.launch("max_pool2d_forward_bf16", 3, BLOCK, &args);
        // The value is copied, not rounded again: the same bits, a signalling NaN's too.
        assert_eq!(y, want_y, "pool case {case}: max_pool2d_forward_bf16");
        let mut gx = vec![0u16; x.len()];
        let args: Vec<Arg> = [input(&x), input(&dy), output(&mut gx)]
            .into_iter()
            .chain(dims)
            .collect();
        emu.launch("max_pool2d_backward_bf16", 3, BLOCK, &args);
        assert_same_bf16(
            &format!("pool case {case}: max_pool2d_backward_bf16"),
            &gx,
            &want_gx,
        );
    }
}

#[test]
fn emulated_bf16_batch_norm_matches_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(14);
    for shape in [vec![6usize, 5, 7, 3], vec![40, 9]] {
        let (n, c) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        let g = batch_norm::BatchNormGeometry::new(&shape, c).unwrap();
        // An offset mean, so that centring before scaling matters, and signed zeros.
        let mut wide: Vec<f32> = rng.values(n * c * s, 2.0).iter().map(|v| v + 3.0).collect();
        wide[2] = 0.0;
        wide[3] = -0.0;
        let finite = bf16_bits(&wide);
        // A NaN in channel 1 and an infinity in channel 2 make those channels' statistics
        // NaN, and the eval forward's outputs there NaN and infinite, on both sides.
        let mut x = finite.clone();
        x[s] = bf16::NAN.to_bits();
        x[2 * s + 1] = bf16::INFINITY.to_bits();
        let gamma = rng.values(c, 1.0);
        let beta = rng.values(c, 1.0);
        let rm0 = rng.values(c, 0.5);
        let rv0: Vec<f32> = rng.values(c, 0.5).iter().map(|v| v + 1.0).collect();
        let gy = gradient_bits(&mut rng, x.len());
        let (momentum, eps) = (0.1, 1e-5);
        let ncs = [n, c, s].map(|d| Arg::I32(d as i32));

        // Training: statistics, running statistics and the output.
        let (mut want_rm, mut want_rv) = (dev(&rm0), dev(&rv0));
        let (want_y, stats) = batch_norm::forward_train(
            &bf16_storage(&x),
            &dev(&gamma),
            &dev(&beta),
            &mut want_rm,
            &mut want_rv,
            momentum,
            eps,
            &g,
        )
        .unwrap();
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        let (mut mean, mut inv_std, mut scale) =
            (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
        let args: Vec<Arg> = [input(&x), input(&gamma), output(&mut rm), output(&mut rv)]
            .into_iter()
            .chain(ncs)
            .chain([
                Arg::F64(momentum),
                Arg::F64(eps),
                output(&mut mean),
                output(&mut inv_std),
                output(&mut scale),
            ])
            .collect();
        emu.launch("batch_norm_train_stats_bf16", 2, BLOCK, &args);
        assert_bitwise("mean", &mean, &host(&stats.mean));
        assert_bitwise("inv_std", &inv_std, &host(&stats.inv_std));
        assert_bitwise("running_mean", &rm, &host(&want_rm));
        assert_bitwise("running_var", &rv, &host(&want_rv));
        let mut y = vec![0u16; x.len()];
        let args: Vec<Arg> = [input(&x), input(&mean), input(&scale), input(&beta)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut y)])
            .collect();
        emu.launch("batch_norm_affine_bf16", 3, BLOCK, &args);
        assert_same_bf16("train forward", &y, &bits_of(&want_y));

        // Training backward: f32 parameter gradients, a bf16 input gradient.
        let want = batch_norm::backward_train(
            &bf16_storage(&x),
            &dev(&gamma),
            &stats,
            &bf16_storage(&gy),
            &g,
        )
        .unwrap();
        let (mut dgamma, mut dbeta, mut coef) =
            (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; 3 * c]);
        let args: Vec<Arg> = [
            input(&x),
            input(&gy),
            input(&gamma),
            input(&mean),
            input(&inv_std),
        ]
        .into_iter()
        .chain(ncs)
        .chain([output(&mut dgamma), output(&mut dbeta), output(&mut coef)])
        .collect();
        emu.launch("batch_norm_backward_train_reduce_bf16", 2, BLOCK, &args);
        let mut gx = vec![0u16; x.len()];
        let args: Vec<Arg> = [input(&x), input(&gy), input(&mean), input(&coef)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut gx)])
            .collect();
        emu.launch("batch_norm_input_grad_bf16", 3, BLOCK, &args);
        assert_bitwise("train grad gamma", &dgamma, &host(&want.gamma));
        assert_bitwise("train grad beta", &dbeta, &host(&want.beta));
        assert_same_bf16("train grad input", &gx, &bits_of(&want.input));

        // Inference: the running statistics are constants.
        let want_y = batch_norm::forward_eval(
            &bf16_storage(&x),
            &dev(&gamma),
            &dev(&beta),
            &dev(&rm0),
            &dev(&rv0),
            eps,
            &g,
        )
        .unwrap();
        emu.launch(
            "batch_norm_eval_scale",
            1,
            BLOCK,
            &[
                input(&gamma),
                input(&rv0),
                Arg::I32(c as i32),
                Arg::F64(eps),
                output(&mut scale),
            ],
        );
        let args: Vec<Arg> = [input(&x), input(&rm0), input(&scale), input(&beta)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut y)])
            .collect();
        emu.launch("batch_norm_affine_bf16", 3, BLOCK, &args);
        assert_same_bf16("eval forward", &y, &bits_of(&want_y));

        // The eval backward from the finite input: its input-gradient kernel (shared with
        // training) forms 0 * (x - mean), NaN at an infinite x where the CPU's gradient is
        // gamma * inv_std * dy, in f32 as in bf16.
        let want = batch_norm::backward_eval(
            &bf16_storage(&finite),
            &dev(&gamma),
            &dev(&rm0),
            &dev(&rv0),
            eps,
            &bf16_storage(&gy),
            &g,
        )
        .unwrap();
        let args: Vec<Arg> = [
            input(&finite),
            input(&gy),
            input(&gamma),
            input(&rm0),
            input(&rv0),
        ]
        .into_iter()
        .chain([Arg::F64(eps)])
        .chain(ncs)
        .chain([output(&mut dgamma), output(&mut dbeta), output(&mut coef)])
        .collect();
        emu.launch("batch_norm_backward_eval_reduce_bf16", 2, BLOCK, &args);
        let args: Vec<Arg> = [input(&finite), input(&gy), input(&rm0), input(&coef)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut gx)])
            .collect();
        emu.launch("batch_norm_input_grad_bf16", 3, BLOCK, &args);
        assert_bitwise("eval grad gamma", &dgamma, &host(&want.gamma));
        assert_bitwise("eval grad beta", &dbeta, &host(&want.beta));
        assert_same_bf16("eval grad input", &gx, &bits_of(&want.input));
    }
}
