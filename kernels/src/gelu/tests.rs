use half::bf16;
use proptest::prelude::*;

use super::cpu::Gaussian;
use super::normal::{cdf_f32, cdf_f64, exp_f32, pdf_f32, pdf_f64};
use super::*;
use crate::bf16_values::{narrow, widen};
use crate::Error;

/// Φ at a few points, from mpmath at 50 digits (`mpmath.ncdf`).
const CDF_VALUES: [(f64, f64); 6] = [
    (-8.0, 6.220_960_574_271_784e-16),
    (-3.0, 1.349_898_031_630_094_6e-3),
    (-1.0, 0.158_655_253_931_457_05),
    (0.5, 0.691_462_461_274_013_1),
    (2.0, 0.977_249_868_051_820_8),
    (6.0, 0.999_999_999_013_412_4),
];

/// Evenly spread and normally spread points over the range where f32 Φ is not 0 or 1.
fn sample_points() -> Vec<f32> {
    let mut points: Vec<f32> = (0..2_000_001)
        .map(|i| -14.0 + 28.0 * i as f32 / 2_000_000.0)
        .collect();
    // Dense around the seams of the piecewise fit (|x| = √2 and 4√2) and zero.
    for centre in [
        0.0f32,
        std::f32::consts::SQRT_2,
        4.0 * std::f32::consts::SQRT_2,
    ] {
        for sign in [-1.0f32, 1.0] {
            let mut x = sign * centre;
            for _ in 0..20_000 {
                points.push(x);
                x = f32::from_bits(x.to_bits().wrapping_add(1));
            }
        }
    }
    points
}

fn ulp(x: f64) -> f64 {
    let x = (x.abs() as f32).max(f32::MIN_POSITIVE);
    (f32::from_bits(x.to_bits() + 1) - x) as f64
}

#[test]
fn the_f64_cdf_matches_mpmath() {
    for (x, want) in CDF_VALUES {
        let got = cdf_f64(x);
        // Rounding x/√2 moves erfc by about x² ulps in the tail: erfc'/erfc ≈ -2t.
        let bound = (4.0 + x * x) * f64::EPSILON * want;
        assert!((got - want).abs() <= bound, "Φ({x}) = {got}, want {want}");
    }
    assert_eq!(pdf_f64(0.0), 0.398_942_280_401_432_7);
}

#[test]
fn the_f32_cdf_is_within_a_few_ulp_of_the_f64_one() {
    // Worst error seen in each band: in ulp for x ≥ 0, relative below.
    let mut worst = [0.0f64; 3];
    for x in sample_points() {
        let want = cdf_f64(x as f64);
        let got = cdf_f32(x) as f64;
        let band = if x >= 0.0 {
            0
        } else if x >= -4.0 * std::f32::consts::SQRT_2 {
            1
        } else {
            2
        };
        let error = if band == 0 {
            (got - want).abs() / ulp(want)
        } else if want > f32::MIN_POSITIVE as f64 {
            (got - want).abs() / want
        } else {
            0.0
        };
        worst[band] = worst[band].max(error);
    }
    // Right of zero: a couple of ulp. Left of zero Φ is computed without cancellation in
    // erfc; the exp of a polynomial whose terms reach ~20 (|x| ≤ 4√2), then of -t² with t
    // up to 10, bounds the relative error.
    assert!(worst[0] <= 2.0, "Φ error {} ulp for x ≥ 0", worst[0]);
    assert!(
        worst[1] <= 4e-6,
        "Φ relative error {} for -4√2 ≤ x < 0",
        worst[1]
    );
    assert!(
        worst[2] <= 2e-5,
        "Φ relative error {} for x < -4√2",
        worst[2]
    );
}

