use super::*;
use crate::test_util::values;

/// `op(x)[i][j]` of a row-major buffer that stores op(x) (`rows x cols`) or its transpose.
fn at(x: &[f64], transposed: bool, rows: usize, cols: usize, i: usize, j: usize) -> f64 {
    if transposed {
        x[j * rows + i]
    } else {
        x[i * cols + j]
    }
}

#[allow(clippy::too_many_arguments)]
fn naive(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    at_: bool,
    b: &[f64],
    bt: bool,
    c0: &[f64],
    accumulate: bool,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| at(a, at_, m, k, i, p) * at(b, bt, k, n, p, j))
                .sum();
            c[i * n + j] = dot + if accumulate { c0[i * n + j] } else { 0.0 };
        }
    }
    c
}

fn check(m: usize, n: usize, k: usize, parallel: bool) {
    for a_t in [false, true] {
        for b_t in [false, true] {
            for accumulate in [false, true] {
                let a = values(m * k, 1 + m as u64);
                let b = values(k * n, 2 + n as u64);
                let c0 = values(m * n, 3 + k as u64);
                let expected = naive(m, n, k, &a, a_t, &b, b_t, &c0, accumulate);

                let mut c = c0.clone();
                gemm(m, n, k, &a, a_t, &b, b_t, &mut c, accumulate, parallel);
                for (got, want) in c.iter().zip(&expected) {
                    assert!(
                        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                        "f64 m={m} n={n} k={k} a_t={a_t} b_t={b_t} acc={accumulate}: {got} vs {want}"
                    );
                }

                let (a32, b32): (Vec<f32>, Vec<f32>) = (
                    a.iter().map(|&x| x as f32).collect(),
                    b.iter().map(|&x| x as f32).collect(),
                );
                let mut c32: Vec<f32> = c0.iter().map(|&x| x as f32).collect();
                gemm(
                    m, n, k, &a32, a_t, &b32, b_t, &mut c32, accumulate, parallel,
                );
                for (got, want) in c32.iter().zip(&expected) {
                    assert!(
                        (*got as f64 - want).abs() <= 1e-5 * (k as f64 + 1.0),
                        "f32 m={m} n={n} k={k} a_t={a_t} b_t={b_t} acc={accumulate}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn hand_computed_product() {
    let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
    let b = [7.0f64, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3x2
    let mut c = [1.0f64; 4];
    gemm(2, 2, 3, &a, false, &b, false, &mut c, true, false);
    assert_eq!(c, [59.0, 65.0, 140.0, 155.0]);
}

#[test]
fn odd_sizes_match_naive_loop_in_every_transpose_combination() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (3, 5, 7),
        (7, 3, 1),
        (1, 9, 4),
        (13, 1, 6),
        (17, 19, 23),
    ] {
        check(m, n, k, false);
    }
}

#[test]
fn large_parallel_products_match_naive_loop() {
    check(67, 129, 45, true);
    check(130, 33, 97, true);
}

#[test]
fn empty_inner_dimension_gives_zero_or_keeps_c() {
    let mut c = [5.0f32; 6];
    gemm(2, 3, 0, &[], false, &[], false, &mut c, true, false);
    assert_eq!(c, [5.0; 6]);
    gemm(2, 3, 0, &[], false, &[], false, &mut c, false, false);
    assert_eq!(c, [0.0; 6]);
}

#[test]
fn overwrite_ignores_nan_already_in_c() {
    let a = values(5 * 4, 7);
    let b = values(4 * 6, 8);
    let mut c = vec![f64::NAN; 5 * 6];
    gemm(5, 6, 4, &a, false, &b, true, &mut c, false, false);
    let expected = naive(5, 6, 4, &a, false, &b, true, &[], false);
    for (got, want) in c.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
#[should_panic(expected = "too short")]
fn short_buffer_panics_instead_of_reading_out_of_bounds() {
    let mut c = [0.0f32; 4];
    gemm(
        2, 2, 3, &[1.0; 5], false, &[1.0; 6], false, &mut c, false, false,
    );
}

#[test]
fn strided_windows_match_naive_loop() {
    // Multiply windows of wider buffers: op(a) is 4x3 inside rows of 7, op(b) is 3x5
    // inside rows of 9, c is 4x5 inside rows of 8; the gaps must stay untouched.
    let (m, n, k) = (4, 5, 3);
    for a_t in [false, true] {
        for b_t in [false, true] {
            let (a_rows, a_cols) = if a_t { (k, m) } else { (m, k) };
            let (b_rows, b_cols) = if b_t { (n, k) } else { (k, n) };
            let a_wide = values(a_rows * 7, 11);
            let b_wide = values(b_rows * 9, 12);
            let pack = |wide: &[f64], rows: usize, cols: usize, stride: usize| -> Vec<f64> {
                (0..rows)
                    .flat_map(|r| wide[r * stride..r * stride + cols].to_vec())
                    .collect()
            };
            let a = pack(&a_wide, a_rows, a_cols, 7);
            let b = pack(&b_wide, b_rows, b_cols, 9);
            let c0 = values(m * 8, 13);
            let expected = naive(m, n, k, &a, a_t, &b, b_t, &pack(&c0, m, n, 8), true);

            let mut c = c0.clone();
            let op = |data, stride, t| {
                if t {
                    Operand::t(data, stride)
                } else {
                    Operand::new(data, stride)
                }
            };
            // The last stored row may end right after its window.
            gemm_strided(
                m,
                n,
                k,
                op(&a_wide[..(a_rows - 1) * 7 + a_cols], 7, a_t),
                op(&b_wide, 9, b_t),
                &mut c[..(m - 1) * 8 + n],
                8,
                true,
                false,
            );
            for i in 0..m {
                for j in 0..8 {
                    let got = c[i * 8 + j];
                    if j < n {
                        let want = expected[i * n + j];
                        assert!(
                            (got - want).abs() < 1e-12,
                            "a_t={a_t} b_t={b_t} c[{i}][{j}]"
                        );
                    } else {
                        assert_eq!(got, c0[i * 8 + j], "gap c[{i}][{j}] was written");
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "too short")]
fn overlapping_output_rows_are_refused() {
    let mut c = [0.0f64; 16];
    gemm_strided(
        2,
        3,
        1,
        Operand::new(&[1.0; 2], 1),
        Operand::new(&[1.0; 3], 3),
        &mut c,
        2,
        false,
        false,
    );
}

#[test]
fn a_new_buffer_holds_the_product_whatever_the_orientation_and_size() {
    // Sizes on both sides of the threading threshold, and every transpose combination.
    for (m, n, k) in [(3, 5, 4), (70, 90, 80), (1, 1, 1)] {
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let (a, b) = (values(m * k, 11), values(k * n, 12));
            let a_op = if a_t {
                Operand::t(&a, m)
            } else {
                Operand::new(&a, k)
            };
            let b_op = if b_t {
                Operand::t(&b, k)
            } else {
                Operand::new(&b, n)
            };
            let c = gemm_new(m, n, k, a_op, b_op, true);
            let expected = naive(m, n, k, &a, a_t, &b, b_t, &[], false);
            assert_eq!(c.len(), expected.len());
            for (got, want) in c.iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "{m}x{n}x{k}: {got} vs {want}");
            }
        }
    }
    // No depth: zeros. No rows: nothing.
    assert_eq!(
        gemm_new::<f64>(2, 3, 0, Operand::new(&[], 0), Operand::new(&[], 3), false),
        [0.0; 6]
    );
    assert!(gemm_new::<f32>(
        0,
        3,
        2,
        Operand::new(&[], 2),
        Operand::new(&[0.0; 6], 3),
        false
    )
    .is_empty());
}
