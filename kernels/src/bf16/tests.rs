use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use half::bf16;

use super::source::Values;
use super::*;
use crate::bf16_values::{narrow, widen};
use crate::conv2d::Conv2dGeometry;
use crate::linear::LinearGeometry;
use crate::{DType, Error, Storage};

/// The instruction sets to test on, or None (after printing why) when there are none.
pub(crate) fn isas_or_skip() -> Option<Vec<Isa>> {
    let isas = Isa::available();
    if isas.is_empty() {
        println!("SKIPPED: {}", Isa::best().unwrap_err());
        return None;
    }
    Some(isas)
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 52) as f64 - 1.0) as f32
        })
        .collect()
}

/// `x` rounded to bf16, as f64: the value the kernels multiply.
pub(crate) fn rounded(x: f32) -> f64 {
    half::bf16::from_f32(x).to_f64()
}

/// f32's machine epsilon, 2^-23.
pub(crate) const EPS: f64 = f32::EPSILON as f64;

/// Checks `got` against `exact` (a sum of `terms` terms in f64, `magnitude` the sum of
/// their absolute values): summing `terms` values in f32, in any order, errs by at most
/// `(terms - 1) * 2^-24 * magnitude` (each addition rounds a partial sum no larger than
/// `magnitude` to half an ulp); the bound used, `terms * 2^-23 * magnitude`, is twice that.
pub(crate) fn assert_within(what: &str, got: f32, exact: f64, magnitude: f64, terms: usize) {
    let bound = terms as f64 * EPS * magnitude;
    let err = (got as f64 - exact).abs();
    assert!(
        err <= bound,
        "{what}: got {got}, exact {exact}, error {err:e} > bound {bound:e} ({terms} terms, sum |terms| {magnitude})"
    );
}

#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
    c_t: bool,
    accumulate: bool,
    seed: u64,
}

fn check_gemm(isa: Isa, case: Case) {
    let Case {
        m,
        n,
        k,
        a_t,
        b_t,
        c_t,
        accumulate,
        seed,
    } = case;
    let a = values(m * k, seed);
    let b = values(k * n, seed + 1);
    let c0 = values(m * n, seed + 2);
    // Stored transposed: element (r, c) of an r x c operand at c * rows + r.
    let a_ref = if a_t {
        MatRef::strided(&a, m, k, 1, m)
    } else {
        MatRef::new(&a, m, k)
    }
    .unwrap();
    let b_ref = if b_t {
        MatRef::strided(&b, k, n, 1, k)
    } else {
        MatRef::new(&b, k, n)
    }
    .unwrap();
    let mut c = c0.clone();
    let c_mut = if c_t {
        MatMut::strided(&mut c, m, n, 1, m)
    } else {
        MatMut::new(&mut c, m, n)
    }
    .unwrap();
    gemm_with(isa, a_ref, b_ref, c_mut, accumulate).unwrap();
    let at = |mat: &MatRef, r: usize, col: usize| {
        mat.data()[r * mat.row_stride() + col * mat.col_stride()]
    };
    for i in 0..m {
        for j in 0..n {
            let idx = if c_t { j * m + i } else { i * n + j };
            let init = if accumulate { c0[idx] as f64 } else { 0.0 };
            let (mut exact, mut magnitude) = (init, init.abs());
            for p in 0..k {
                let prod = rounded(at(&a_ref, i, p)) * rounded(at(&b_ref, p, j));
                exact += prod;
                magnitude += prod.abs();
            }
            let terms = k + usize::from(accumulate);
            assert_within(
                &format!("{isa} {case:?} c[{i}][{j}]"),
                c[idx],
                exact,
                magnitude,
                terms,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: RngSeed::Fixed(0xbf16),
        ..ProptestConfig::default()
    })]

    // Sizes around the 32x32 blocks and 32-deep steps, every storage order, with and
    // without accumulation, on every instruction set this CPU has.
    #[test]
    fn gemm_matches_f64_sums_of_the_rounded_inputs(
        m in 1usize..=70,
        n in 1usize..=70,
        k in 1usize..=100,
        a_t in any::<bool>(),
        b_t in any::<bool>(),
        c_t in any::<bool>(),
        accumulate in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let Some(isas) = isas_or_skip() else { return Ok(()) };
        for isa in isas {
            check_gemm(isa, Case { m, n, k, a_t, b_t, c_t, accumulate, seed });
        }
    }
}

#[test]
fn gemm_deep_and_wide_products() {
    let Some(isas) = isas_or_skip() else { return };
    // k over several K_CHUNKs (so blocks inside C accumulate across passes), panels on
    // both threads, and a wide C split by columns.
    for isa in isas {
        check_gemm(
            isa,
            Case {
                m: 96,
                n: 64,
                k: 1100,
                a_t: false,
                b_t: false,
                c_t: false,
                accumulate: false,
                seed: 1,
            },
        );
        check_gemm(
            isa,
            Case {
                m: 40,
                n: 200,
                k: 600,
                a_t: true,
                b_t: true,
                c_t: false,
                accumulate: true,
                seed: 2,
            },
        );
        check_gemm(
            isa,
            Case {
                m: 33,
                n: 65,
                k: 513,
                a_t: false,
                b_t: true,
                c_t: true,
                accumulate: true,
                seed: 3,
            },
        );
    }
}