#[test]
fn the_f32_exp_and_pdf_are_within_a_few_ulp() {
    for i in 0..200_000 {
        let q = -87.0 + 175.0 * i as f32 / 200_000.0;
        let want = (q as f64).exp();
        let got = exp_f32(q) as f64;
        assert!(
            (got - want).abs() <= 2.0 * ulp(want),
            "exp({q}) = {got}, want {want}"
        );
    }
    assert_eq!(exp_f32(-90.0), 0.0);
    assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    for x in sample_points().into_iter().step_by(7) {
        let want = pdf_f64(x as f64);
        let got = pdf_f32(x) as f64;
        // exp(-x²/2) inherits the rounding of x² (relative 2^-24 of x²/2).
        // (Values below f32's smallest normal number come out as 0.)
        let bound = 3.0 * ulp(want) + want * (x as f64).powi(2) * 3e-8 + f32::MIN_POSITIVE as f64;
        assert!((got - want).abs() <= bound, "φ({x}) = {got}, want {want}");
    }
}

/// Output gradients `dy` (a few distinct values) for `xs`, then GELU of `xs` and its input
/// gradient given `dy`, by the f32 kernels.
fn forward_and_backward(xs: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let dy: Vec<f32> = (0..xs.len()).map(|i| 1.0 - (i % 7) as f32 * 0.25).collect();
    let y = forward(&Storage::f32(xs.to_vec()))
        .unwrap()
        .to_vec_f32()
        .unwrap();
    let dx = backward(&Storage::f32(xs.to_vec()), &Storage::f32(dy.clone()))
        .unwrap()
        .to_vec_f32()
        .unwrap();
    (dy, y, dx)
}

#[test]
fn forward_and_backward_in_f32_match_the_f64_formula() {
    let xs = sample_points();
    let (dy, y, dx) = forward_and_backward(&xs);
    for (i, &x) in xs.iter().enumerate() {
        let x64 = x as f64;
        let scale = x64.abs().max(1.0);
        let want_y = x64 * cdf_f64(x64);
        assert!(
            (y[i] as f64 - want_y).abs() <= 1.5e-7 * scale,
            "gelu({x}) = {}, want {want_y}",
            y[i]
        );
        let want_dx = dy[i] as f64 * (cdf_f64(x64) + x64 * pdf_f64(x64));
        assert!(
            (dx[i] as f64 - want_dx).abs() <= 3e-7 * scale * dy[i].abs() as f64 + 1e-30,
            "gelu'({x}) * {} = {}, want {want_dx}",
            dy[i],
            dx[i]
        );
    }
}

#[test]
fn every_compiled_loop_gives_the_bits_of_the_scalar_code() {
    // The loops are compiled for AVX-512, for AVX2 + FMA and for baseline x86-64
    // (`simd::wide_loop`); `wide = false` takes the AVX2 copy on a CPU with AVX2 and FMA.
    // The scalar reference below is not inlined into a vector loop, so with FMA in the
    // polynomials this also checks the instruction against libm's `fmaf`.
    let xs = mixed_points();
    let dy: Vec<f32> = (0..xs.len()).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
    let mut paths = vec![(
        false,
        if crate::simd::has_avx2_fma() {
            "AVX2+FMA"
        } else {
            "baseline"
        },
    )];
    if crate::simd::has_avx512() {
        paths.push((true, "AVX-512"));
    } else {
        println!("SKIPPED for AVX-512: this CPU has none");
    }
    let same =
        |got: f32, want: f32| got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
    for (wide, name) in paths {
        let mut y = vec![0.0f32; xs.len()];
        let mut dx = vec![0.0f32; xs.len()];
        super::cpu::forward_piece(wide, &xs, &mut y);
        super::cpu::backward_piece(wide, &xs, &dy, &mut dx);
        for (i, &x) in xs.iter().enumerate() {
            let want_y = std::hint::black_box(x) * cdf_f32(std::hint::black_box(x));
            let want_dx = dy[i] * (cdf_f32(x) + x * pdf_f32(x));
            assert!(
                same(y[i], want_y),
                "{name}: gelu({x}) = {}, want {want_y}",
                y[i]
            );
            assert!(
                same(dx[i], want_dx),
                "{name}: gelu'({x}) * {} = {}, want {want_dx}",
                dy[i],
                dx[i]
            );
        }
    }
}

