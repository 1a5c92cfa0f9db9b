use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::*;

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