#[test]
fn amx_and_avx512_bf16_agree() {
    let (amx, avx) = (Isa::Amx.check(), Isa::Avx512Bf16.check());
    if let (Err(e), _) | (_, Err(e)) = (&amx, &avx) {
        println!("SKIPPED: this test needs both AMX and AVX512-BF16: {e}");
        return;
    }
    let (m, n, k) = (70, 90, 700);
    let a = values(m * k, 11);
    let b = values(k * n, 12);
    let run = |isa| {
        let mut c = vec![f32::NAN; m * n];
        gemm_with(
            isa,
            MatRef::new(&a, m, k).unwrap(),
            MatRef::new(&b, k, n).unwrap(),
            MatMut::new(&mut c, m, n).unwrap(),
            false,
        )
        .unwrap();
        c
    };
    let (c_amx, c_avx) = (run(Isa::Amx), run(Isa::Avx512Bf16));
    for i in 0..m {
        for j in 0..n {
            let magnitude: f64 = (0..k)
                .map(|p| (rounded(a[i * k + p]) * rounded(b[p * n + j])).abs())
                .sum();
            // Each is within k * eps * magnitude of the exact sum, so of each other twice that.
            let (x, y) = (c_amx[i * n + j], c_avx[i * n + j]);
            let bound = 2.0 * k as f64 * EPS * magnitude;
            assert!(
                ((x - y) as f64).abs() <= bound,
                "c[{i}][{j}]: amx {x}, avx512-bf16 {y}, differ by more than {bound:e}"
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let (a, b) = (vec![0.0f32; 6], vec![0.0f32; 6]);
    let mut c = vec![0.0f32; 4];
    assert!(MatRef::new(&a, 4, 2).is_err(), "8 elements do not fit in 6");
    let err = gemm_with(
        Isa::Avx512Bf16,
        MatRef::new(&a, 2, 3).unwrap(),
        MatRef::new(&b, 2, 3).unwrap(),
        MatMut::new(&mut c, 2, 2).unwrap(),
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot multiply 2x3 by 2x3"),
        "{err}"
    );
    // Rows 1 apart and columns 1 apart would write the same memory twice.
    assert!(MatMut::strided(&mut c, 2, 2, 1, 1).is_err());
}

/// Sums of the same products in f64, and the sums of their absolute values.
struct Exact {
    value: Vec<f64>,
    magnitude: Vec<f64>,
}

impl Exact {
    fn zeros(len: usize) -> Exact {
        Exact {
            value: vec![0.0; len],
            magnitude: vec![0.0; len],
        }
    }

    fn add(&mut self, i: usize, term: f64) {
        self.value[i] += term;
        self.magnitude[i] += term.abs();
    }

    /// Checks every element of `got`, each a sum of at most `terms` terms in f32 then
    /// rounded once to bf16: within the f32 bound `B` of [`assert_within`] plus one
    /// rounding of that f32 value, `2^-8 (|exact| + B)` (bf16 keeps 8 significant bits, so
    /// rounding to nearest errs by at most `2^-8` of the value: `1 + 2^-8` is a tie).
    fn check_bf16(&self, what: &str, got: &[bf16], terms: usize) {
        assert_eq!(got.len(), self.value.len(), "{what}: length");
        for (i, &g) in got.iter().enumerate() {
            let (exact, magnitude) = (self.value[i], self.magnitude[i]);
            let f32_bound = terms as f64 * EPS * magnitude;
            let bound = f32_bound + (exact.abs() + f32_bound) / 256.0;
            let err = (g.to_f64() - exact).abs();
            assert!(
                err <= bound,
                "{what}[{i}]: got {g}, exact {exact}, error {err:e} > bound {bound:e}"
            );
        }
    }

    /// Checks every element of `got`, each a sum of at most `terms` terms in f32.
    fn check(&self, what: &str, got: &[f32], terms: usize) {
        assert_eq!(got.len(), self.value.len(), "{what}: length");
        for (i, &g) in got.iter().enumerate() {
            assert_within(
                &format!("{what}[{i}]"),
                g,
                self.value[i],
                self.magnitude[i],
                terms,
            );
        }
    }
}

/// Convolution and its input and weight gradients, term by term in f64 on the
/// bf16-rounded `x`, `w`, `gy` (the bias stays f32).
fn conv_reference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    gy: &[f32],
    g: &Conv2dGeometry,
) -> [Exact; 3] {
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let (ci_n, co_n) = (g.in_channels, g.out_channels);
    let mut y = Exact::zeros(g.output_shape().iter().product());
    let mut gx = Exact::zeros(x.len());
    let mut gw = Exact::zeros(w.len());
    for n in 0..g.batch {
        for co in 0..co_n {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let yi = ((n * co_n + co) * g.out_h + oy) * g.out_w + ox;
                    if let Some(b) = b {
                        y.add(yi, b[co] as f64);
                    }
                    let dy = rounded(gy[yi]);
                    for ci in 0..ci_n {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (
                                    (oy * sh + ky).wrapping_sub(ph),
                                    (ox * sw + kx).wrapping_sub(pw),
                                );
                                if iy >= g.in_h || ix >= g.in_w {
                                    continue;
                                }
                                let xi = ((n * ci_n + ci) * g.in_h + iy) * g.in_w + ix;
                                let wi = ((co * ci_n + ci) * kh + ky) * kw + kx;
                                let (xv, wv) = (rounded(x[xi]), rounded(w[wi]));
                                y.add(yi, xv * wv);
                                gx.add(xi, dy * wv);
                                gw.add(wi, dy * xv);
                            }
                        }
                    }
                }
            }
        }
    }
    [y, gx, gw]
}

/// The bias gradient, each channel's sum of `gy` (as it is: f32 sums, no rounding) in f64.
fn bias_reference(gy: &[f32], g: &Conv2dGeometry) -> Exact {
    let mut gb = Exact::zeros(g.out_channels);
    for (i, &v) in gy.iter().enumerate() {
        gb.add(i / (g.out_h * g.out_w) % g.out_channels, v as f64);
    }
    gb
}

fn geometry(input: [usize; 4], weight: [usize; 4], stride: usize, pad: usize) -> Conv2dGeometry {
    Conv2dGeometry::new(&input, &weight, [stride; 2], [pad; 2]).unwrap()
}