/// The sample points in an order that puts central values, far-tail values and NaN in the
/// same blocks of the vectorised loops (a fixed permutation: 7919 is prime, so coprime to
/// the length unless the length is a multiple of it, which it is not).
fn mixed_points() -> Vec<f32> {
    let mut points = sample_points();
    points.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
    assert_ne!(points.len() % 7919, 0);
    (0..points.len())
        .map(|i| points[i * 7919 % points.len()])
        .collect()
}

#[test]
fn blocks_skipping_the_far_tail_give_the_bits_of_the_whole_formula() {
    // Where a block of values is all central, the loops leave the far-tail fit out; the
    // result must not change by a bit, forward or backward, in mixed blocks or pure ones.
    for xs in [sample_points(), mixed_points()] {
        let (dy, y, dx) = forward_and_backward(&xs);
        for (i, &x) in xs.iter().enumerate() {
            let want_y = x * cdf_f32(x);
            let want_dx = dy[i] * (cdf_f32(x) + x * pdf_f32(x));
            // (A NaN's payload may depend on operand order; that it is NaN is what counts.)
            let same = |got: f32, want: f32| {
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
            };
            assert!(same(y[i], want_y), "gelu({x}) = {}, want {want_y}", y[i]);
            assert!(
                same(dx[i], want_dx),
                "gelu'({x}) * {} = {}, want {want_dx}",
                dy[i],
                dx[i]
            );
        }
    }
}

#[test]
fn the_f64_backward_matches_finite_differences() {
    let xs: Vec<f64> = (0..400).map(|i| -9.0 + i as f64 * 0.045).collect();
    let h = 1e-6;
    let plus: Vec<f64> = xs.iter().map(|x| x + h).collect();
    let minus: Vec<f64> = xs.iter().map(|x| x - h).collect();
    let f = |v: &[f64]| {
        forward(&Storage::f64(v.to_vec()))
            .unwrap()
            .to_vec_f64()
            .unwrap()
    };
    let (fp, fm) = (f(&plus), f(&minus));
    let dx = backward(
        &Storage::f64(xs.clone()),
        &Storage::f64(vec![1.0; xs.len()]),
    )
    .unwrap()
    .to_vec_f64()
    .unwrap();
    for i in 0..xs.len() {
        let numeric = (fp[i] - fm[i]) / (2.0 * h);
        assert!(
            (dx[i] - numeric).abs() < 1e-8,
            "x = {}: {} vs {numeric}",
            xs[i],
            dx[i]
        );
    }
}

#[test]
fn special_values_follow_pytorch() {
    let y = forward(&Storage::f32(vec![
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]))
    .unwrap()
    .to_vec_f32()
    .unwrap();
    assert_eq!(y[0], 0.0);
    assert_eq!(y[1], f32::INFINITY);
    // PyTorch: -inf * 0.5 * (1 + erf(-inf)) = -inf * 0 = nan.
    assert!(y[2].is_nan() && y[3].is_nan());
    assert_eq!(f32::cdf(30.0), 1.0);
    assert_eq!(f32::cdf(-30.0), 0.0);
}

#[test]
fn bad_operands_name_the_op() {
    let err = backward(&Storage::f32(vec![1.0; 3]), &Storage::f32(vec![1.0; 2])).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "gelu", .. }), "{err}");
    let err = backward(&Storage::f32(vec![1.0]), &Storage::f64(vec![1.0])).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "gelu", .. }), "{err}");
}

/// Every bf16 bit pattern, in an order (odd multiplier: a permutation of 2^16) that puts
/// central values, far-tail values, infinities and NaNs in the same blocks of the loops.
fn every_bf16() -> Vec<bf16> {
    (0..1u32 << 16)
        .map(|i| bf16::from_bits(i.wrapping_mul(40_503) as u16))
        .collect()
}

