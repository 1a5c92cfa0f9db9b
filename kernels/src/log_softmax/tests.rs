use super::*;
use crate::test_util::{assert_close_abs, pseudo_random};

const LN2: f64 = std::f64::consts::LN_2;

fn ln(x: f64) -> f64 {
    x.ln()
}

/// Row [0, ln 2, ln 3]: exp gives [1, 2, 3], sum 6, so y = [ln(1/6), ln(2/6), ln(3/6)]
/// = [-ln 6, -ln 3, -ln 2]. Row [5, 5, 5]: three equal logits, y = -ln 3 each
/// (log-softmax ignores a constant shift).
#[test]
fn forward_matches_hand_values() {
    let x = Storage::f64(vec![0.0, LN2, ln(3.0), 5.0, 5.0, 5.0]);
    let y = forward(&x, 2, 3).unwrap().to_vec_f64().unwrap();
    let want = [-ln(6.0), -ln(3.0), -LN2, -ln(3.0), -ln(3.0), -ln(3.0)];
    assert_close_abs(&y, &want, 1e-15);
}

/// Rows [1e4, -1e4, 0] and [-1e4, -1e4]: after subtracting the max the exponents are
/// [0, -2e4, -1e4] (exp underflows to exactly 0) and [0, 0], so lse = 1e4 + ln 1 = 1e4 and
/// -1e4 + ln 2: y = [0, -2e4, -1e4] exactly, and [-ln 2, -ln 2]. A naive exp(1e4) is inf.
#[test]
fn huge_logits_stay_finite_and_exact() {
    let y = forward(&Storage::f32(vec![1e4, -1e4, 0.0]), 1, 3).unwrap();
    assert_eq!(y, Storage::f32(vec![0.0, -2e4, -1e4]));
    let y = forward(&Storage::f64(vec![1e4, -1e4, 0.0]), 1, 3).unwrap();
    assert_eq!(y, Storage::f64(vec![0.0, -2e4, -1e4]));
    let y = forward(&Storage::f64(vec![-1e4, -1e4]), 1, 2).unwrap();
    assert_close_abs(&y.to_vec_f64().unwrap(), &[-LN2, -LN2], 1e-12);
}

/// With p = softmax([0, ln 2, ln 3]) = [1/6, 1/3, 1/2] and grad_x = g - p * sum(g):
/// g = [1, 0, 0] gives [1 - 1/6, -1/3, -1/2]; g = [1, 1, 1] (d sum(y)) gives 1 - 3p =
/// [1/2, 0, -1/2].
#[test]
fn backward_matches_hand_values() {
    let x = Storage::f64(vec![0.0, LN2, ln(3.0), 0.0, LN2, ln(3.0)]);
    let y = forward(&x, 2, 3).unwrap();
    let g = Storage::f64(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let dx = backward(&y, &g, 2, 3).unwrap().to_vec_f64().unwrap();
    assert_close_abs(&dx, &[5.0 / 6.0, -1.0 / 3.0, -0.5, 0.5, 0.0, -0.5], 1e-15);
}

/// L(x) = sum(w * log_softmax(x)); its gradient from `backward(y, w)` must match central
/// differences (L(x + h e_k) - L(x - h e_k)) / 2h, accurate to about h^2 + eps/h in f64.
#[test]
fn backward_matches_central_finite_differences() {
    let (rows, cols) = (3, 5);
    let x = pseudo_random(rows * cols, 1);
    let w = pseudo_random(rows * cols, 2);
    let loss = |x: &[f64]| -> f64 {
        let y = forward(&Storage::f64(x.to_vec()), rows, cols).unwrap();
        y.to_vec_f64()
            .unwrap()
            .iter()
            .zip(&w)
            .map(|(y, w)| y * w)
            .sum()
    };
    let y = forward(&Storage::f64(x.clone()), rows, cols).unwrap();
    let dx = backward(&y, &Storage::f64(w.clone()), rows, cols)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let h = 1e-5;
    for k in 0..x.len() {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[k] += h;
        minus[k] -= h;
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
        assert!(
            (numeric - dx[k]).abs() < 1e-8,
            "x[{k}]: fd {numeric}, backward {}",
            dx[k]
        );
    }
}

#[test]
fn f32_agrees_with_f64() {
    let (rows, cols) = (4, 7);
    let x = pseudo_random(rows * cols, 3);
    let g = pseudo_random(rows * cols, 4);
    let x32 = Storage::f32(x.iter().map(|&v| v as f32).collect());
    let g32 = Storage::f32(g.iter().map(|&v| v as f32).collect());
    // Round the f64 inputs through f32 so both runs see the same numbers.
    let x64 = x32.to_dtype(crate::DType::F64).unwrap();
    let g64 = g32.to_dtype(crate::DType::F64).unwrap();
    let y32 = forward(&x32, rows, cols).unwrap();
    let y64 = forward(&x64, rows, cols).unwrap();
    assert_close_abs(&y32.to_vec_f64().unwrap(), &y64.to_vec_f64().unwrap(), 1e-5);
    let d32 = backward(&y32, &g32, rows, cols).unwrap();
    let d64 = backward(&y64, &g64, rows, cols).unwrap();
    assert_close_abs(&d32.to_vec_f64().unwrap(), &d64.to_vec_f64().unwrap(), 1e-5);
}

/// 20000 rows take the rayon path; row r is [r, r + ln 2, r + ln 3], so every row's
/// answer is the shift-invariant [-ln 6, -ln 3, -ln 2].
#[test]
fn many_rows_take_the_parallel_path() {
    let rows = 20_000;
    let x: Vec<f64> = (0..rows)
        .flat_map(|r| [r as f64, r as f64 + LN2, r as f64 + ln(3.0)])
        .collect();
    let y = forward(&Storage::f64(x), rows, 3)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    for row in y.chunks(3) {
        assert_close_abs(row, &[-ln(6.0), -ln(3.0), -LN2], 1e-11);
    }
}

#[test]
fn empty_shapes_give_empty_results() {
    assert_eq!(
        forward(&Storage::f32(vec![]), 0, 10).unwrap(),
        Storage::f32(vec![])
    );
    assert_eq!(
        forward(&Storage::f32(vec![]), 4, 0).unwrap(),
        Storage::f32(vec![])
    );
}

#[test]
fn bad_shapes_and_dtypes_are_rejected() {
    let err = forward(&Storage::f32(vec![0.0; 5]), 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "log_softmax",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains('5') && err.to_string().contains('6'),
        "{err}"
    );
    let err = forward(&Storage::f32(vec![]), usize::MAX, 2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "log_softmax",
                ..
            }
        ),
        "{err}"
    );
    let y = Storage::f32(vec![0.0; 6]);
    let err = backward(&y, &Storage::f32(vec![0.0; 4]), 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "log_softmax",
                ..
            }
        ),
        "{err}"
    );
    let err = backward(&y, &Storage::f64(vec![0.0; 6]), 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "log_softmax",
                ..
            }
        ),
        "{err}"
    );
}