/// Forward, both gradients and the bias gradient of `g` on every instruction set, each
/// element against the f64 sum at the f32 accumulation bound (plus one rounding where
/// the result is bf16).
fn check_conv(g: &Conv2dGeometry, with_bias: bool, seed: u64) {
    let Some(isas) = isas_or_skip() else { return };
    let x = values(g.input_shape().iter().product(), seed);
    let w = values(g.weight_shape().iter().product(), seed + 1);
    let b = values(g.out_channels, seed + 2);
    let gy = values(g.output_shape().iter().product(), seed + 3);
    let b = with_bias.then_some(&b[..]);
    let [y, gx, gw] = conv_reference(&x, &w, b, &gy, g);
    let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
    let pixels = g.batch * g.out_h * g.out_w;
    for isa in isas {
        let cpu = Cpu::new(isa).unwrap();
        let what = |part: &str| format!("{isa} {g:?} bias {with_bias}: {part}");
        y.check(
            &what("y"),
            &conv::forward::<f32>(cpu, Values::F32(&x), &w, b, g),
            ckk + usize::from(with_bias),
        );
        let (got_gx, got_gw) =
            conv::backward::<f32>(cpu, Values::F32(&x), &w, Values::F32(&gy), g, true);
        let out_taps = g.out_channels * g.kernel[0] * g.kernel[1];
        gx.check(&what("dx"), &got_gx.unwrap(), out_taps);
        gw.check(&what("dw"), &got_gw, pixels);
    }
    // The public API, on the best instruction set: same checks, bias gradient included.
    let s = |v: &[f32]| Storage::f32(v.to_vec());
    let bias = b.map(s);
    let y_api = crate::conv2d::forward_bf16(&s(&x), &s(&w), bias.as_ref(), g, DType::F32).unwrap();
    y.check(
        "api y",
        &y_api.to_vec_f32().unwrap(),
        ckk + usize::from(with_bias),
    );
    let grads = crate::conv2d::backward_bf16(&s(&x), &s(&w), &s(&gy), g, with_bias, false).unwrap();
    assert!(grads.input.is_none());
    gw.check("api dw", &grads.weight.to_vec_f32().unwrap(), pixels);
    if with_bias {
        let gb = bias_reference(&gy, g);
        gb.check("api db", &grads.bias.unwrap().to_vec_f32().unwrap(), pixels);
    }
    // The same input and dL/dy stored as bf16 (the values the products read), as under
    // autocast: a bf16 output and a bf16 input gradient, one more rounding of each result.
    let to_bf16 = |v: &[f32]| v.iter().map(|&v| narrow(v)).collect::<Vec<_>>();
    let (x_bf16, gy_bf16) = (to_bf16(&x), to_bf16(&gy));
    let x_bf16 = Storage::bf16(x_bf16);
    let y_bf16 =
        crate::conv2d::forward_bf16(&x_bf16, &s(&w), bias.as_ref(), g, DType::BF16).unwrap();
    y.check_bf16(
        "api bf16 y",
        y_bf16.host_bf16("test", "y").unwrap(),
        ckk + usize::from(with_bias),
    );
    let grads = crate::conv2d::backward_bf16(
        &x_bf16,
        &s(&w),
        &Storage::bf16(gy_bf16.clone()),
        g,
        with_bias,
        true,
    )
    .unwrap();
    gx.check_bf16(
        "api bf16 dx, bf16 x and dy",
        grads.input.unwrap().host_bf16("test", "dx").unwrap(),
        g.out_channels * g.kernel[0] * g.kernel[1],
    );
    gw.check(
        "api dw, bf16 x and dy",
        &grads.weight.to_vec_f32().unwrap(),
        pixels,
    );
    if with_bias {
        let gb = bias_reference(&widened(&gy_bf16), g);
        gb.check(
            "api db, bf16 dy",
            &grads.bias.unwrap().to_vec_f32().unwrap(),
            pixels,
        );
    }
}

/// The implicit 3x3 path: input channels around multiples of 32, any output channels,
/// images from one pixel (a block spans several images) to wider than a block, and rows
/// of 16 and 32 pixels (whose f32 blocks the tiles store in place).
fn conv3x3_geometries() -> impl Strategy<Value = Conv2dGeometry> {
    let width = prop_oneof![1usize..=35, Just(16), Just(32)];
    (1usize..=3, 16usize..=40, 1usize..=40, 1usize..=12, width).prop_map(
        |(batch, c_in, c_out, h, w)| geometry([batch, c_in, h, w], [c_out, c_in, 3, 3], 1, 1),
    )
}

/// 1x1 kernels with stride 1: the image is the product's operand; padding gives a border
/// of bias.
fn pointwise_geometries() -> impl Strategy<Value = Conv2dGeometry> {
    (
        1usize..=3,
        1usize..=40,
        1usize..=40,
        1usize..=9,
        1usize..=9,
        0usize..=2,
    )
        .prop_map(|(batch, c_in, c_out, h, w, pad)| {
            geometry([batch, c_in, h, w], [c_out, c_in, 1, 1], 1, pad)
        })
}

/// Everything else goes through im2col: kernels 1-4 (3x3 with few channels too),
/// strides, paddings.
fn im2col_geometries() -> impl Strategy<Value = Conv2dGeometry> {
    let images = (1usize..=3, 1usize..=5, 1usize..=40, 1usize..=9, 1usize..=9);
    (images, 1usize..=4, 1usize..=3, 0usize..=2)
        .prop_map(|((batch, c_in, c_out, h, w), k, stride, pad)| {
            let k = k.min(h.min(w) + 2 * pad);
            geometry([batch, c_in, h, w], [c_out, c_in, k, k], stride, pad)
        })
        .prop_filter("the pointwise path", |g| {
            !(g.kernel == [1, 1] && g.stride == [1, 1])
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: RngSeed::Fixed(0x3a3),
        ..ProptestConfig::default()
    })]

    #[test]
    fn conv3x3_matches_f64_sums(
        g in conv3x3_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_conv(&g, with_bias, seed);
    }

    #[test]
    fn pointwise_conv_matches_f64_sums(
        g in pointwise_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_conv(&g, with_bias, seed);
    }

    #[test]
    fn im2col_conv_matches_f64_sums(
        g in im2col_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_conv(&g, with_bias, seed);
    }
}