/// Bits of the f32 kernels on the widened values, each output narrowed once; then the
/// same from the bf16 kernels, through the public API.
fn f32_then_bf16(x: &[bf16], dy: &[bf16]) -> [(Vec<u16>, Vec<u16>); 2] {
    let wide = |v: &[bf16]| Storage::f32(v.iter().map(|&v| widen(v)).collect());
    let narrowed = |s: Storage| -> Vec<u16> {
        let v = s.to_vec_f32().unwrap();
        v.iter().map(|&v| narrow(v).to_bits()).collect()
    };
    let want_y = narrowed(forward(&wide(x)).unwrap());
    let want_dx = narrowed(backward(&wide(x), &wide(dy)).unwrap());
    let bits = |s: &Storage| -> Vec<u16> {
        s.host_bf16("test", "output")
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let x = Storage::bf16(x.to_vec());
    let y = forward(&x).unwrap();
    let dx = backward(&x, &Storage::bf16(dy.to_vec())).unwrap();
    [(want_y, want_dx), (bits(&y), bits(&dx))]
}

/// Whether two bf16 results agree: the same bits, or both NaN. Which payload a NaN
/// result carries when both operands of a product are NaN is the compiler's choice of
/// operand order (Rust leaves it unspecified), so NaN results compare as NaN.
fn same_result(a: u16, b: u16) -> bool {
    let nan = |v: u16| v & 0x7fff > 0x7f80;
    a == b || (nan(a) && nan(b))
}

/// Output gradients as they reach a GELU: of either sign, mostly small, a few special.
fn gradients(len: usize) -> Vec<bf16> {
    (0..len)
        .map(|i| match i % 13 {
            12 => bf16::from_f32([f32::NAN, f32::INFINITY, -0.0, 1e-39][i % 4]),
            k => bf16::from_f32((0.5 - k as f32 * 0.375) * 2f32.powi(-(i as i32 % 9))),
        })
        .collect()
}

#[test]
fn every_bf16_input_gives_the_bits_of_the_f32_kernel_on_its_widened_value() {
    // Exhaustive: all 65536 inputs, NaNs, infinities and signed zeros included.
    let x = every_bf16();
    let dy = gradients(x.len());
    let [(want_y, want_dx), (got_y, got_dx)] = f32_then_bf16(&x, &dy);
    for i in 0..x.len() {
        let v = widen(x[i]);
        assert_eq!(
            got_y[i],
            want_y[i],
            "gelu({v:e}) bits {:#06x}",
            x[i].to_bits()
        );
        assert!(
            same_result(got_dx[i], want_dx[i]),
            "gelu'({v:e}) * {}: bits {:#06x}, want {:#06x}",
            dy[i],
            got_dx[i],
            want_dx[i]
        );
    }
}

#[test]
fn every_compiled_loop_reads_bf16_as_its_f32_copy_reads_the_widened_values() {
    // The public API above runs one of the three compiled copies (`simd::wide_loop`); here
    // each copy this CPU runs takes the bf16 input and the widened one.
    let x = every_bf16();
    let wide_x: Vec<f32> = x.iter().map(|&v| widen(v)).collect();
    let dy = gradients(x.len());
    let wide_dy: Vec<f32> = dy.iter().map(|&v| widen(v)).collect();
    let mut paths = vec![false];
    if crate::simd::has_avx512() {
        paths.push(true);
    } else {
        println!("SKIPPED for AVX-512: this CPU has none");
    }
    for wide in paths {
        let (mut y, mut y32) = (vec![bf16::ZERO; x.len()], vec![0.0f32; x.len()]);
        let (mut dx, mut dx32) = (vec![bf16::ZERO; x.len()], vec![0.0f32; x.len()]);
        super::cpu::forward_piece(wide, &x, &mut y);
        super::cpu::forward_piece(wide, &wide_x, &mut y32);
        super::cpu::backward_piece(wide, &x, &dy, &mut dx);
        super::cpu::backward_piece(wide, &wide_x, &wide_dy, &mut dx32);
        for i in 0..x.len() {
            assert_eq!(
                y[i].to_bits(),
                narrow(y32[i]).to_bits(),
                "wide {wide}: x {}",
                wide_x[i]
            );
            assert_eq!(
                dx[i].to_bits(),
                narrow(dx32[i]).to_bits(),
                "wide {wide}: x {} dy {}",
                wide_x[i],
                wide_dy[i]
            );
        }
    }
}

/// Inputs as activations hold them: mostly central, some in the far tails, a few special.
fn activation() -> impl Strategy<Value = bf16> {
    prop_oneof![
        8 => (-4.0f32..4.0).prop_map(bf16::from_f32),
        2 => (-20.0f32..20.0).prop_map(bf16::from_f32),
        1 => prop::sample::select(vec![
            f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-40, -3e38,
        ]).prop_map(bf16::from_f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn bf16_tensors_of_any_length_give_the_bits_of_the_f32_kernel(
        x in prop::collection::vec(activation(), 0..40_000),
        seed in any::<u64>(),
    ) {
        // Lengths across the 16-value blocks and the parallel pieces of 2^14 values.
        let dy: Vec<bf16> = crate::test_util::pseudo_random(x.len(), seed).iter().map(|&v| bf16::from_f64(v)).collect();
        let [(want_y, want_dx), (got_y, got_dx)] = f32_then_bf16(&x, &dy);
        prop_assert_eq!(want_y, got_y);
        prop_assert!(want_dx.iter().zip(&got_dx).all(|(&w, &g)| same_result(w, g)));
    }
}

#[test]
fn bf16_forward_and_backward_match_the_f64_formula() {
    // The f32 kernel is within 1.5e-7 max(|x|, 1) of x Φ(x) (forward) and 3e-7 max(|x|, 1)
    // |dy| of its derivative (forward_and_backward_in_f32_match_the_f64_formula); the bf16
    // forward and the backward each add one rounding to 8 significant bits, at most 2^-8
    // of the f32 value (or half the smallest bf16 subnormal, 2^-134).
    let x: Vec<bf16> = every_bf16().into_iter().filter(|v| v.is_finite()).collect();
    let dy: Vec<bf16> = (0..x.len())
        .map(|i| bf16::from_f32(1.0 - (i % 7) as f32 * 0.25))
        .collect();
    let y = forward(&Storage::bf16(x.clone()))
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let dx = backward(&Storage::bf16(x.clone()), &Storage::bf16(dy.clone()))
        .unwrap()
        .to_vec_f64()
        .unwrap();
    for (i, &v) in x.iter().enumerate() {
        let x64 = v.to_f64();
        let scale = x64.abs().max(1.0);
        let want_y = x64 * cdf_f64(x64);
        let f32_tolerance = 1.5e-7 * scale;
        let bound =
            2f64.powi(-8) * (want_y.abs() + f32_tolerance) + f32_tolerance + 2f64.powi(-134);
        assert!(
            (y[i] - want_y).abs() <= bound,
            "gelu({x64}) = {}, want {want_y}",
            y[i]
        );
        let want_dx = dy[i].to_f64() * (cdf_f64(x64) + x64 * pdf_f64(x64));
        let f32_tolerance = 3e-7 * scale * dy[i].to_f64().abs();
        let bound =
            2f64.powi(-8) * (want_dx.abs() + f32_tolerance) + f32_tolerance + 2f64.powi(-134);
        assert!(
            (dx[i] - want_dx).abs() <= bound,
            "gelu'({x64}) * {} = {}, want {want_dx}",
            dy[i],
            dx[i]
        );
    }
}

#[test]
fn a_bf16_input_takes_a_bf16_gradient_and_no_other() {
    crate::test_util::assert_gradients_have_the_input_dtype("gelu", backward);
}