#[test]
fn few_tap_layers_take_the_direct_path() {
    // airbench94's whitening layer (12 values per field) and a padded 1x1 over 16 channels
    // run as direct multiply-adds; 3x3 over 3 channels (27 values) and strides do not.
    let direct = super::few_taps::applies;
    assert!(direct(&geometry([1, 3, 32, 32], [24, 3, 2, 2], 1, 0)));
    assert!(direct(&geometry([1, 16, 5, 5], [8, 16, 1, 1], 1, 2)));
    assert!(!direct(&geometry([1, 3, 32, 32], [64, 3, 3, 3], 1, 1)));
    assert!(!direct(&geometry([1, 3, 32, 32], [24, 3, 2, 2], 2, 0)));
}

#[test]
fn network_conv_layers_match_f64_sums() {
    // The notebook's layer1.1 with enough images for several chunks per thread; a
    // 256 -> 512 layer at 5x5; its padded 1x1; the first layers of both networks
    // (3x3 3 -> 64, airbench's 2x2 3 -> 24 without padding) and airbench's 24 -> 64 at 31x31.
    check_conv(&geometry([6, 64, 32, 32], [64, 64, 3, 3], 1, 1), true, 1);
    check_conv(&geometry([3, 256, 5, 5], [512, 256, 3, 3], 1, 1), true, 2);
    check_conv(&geometry([3, 512, 5, 5], [512, 512, 1, 1], 1, 1), true, 3);
    check_conv(&geometry([4, 3, 32, 32], [64, 3, 3, 3], 1, 1), true, 4);
    check_conv(&geometry([4, 3, 32, 32], [24, 3, 2, 2], 1, 0), false, 5);
    check_conv(&geometry([2, 24, 31, 31], [64, 24, 3, 3], 1, 1), false, 6);
}

#[test]
fn small_images_take_the_lanes_and_match_f64_sums() {
    // Batches of at least conv3x3_lanes::MIN_BATCH images of at most MAX_PIXELS pixels:
    // a partial chunk of images per thread, channel counts off the blocks (odd, so the
    // last pair is half padding), 7x7 and 3x3 (airbench94's), 15x15 at the limit, and
    // single rows and columns (taps missing on one axis only).
    let lanes = super::conv3x3_lanes::applies;
    for (input, c_out, seed) in [
        ([70, 39, 7, 7], 36, 7),
        ([64, 33, 3, 3], 64, 8),
        ([64, 16, 15, 15], 20, 9),
        ([65, 17, 1, 6], 33, 10),
        ([66, 32, 5, 1], 5, 11),
    ] {
        let g = geometry(input, [c_out, input[1], 3, 3], 1, 1);
        assert!(lanes(g.batch, g.in_h * g.in_w), "{g:?}");
        check_conv(&g, seed % 2 == 1, seed);
    }
    assert!(!lanes(64, 16 * 16) && !lanes(63, 49));
    let weight_grad = super::conv3x3_lanes::takes_weight_grad;
    assert!(weight_grad(64, 7 * 7) && !weight_grad(64, 8 * 7) && !weight_grad(63, 9));
}

/// `y = x W^T + b` and its gradients, term by term in f64 on the rounded operands.
fn check_linear(n: usize, i: usize, o: usize, with_bias: bool, seed: u64) {
    let Some(isas) = isas_or_skip() else { return };
    let g = LinearGeometry::new(&[n, i], &[o, i]).unwrap();
    let (x, w, b, gy) = (
        values(n * i, seed),
        values(o * i, seed + 1),
        values(o, seed + 2),
        values(n * o, seed + 3),
    );
    let b = with_bias.then_some(&b[..]);
    let (mut y, mut gx, mut gw) = (
        Exact::zeros(n * o),
        Exact::zeros(n * i),
        Exact::zeros(o * i),
    );
    for r in 0..n {
        for c in 0..o {
            if let Some(b) = b {
                y.add(r * o + c, b[c] as f64);
            }
            for k in 0..i {
                let (xv, wv, dy) = (
                    rounded(x[r * i + k]),
                    rounded(w[c * i + k]),
                    rounded(gy[r * o + c]),
                );
                y.add(r * o + c, xv * wv);
                gx.add(r * i + k, dy * wv);
                gw.add(c * i + k, dy * xv);
            }
        }
    }
    for isa in isas {
        let cpu = Cpu::new(isa).unwrap();
        let what = |part: &str| format!("{isa} linear {n}x{i} -> {o}: {part}");
        y.check(
            &what("y"),
            &linear::forward(cpu, Values::F32(&x), &w, b, &g).unwrap(),
            i + usize::from(with_bias),
        );
        gx.check(
            &what("dx"),
            &linear::input_grad(cpu, Values::F32(&gy), &w, &g).unwrap(),
            o,
        );
        gw.check(
            &what("dw"),
            &linear::weight_grad(cpu, Values::F32(&gy), Values::F32(&x), &g).unwrap(),
            n,
        );
    }
    let s = |v: &[f32]| Storage::f32(v.to_vec());
    let bias = b.map(s);
    let y_api = crate::linear::forward_bf16(&s(&x), &s(&w), bias.as_ref(), &g).unwrap();
    y.check(
        "api y",
        &y_api.to_vec_f32().unwrap(),
        i + usize::from(with_bias),
    );
    let grads = crate::linear::backward_bf16(&s(&x), &s(&w), &s(&gy), &g, with_bias, true).unwrap();
    gx.check("api dx", &grads.input.unwrap().to_vec_f32().unwrap(), o);
    gw.check("api dw", &grads.weight.to_vec_f32().unwrap(), n);
    let check_bias = |what: &str, gb: Option<Storage>, gy: &[f32]| {
        if let Some(gb) = gb {
            let gb = gb.to_vec_f32().unwrap();
            for c in 0..o {
                let (exact, magnitude) = (0..n).fold((0.0, 0.0), |(e, m), r| {
                    (e + gy[r * o + c] as f64, m + (gy[r * o + c] as f64).abs())
                });
                assert_within(&format!("{what}[{c}]"), gb[c], exact, magnitude, n);
            }
        }
    };
    check_bias("api db", grads.bias, &gy);
    // Under autocast: a bf16 input and dL/dy holding the values the products read; the
    // input gradient is bf16, one more rounding.
    let to_bf16 = |v: &[f32]| Storage::bf16(v.iter().map(|&v| narrow(v)).collect());
    let (x_bf16, gy_bf16) = (to_bf16(&x), to_bf16(&gy));
    let grads =
        crate::linear::backward_bf16(&x_bf16, &s(&w), &gy_bf16, &g, with_bias, true).unwrap();
    gx.check_bf16(
        "api bf16 dx, bf16 x and dy",
        grads.input.unwrap().host_bf16("test", "dx").unwrap(),
        o,
    );
    gw.check(
        "api dw, bf16 x and dy",
        &grads.weight.to_vec_f32().unwrap(),
        n,
    );
    check_bias(
        "api db, bf16 dy",
        grads.bias,
        &gy_bf16.to_vec_f32().unwrap(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: RngSeed::Fixed(0x11),
        ..ProptestConfig::default()
    })]

    #[test]
    fn linear_matches_f64_sums(
        n in 1usize..=70,
        i in 1usize..=100,
        o in 1usize..=70,
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_linear(n, i, o, with_bias, seed);
    }
}

#[test]
fn network_linear_layers_match_f64_sums() {
    // The notebook's 8192 -> 1024 at batch 32 would take minutes in f64: a slice of it
    // with the same depth, and its two smaller layers.
    check_linear(32, 8192, 40, true, 7);
    check_linear(32, 1024, 128, true, 8);
    check_linear(33, 128, 10, true, 9);
}

#[test]
fn wrong_dtype_and_device_are_errors_not_panics() {
    let g = LinearGeometry::new(&[1, 2], &[1, 2]).unwrap();
    let f64s = Storage::f64(vec![1.0, 2.0]);
    let err = crate::linear::forward_bf16(&f64s, &f64s, None, &g).unwrap_err();
    assert!(
        matches!(err, crate::Error::Mismatch { op: "linear", .. }),
        "{err}"
    );
    let cg = geometry([1, 1, 2, 2], [1, 1, 1, 1], 1, 0);
    let err = crate::conv2d::forward_bf16(
        &Storage::f32(vec![0.0; 3]),
        &Storage::f32(vec![0.0]),
        None,
        &cg,
        DType::F32,
    )
    .unwrap_err();
    assert!(
        matches!(err, crate::Error::Shape { op: "conv2d", .. }),
        "{err}"
    );
}

#[test]
fn a_cpu_without_bf16_instructions_gets_one_clear_error() {
    // On this machine the check passes (and the message is not built); where it fails,
    // the error must name what is missing rather than crash with SIGILL.
    match Isa::best() {
        Ok(isa) => println!("bf16 runs on {isa} here; available: {:?}", Isa::available()),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("AMX") && message.contains("AVX512-BF16"),
                "{message}"
            );
            println!("SKIPPED: {message}");
        }
    }
}

/// bf16 activations: `values` rounded with `narrow`, with every tenth one a bf16
/// subnormal and every tenth a zero, of either sign. The packers take bf16 subnormals as
/// they are, while the f32 path's rounding (`VCVTNE2PS2BF16`) flushes their widened
/// values to zero; both give the same sums because the dot-product instructions read
/// bf16 subnormals as zero, which the bit-for-bit comparisons below check.
fn activations(len: usize, seed: u64) -> Vec<bf16> {
    values(len, seed)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let sign = if v < 0.0 { 0x8000 } else { 0 };
            match i % 10 {
                3 => bf16::from_bits(sign | ((v.to_bits() >> 9) as u16 & 0x7f).max(1)),
                7 => bf16::from_bits(sign),
                _ => narrow(v),
            }
        })
        .collect()
}

fn widened(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|&v| widen(v)).collect()
}

/// Asserts `got` and `want` hold the same f32 bits, naming the first element that differs.
fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}[{i}]: {} ({:#x}), expected {} ({:#x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// Asserts that `got` is, bit for bit, `narrow` of each of `sums`.
fn assert_narrowed(what: &str, got: &[bf16], sums: &[f32]) {
    assert_eq!(got.len(), sums.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != narrow(sums[i]).to_bits()) {
        panic!(
            "{what}[{i}]: {} ({:#x}), expected narrow({:e}) = {:#x}",
            got[i],
            got[i].to_bits(),
            sums[i],
            narrow(sums[i]).to_bits()
        );
    }
}

/// bf16 activations `x` and their gradients `gy` against the f32 path on the widened
/// values, on every instruction set: the same f32 output and gradients bit for bit, and a
/// bf16 output or input gradient (from either input) that is `narrow` of that f32 result
/// bit for bit; then the same through the public functions on the best instruction set.
fn check_bf16_conv(g: &Conv2dGeometry, x: &[bf16], gy: &[bf16], bias: Option<&[f32]>, seed: u64) {
    let Some(isas) = isas_or_skip() else { return };
    let (wide, gy_wide) = (widened(x), widened(gy));
    let w = values(g.weight_shape().iter().product(), seed + 1);
    for isa in isas {
        let cpu = Cpu::new(isa).unwrap();
        let what = |part: &str| format!("{isa} {g:?} bias {}: {part}", bias.is_some());
        let y = conv::forward::<f32>(cpu, Values::F32(&wide), &w, bias, g);
        let y_of_bf16 = conv::forward::<f32>(cpu, Values::Bf16(x), &w, bias, g);
        assert_same_bits(&what("f32 y of the bf16 x"), &y_of_bf16, &y);
        for (input, x) in [("bf16", Values::Bf16(x)), ("f32", Values::F32(&wide))] {
            let y_bf16 = conv::forward::<bf16>(cpu, x, &w, bias, g);
            assert_narrowed(&what(&format!("bf16 y of the {input} x")), &y_bf16, &y);
        }
        // The f32 path: f32 input, f32 dL/dy, f32 gradients.
        let (gx, gw) =
            conv::backward::<f32>(cpu, Values::F32(&wide), &w, Values::F32(&gy_wide), g, true);
        let gx = gx.unwrap();
        for (operands, x, gy) in [
            ("bf16 x, bf16 dy", Values::Bf16(x), Values::Bf16(gy)),
            ("f32 x, bf16 dy", Values::F32(&wide), Values::Bf16(gy)),
            ("bf16 x, f32 dy", Values::Bf16(x), Values::F32(&gy_wide)),
        ] {
            let (gx_f32, gw_of) = conv::backward::<f32>(cpu, x, &w, gy, g, true);
            assert_same_bits(&what(&format!("f32 dx, {operands}")), &gx_f32.unwrap(), &gx);
            assert_same_bits(&what(&format!("dw, {operands}")), &gw_of, &gw);
            let (gx_bf16, gw_of) = conv::backward::<bf16>(cpu, x, &w, gy, g, true);
            assert_narrowed(
                &what(&format!("bf16 dx, {operands}")),
                &gx_bf16.unwrap(),
                &gx,
            );
            assert_same_bits(&what(&format!("dw (bf16 dx), {operands}")), &gw_of, &gw);
        }
        let (gx_bf16, _) =
            conv::backward::<bf16>(cpu, Values::F32(&wide), &w, Values::F32(&gy_wide), g, true);
        assert_narrowed(&what("bf16 dx, f32 x and dy"), &gx_bf16.unwrap(), &gx);
    }
    let (x_bf16, x_f32) = (Storage::bf16(x.to_vec()), Storage::f32(wide));
    let (gy_bf16, gy_f32) = (Storage::bf16(gy.to_vec()), Storage::f32(gy_wide));
    let w = Storage::f32(w);
    let bias = bias.map(|b| Storage::f32(b.to_vec()));
    let forward =
        |x: &Storage, output| crate::conv2d::forward_bf16(x, &w, bias.as_ref(), g, output).unwrap();
    let y = forward(&x_f32, DType::F32).to_vec_f32().unwrap();
    let y_bf16 = forward(&x_bf16, DType::BF16);
    assert_narrowed("api bf16 y", y_bf16.host_bf16("test", "y").unwrap(), &y);
    let has_bias = bias.is_some();
    // The f32 path, then autocast's bf16 activations and gradients: the input gradient
    // has the input's dtype; the weight and bias gradients are f32, bit for bit the same.
    let grads = |x: &Storage, gy: &Storage| {
        let grads = crate::conv2d::backward_bf16(x, &w, gy, g, has_bias, true).unwrap();
        [grads.input, Some(grads.weight), grads.bias]
    };
    assert_grads_in_dtypes(grads, [&x_bf16, &x_f32], [&gy_bf16, &gy_f32], has_bias);
}

/// Checks a layer's public backward, `grads(x, dy) = [dx, dw, db]`, on the same values
/// stored as bf16 and f32 (`[bf16, f32]` for `x` and for `dy`): every mix of dtypes gives
/// the f32 path's gradients in the dtypes they should have, the input gradient in `x`'s
/// (`narrow` of the f32 one where bf16), the weight and bias gradients f32, bit for bit.
fn assert_grads_in_dtypes(
    grads: impl Fn(&Storage, &Storage) -> [Option<Storage>; 3],
    [x_bf16, x_f32]: [&Storage; 2],
    [gy_bf16, gy_f32]: [&Storage; 2],
    has_bias: bool,
) {
    let f32s = |s: &Option<Storage>| s.as_ref().unwrap().to_vec_f32().unwrap();
    let want = grads(x_f32, gy_f32);
    assert_eq!(want[2].is_some(), has_bias);
    let want_gx = f32s(&want[0]);
    for (operands, x, gy) in [
        ("bf16 x, bf16 dy", x_bf16, gy_bf16),
        ("bf16 x, f32 dy", x_bf16, gy_f32),
        ("f32 x, bf16 dy", x_f32, gy_bf16),
    ] {
        let what = |part: &str| format!("api {part}, {operands}");
        let [gx, gw, gb] = grads(x, gy);
        let dx = gx.as_ref().expect("an input gradient");
        assert_eq!(dx.dtype(), x.dtype(), "{}", what("dx dtype"));
        match x.dtype() {
            DType::BF16 => {
                assert_narrowed(&what("dx"), dx.host_bf16("test", "dx").unwrap(), &want_gx)
            }
            _ => assert_same_bits(&what("dx"), &f32s(&gx), &want_gx),
        }
        for (part, got, want) in [("dw", gw, &want[1]), ("db", gb, &want[2])] {
            assert_eq!(got.is_some(), want.is_some(), "{}", what(part));
            if let Some(g) = &got {
                assert_eq!(g.dtype(), DType::F32, "{}", what(part));
                assert_same_bits(&what(part), &f32s(&got), &f32s(want));
            }
        }
    }
}

fn check_bf16_conv_random(g: &Conv2dGeometry, with_bias: bool, seed: u64) {
    let x = activations(g.input_shape().iter().product(), seed);
    let gy = activations(g.output_shape().iter().product(), seed + 3);
    let b = values(g.out_channels, seed + 2);
    check_bf16_conv(g, &x, &gy, with_bias.then_some(&b[..]), seed);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: RngSeed::Fixed(0xac7),
        ..ProptestConfig::default()
    })]

    // The three paths, over the geometries of the f64 tests above.
    #[test]
    fn conv3x3_bf16_activations_match_the_f32_path(
        g in conv3x3_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_bf16_conv_random(&g, with_bias, seed);
    }

    #[test]
    fn pointwise_bf16_activations_match_the_f32_path(
        g in pointwise_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_bf16_conv_random(&g, with_bias, seed);
    }

    #[test]
    fn im2col_bf16_activations_match_the_f32_path(
        g in im2col_geometries(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_bf16_conv_random(&g, with_bias, seed);
    }
}

#[test]
fn network_conv_layers_with_bf16_activations_match_the_f32_path() {
    // airbench94's hot layers at a small batch (15x15 and 7x7 go through the scratch),
    // a 32-wide layer whose f32 blocks are stored in place, and its first layer.
    check_bf16_conv_random(&geometry([3, 64, 15, 15], [256, 64, 3, 3], 1, 1), true, 21);
    check_bf16_conv_random(&geometry([3, 256, 7, 7], [256, 256, 3, 3], 1, 1), false, 22);
    check_bf16_conv_random(&geometry([2, 64, 32, 32], [64, 64, 3, 3], 1, 1), true, 23);
    check_bf16_conv_random(&geometry([4, 24, 31, 31], [64, 24, 3, 3], 1, 1), false, 24);
}

/// bf16 edge values: zeros of both signs, subnormals, the largest finite values,
/// infinities and a NaN (quiet, as `narrow` makes every bf16 NaN).
const EDGES: [u16; 12] = [
    0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0xff7f, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0x3f80, 0xbf81,
];

#[test]
fn bf16_edge_values_match_the_f32_path() {
    // Every edge value in every position of a few images, on each path: the infinities
    // and the NaN spread NaNs and infinities through the outputs, the subnormals must
    // count as zeros in both paths.
    let paths = [
        geometry([2, 32, 5, 7], [8, 32, 3, 3], 1, 1),
        geometry([2, 16, 3, 16], [33, 16, 3, 3], 1, 1),
        geometry([2, 5, 4, 4], [8, 5, 1, 1], 1, 1),
        geometry([2, 3, 6, 6], [8, 3, 3, 3], 2, 1),
    ];
    // Mostly ordinary values, so that not every output is NaN.
    let with_edges = |len: usize, seed: u64| -> Vec<bf16> {
        let ordinary = activations(len, seed);
        (0..len)
            .map(|j| match j % 29 {
                r if r < EDGES.len() && (j / 29) % 3 == 0 => bf16::from_bits(EDGES[r]),
                _ => ordinary[j],
            })
            .collect()
    };
    for (i, g) in paths.iter().enumerate() {
        let seed = 40 + i as u64;
        let x = with_edges(g.input_shape().iter().product(), seed);
        let gy = with_edges(g.output_shape().iter().product(), seed + 20);
        let bias: Vec<f32> = (0..g.out_channels).map(|c| [0.5, -0.0][c % 2]).collect();
        check_bf16_conv(g, &x, &gy, Some(&bias), seed + 10);
        // The edge values in dL/dy alone, so that the NaNs of x do not hide its own.
        let x = activations(g.input_shape().iter().product(), seed);
        check_bf16_conv(g, &x, &gy, Some(&bias), seed + 10);
    }
}

#[test]
fn bf16_subnormals_and_negative_zeros_sum_to_the_f32_path_zeros() {
    // Only negative subnormals and zeros against positive weights, and a bias of -0.0:
    // every product is a zero, and whether the sum is -0.0 or +0.0 depends on the sign
    // the products give those inputs. The packers keep the subnormals (read as zeros by
    // the instructions) where the f32 path flushes them to signed zeros. dL/dy is made
    // the same way, so every product of the input gradient is a zero too (and the bias
    // gradient sums the widened subnormals in f32 either way).
    let tiny = |len: usize| -> Vec<bf16> {
        (0..len)
            .map(|j| bf16::from_bits(0x8000 | (j % 0x80) as u16))
            .collect()
    };
    for g in [
        geometry([1, 32, 4, 5], [4, 32, 3, 3], 1, 1),
        geometry([1, 4, 3, 3], [4, 4, 1, 1], 1, 0),
        geometry([1, 3, 5, 5], [4, 3, 2, 2], 1, 0),
    ] {
        let x = tiny(g.input_shape().iter().product());
        let gy = tiny(g.output_shape().iter().product());
        let bias = vec![-0.0f32; g.out_channels];
        check_bf16_conv(&g, &x, &gy, Some(&bias), 60);
    }
}

/// A bf16 input `x` of a linear layer and a bf16 `dL/dy` against the f32 path on their
/// widened values, bit for bit (a bf16 input gradient `narrow` of the f32 one), on every
/// instruction set and through the public functions.
fn check_bf16_linear(n: usize, i: usize, o: usize, with_bias: bool, seed: u64) {
    let Some(isas) = isas_or_skip() else { return };
    let g = LinearGeometry::new(&[n, i], &[o, i]).unwrap();
    let (x, gy) = (activations(n * i, seed), activations(n * o, seed + 3));
    let (wide, gy_wide) = (widened(&x), widened(&gy));
    let (w, b) = (values(o * i, seed + 1), values(o, seed + 2));
    let b = with_bias.then_some(&b[..]);
    for isa in isas {
        let cpu = Cpu::new(isa).unwrap();
        let what = |part: &str| format!("{isa} linear {n}x{i} -> {o}: {part}");
        assert_same_bits(
            &what("y"),
            &linear::forward(cpu, Values::Bf16(&x), &w, b, &g).unwrap(),
            &linear::forward(cpu, Values::F32(&wide), &w, b, &g).unwrap(),
        );
        assert_same_bits(
            &what("dw"),
            &linear::weight_grad(cpu, Values::Bf16(&gy), Values::Bf16(&x), &g).unwrap(),
            &linear::weight_grad(cpu, Values::F32(&gy_wide), Values::F32(&wide), &g).unwrap(),
        );
        assert_same_bits(
            &what("dx"),
            &linear::input_grad(cpu, Values::Bf16(&gy), &w, &g).unwrap(),
            &linear::input_grad(cpu, Values::F32(&gy_wide), &w, &g).unwrap(),
        );
    }
    let (x_bf16, x_f32) = (Storage::bf16(x), Storage::f32(wide));
    let (gy_bf16, gy_f32) = (Storage::bf16(gy), Storage::f32(gy_wide));
    let w = Storage::f32(w);
    let bias = b.map(|b| Storage::f32(b.to_vec()));
    let forward = |x: &Storage| crate::linear::forward_bf16(x, &w, bias.as_ref(), &g).unwrap();
    let y = forward(&x_bf16);
    assert_eq!(y.dtype(), DType::F32, "the logits stay f32");
    assert_same_bits(
        "api y of the bf16 x",
        &y.to_vec_f32().unwrap(),
        &forward(&x_f32).to_vec_f32().unwrap(),
    );
    let grads = |x: &Storage, gy: &Storage| {
        let grads = crate::linear::backward_bf16(x, &w, gy, &g, with_bias, true).unwrap();
        [grads.input, Some(grads.weight), grads.bias]
    };
    assert_grads_in_dtypes(grads, [&x_bf16, &x_f32], [&gy_bf16, &gy_f32], with_bias);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: RngSeed::Fixed(0x1b),
        ..ProptestConfig::default()
    })]

    #[test]
    fn linear_bf16_activations_match_the_f32_path(
        n in 1usize..=70,
        i in 1usize..=100,
        o in 1usize..=70,
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_bf16_linear(n, i, o, with_bias, seed);
    }
}

#[test]
fn network_linear_layers_with_bf16_activations_match_the_f32_path() {
    check_bf16_linear(32, 8192, 40, true, 71);
    check_bf16_linear(33, 128, 10, true, 72);
}

#[test]
fn bf16_sanity_against_f64_sums_of_a_large_layer() {
    // check_conv's bf16 checks on a layer with several chunks per thread: the API with a
    // bf16 input and a bf16 output against f64 sums, at the f32 bound plus one rounding.
    check_conv(&geometry([4, 64, 15, 15], [64, 64, 3, 3], 1, 1), true, 80);
}

#[test]
fn wrong_dtypes_of_bf16_operands_are_errors_naming_the_operand() {
    let g = geometry([1, 1, 2, 2], [1, 1, 1, 1], 1, 0);
    let (x, w, b) = (
        Storage::f32(vec![1.0; 4]),
        Storage::f32(vec![1.0]),
        Storage::f32(vec![0.0]),
    );
    let to_bf16 = |s: &Storage| s.to_dtype(DType::BF16).unwrap();
    let to_f64 = |s: &Storage| s.to_dtype(DType::F64).unwrap();
    let mismatch = |result: crate::Result<Storage>, operand: &str| {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::Mismatch { op: "conv2d", .. })
                && err.to_string().contains(operand),
            "{operand}: {err}"
        );
    };
    let forward = crate::conv2d::forward_bf16;
    let err = forward(&x, &w, Some(&b), &g, DType::F64).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "conv2d", .. })
            && err.to_string().contains("f64"),
        "{err}"
    );
    let err = forward(&to_f64(&x), &w, None, &g, DType::BF16).unwrap_err();
    assert!(err.to_string().contains("input is f64"), "{err}");
    assert!(err.to_string().contains("f32 or bf16"), "{err}");
    mismatch(forward(&to_f64(&x), &w, None, &g, DType::F32), "input");
    mismatch(forward(&x, &to_bf16(&w), None, &g, DType::BF16), "weight");
    mismatch(
        forward(&to_bf16(&x), &w, Some(&to_bf16(&b)), &g, DType::BF16),
        "bias",
    );
    let backward = |x: &Storage, w: &Storage, gy: &Storage| {
        crate::conv2d::backward_bf16(x, w, gy, &g, true, true).map(|grads| grads.weight)
    };
    // dL/dy may be f32 or bf16 whatever the input's dtype; f64 is refused.
    mismatch(backward(&to_bf16(&x), &w, &to_f64(&x)), "grad_out is f64");
    mismatch(backward(&x, &w, &to_f64(&x)), "grad_out is f64");
    mismatch(backward(&to_bf16(&x), &to_bf16(&w), &x), "weight");
    mismatch(backward(&to_f64(&x), &w, &x), "input");
    mismatch(backward(&to_f64(&x), &w, &to_bf16(&x)), "input");

    let lg = LinearGeometry::new(&[1, 2], &[1, 2]).unwrap();
    let (x, w, gy) = (
        Storage::f32(vec![1.0, 2.0]),
        Storage::f32(vec![1.0, 1.0]),
        Storage::f32(vec![1.0]),
    );
    let linear_mismatch = |result: crate::Result<Storage>, operand: &str| {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::Mismatch { op: "linear", .. })
                && err.to_string().contains(operand),
            "{operand}: {err}"
        );
    };
    linear_mismatch(
        crate::linear::forward_bf16(&to_bf16(&x), &to_bf16(&w), None, &lg),
        "weight",
    );
    linear_mismatch(
        crate::linear::forward_bf16(&to_f64(&x), &w, None, &lg),
        "input",
    );
    let linear_backward = |x: &Storage, gy: &Storage| {
        crate::linear::backward_bf16(x, &w, gy, &lg, true, true).map(|grads| grads.weight)
    };
    linear_mismatch(
        linear_backward(&to_bf16(&x), &to_f64(&gy)),
        "grad_out is f64",
    );
    linear_mismatch(linear_backward(&x, &to_f64(&gy)), "grad_out is f64");
    linear_mismatch(linear_backward(&to_f64(&x), &to_bf16(&gy)), "input");
}

#[test]
fn the_bias_gradient_alone_of_a_bf16_gradient_is_the_backwards_f32_sum() {
    // The frozen first layer's path (conv2d::bias_grad) against the full backward's bias
    // gradient and against the f32 sums of the widened values: the same bits.
    if isas_or_skip().is_none() {
        return;
    }
    let g = geometry([3, 3, 8, 8], [24, 3, 2, 2], 1, 0);
    let gy = activations(g.output_shape().iter().product(), 9);
    let x = Storage::f32(values(g.input_shape().iter().product(), 10));
    let w = Storage::f32(values(g.weight_shape().iter().product(), 11));
    let gy_bf16 = Storage::bf16(gy.clone());
    let alone = crate::conv2d::bias_grad(&gy_bf16, &g).unwrap();
    assert_eq!(alone.dtype(), DType::F32);
    let full = crate::conv2d::backward_bf16(&x, &w, &gy_bf16, &g, true, false).unwrap();
    let widened = crate::conv2d::bias_grad(&Storage::f32(widened(&gy)), &g).unwrap();
    let bits = |s: &Storage| -> Vec<u32> {
        let v = s.to_vec_f32().unwrap();
        v.into_iter().map(f32::to_bits).collect()
    };
    assert_eq!(bits(&alone), bits(&full.bias.unwrap()));
    assert_eq!(bits(&alone), bits(&widened));
}
