use super::*;
use crate::test_util::{assert_close_abs, pseudo_random};

const LN2: f64 = std::f64::consts::LN_2;

fn ln(x: f64) -> f64 {
    x.ln()
}

fn scalar(s: &Storage) -> f64 {
    assert_eq!(s.len(), 1);
    s.to_vec_f64().unwrap()[0]
}

/// Row 0: logits [0, ln 2, ln 3] -> exp [1, 2, 3] / 6 = probs [1/6, 1/3, 1/2]; label 0
///   costs -ln(1/6) = ln 6.
/// Row 1: logits [ln 4, 0, 0] -> exp [4, 1, 1] / 6 = probs [2/3, 1/6, 1/6]; label 0
///   costs -ln(4/6) = ln(3/2).
/// Mean: (ln 6 + ln 3/2) / 2 = ln(9) / 2 = ln 3.
/// Backward with grad_loss = 1: (probs - onehot) / 2 =
///   [(1/6 - 1)/2, 1/6, 1/4, (2/3 - 1)/2, 1/12, 1/12] = [-5/12, 1/6, 1/4, -1/6, 1/12, 1/12];
/// with grad_loss = 3, three times that.
#[test]
fn forward_and_backward_match_hand_values() {
    let logits = Storage::f64(vec![0.0, LN2, ln(3.0), ln(4.0), 0.0, 0.0]);
    let labels = [0, 0];
    let (loss, probs) = forward(&logits, &labels, 2, 3).unwrap();
    assert!((scalar(&loss) - ln(3.0)).abs() < 1e-15, "{loss:?}");
    let p = probs.to_vec_f64().unwrap();
    assert_close_abs(
        &p,
        &[1.0 / 6.0, 1.0 / 3.0, 0.5, 2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0],
        1e-15,
    );

    let want = [
        -5.0 / 12.0,
        1.0 / 6.0,
        0.25,
        -1.0 / 6.0,
        1.0 / 12.0,
        1.0 / 12.0,
    ];
    let g = backward(&probs, &labels, &Storage::f64(vec![1.0]), 2, 3).unwrap();
    assert_close_abs(&g.to_vec_f64().unwrap(), &want, 1e-15);
    let g = backward(&probs, &labels, &Storage::f64(vec![3.0]), 2, 3).unwrap();
    let want3: Vec<f64> = want.iter().map(|w| 3.0 * w).collect();
    assert_close_abs(&g.to_vec_f64().unwrap(), &want3, 1e-15);
}

/// Equal logits over C classes give probability 1/C each and a loss of ln C for any
/// label: PyTorch's CrossEntropyLoss on zeros(N, 10) prints 2.3026 (= ln 10).
#[test]
fn uniform_logits_cost_ln_of_the_class_count() {
    let (loss, probs) = forward(&Storage::f32(vec![0.0; 30]), &[0, 9, 4], 3, 10).unwrap();
    assert!((scalar(&loss) - ln(10.0)).abs() < 1e-6, "{loss:?}");
    assert_eq!(probs, Storage::f32(vec![0.1; 30]));
}

/// Rows [1e4, -1e4] with labels 0 and 1. Shifted by the max the exponents are [0, -2e4]:
/// exp gives [1, 0] exactly, so probs = [1, 0] and ln(sum) = 0. Row losses:
/// (1e4 - 1e4) + 0 = 0 and (1e4 - (-1e4)) + 0 = 2e4; mean 1e4. All exact in f32 and f64.
/// Backward: (probs - onehot) / 2 = [0, 0, 1/2, -1/2].
#[test]
fn huge_logits_give_finite_exact_results() {
    let labels = [0, 1];
    for logits in [
        Storage::f32(vec![1e4, -1e4, 1e4, -1e4]),
        Storage::f64(vec![1e4, -1e4, 1e4, -1e4]),
    ] {
        let (loss, probs) = forward(&logits, &labels, 2, 2).unwrap();
        assert_eq!(scalar(&loss), 1e4);
        assert_eq!(probs.to_vec_f64().unwrap(), vec![1.0, 0.0, 1.0, 0.0]);
        let one = Storage::full(1, 1.0, logits.dtype(), logits.device()).unwrap();
        let g = backward(&probs, &labels, &one, 2, 2).unwrap();
        assert_eq!(g.to_vec_f64().unwrap(), vec![0.0, 0.0, 0.5, -0.5]);
    }
}

/// The backward must match central differences of the forward loss, in f64, including
/// the scaling by grad_loss.
#[test]
fn backward_matches_central_finite_differences() {
    let (rows, cols) = (4, 5);
    let labels = [3, 0, 4, 1];
    let x = pseudo_random(rows * cols, 7);
    let loss = |x: &[f64]| {
        scalar(
            &forward(&Storage::f64(x.to_vec()), &labels, rows, cols)
                .unwrap()
                .0,
        )
    };
    let (_, probs) = forward(&Storage::f64(x.clone()), &labels, rows, cols).unwrap();
    let grad_loss = 0.7;
    let g = backward(&probs, &labels, &Storage::f64(vec![grad_loss]), rows, cols)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let h = 1e-5;
    for k in 0..x.len() {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[k] += h;
        minus[k] -= h;
        let numeric = grad_loss * (loss(&plus) - loss(&minus)) / (2.0 * h);
        assert!(
            (numeric - g[k]).abs() < 1e-9,
            "logit {k}: fd {numeric}, backward {}",
            g[k]
        );
    }
}

#[test]
fn f32_agrees_with_f64() {
    let (rows, cols) = (6, 10);
    let labels = [1, 9, 0, 5, 5, 2];
    let x32 = Storage::f32(
        pseudo_random(rows * cols, 11)
            .iter()
            .map(|&v| v as f32)
            .collect(),
    );
    let x64 = x32.to_dtype(crate::DType::F64).unwrap();
    let (l32, p32) = forward(&x32, &labels, rows, cols).unwrap();
    let (l64, p64) = forward(&x64, &labels, rows, cols).unwrap();
    assert!((scalar(&l32) - scalar(&l64)).abs() < 1e-5);
    assert_close_abs(&p32.to_vec_f64().unwrap(), &p64.to_vec_f64().unwrap(), 1e-6);
    let g32 = backward(&p32, &labels, &Storage::f32(vec![1.0]), rows, cols).unwrap();
    let g64 = backward(&p64, &labels, &Storage::f64(vec![1.0]), rows, cols).unwrap();
    assert_close_abs(&g32.to_vec_f64().unwrap(), &g64.to_vec_f64().unwrap(), 1e-7);
}

/// 5000 rows of 10 take the rayon path. Row r has logit ln 2 for class r % 10 and 0
/// elsewhere: probs 2/11 there and 1/11 elsewhere. Labels alternate between that class
/// (cost ln(11/2)) and the next (cost ln 11), so the mean is (ln 11 + ln(11/2)) / 2.
#[test]
fn many_rows_take_the_parallel_path() {
    let (rows, cols) = (5000, 10);
    let mut x = vec![0.0f64; rows * cols];
    let mut labels = vec![0u32; rows];
    for r in 0..rows {
        let hot = r % cols;
        x[r * cols + hot] = LN2;
        labels[r] = if r % 2 == 0 { hot } else { (hot + 1) % cols } as u32;
    }
    let (loss, probs) = forward(&Storage::f64(x), &labels, rows, cols).unwrap();
    assert!((scalar(&loss) - (ln(11.0) + ln(5.5)) / 2.0).abs() < 1e-12);
    let p = probs.to_vec_f64().unwrap();
    for r in 0..rows {
        for c in 0..cols {
            let want = if c == r % cols {
                2.0 / 11.0
            } else {
                1.0 / 11.0
            };
            assert!((p[r * cols + c] - want).abs() < 1e-15);
        }
    }
}

#[test]
fn a_label_out_of_range_is_an_error_naming_it_and_its_row() {
    let logits = Storage::f32(vec![0.0; 6]);
    let err = forward(&logits, &[1, 3], 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                op: "cross_entropy",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("label 3") && msg.contains("row 1"), "{msg}");
    let err = backward(&logits, &[7, 0], &Storage::f32(vec![1.0]), 2, 3).unwrap_err();
    assert!(
        err.to_string().contains("label 7") && err.to_string().contains("row 0"),
        "{err}"
    );
}

fn shape_err<T: std::fmt::Debug>(r: Result<T>) -> String {
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "cross_entropy",
                ..
            }
        ),
        "{err}"
    );
    err.to_string()
}

#[test]
fn bad_shapes_and_dtypes_are_rejected() {
    let logits = Storage::f32(vec![0.0; 6]);
    let msg = shape_err(forward(&Storage::f32(vec![]), &[], 0, 3));
    assert!(msg.contains("0 rows"), "{msg}");
    shape_err(forward(&logits, &[0], 2, 3));
    shape_err(forward(&logits, &[0, 0], 2, 4));
    shape_err(forward(&logits, &[0, 0], usize::MAX, 3));
    shape_err(backward(
        &logits,
        &[0, 0],
        &Storage::f32(vec![1.0, 1.0]),
        2,
        3,
    ));
    shape_err(backward(
        &logits,
        &[0, 0, 0],
        &Storage::f32(vec![1.0]),
        2,
        3,
    ));
    shape_err(backward(
        &Storage::f32(vec![0.0; 5]),
        &[0, 0],
        &Storage::f32(vec![1.0]),
        2,
        3,
    ));
    let err = backward(&logits, &[0, 0], &Storage::f64(vec![1.0]), 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "cross_entropy",
                ..
            }
        ),
        "{err}"
    );
}

const AIRBENCH: CrossEntropy = CrossEntropy {
    label_smoothing: 0.2,
    reduction: Reduction::Sum,
};

/// Logits [0, ln 3] give probs [1/4, 3/4]; label 1 with ε = 0.2 over 2 classes targets
/// q = [0.1, 0.9], so the row costs -(0.1 ln(1/4) + 0.9 ln(3/4)) and its gradient is
/// p - q = [0.15, -0.15]. A second row, logits [ln 4, 0] (probs [4/5, 1/5]) with label 0,
/// targets [0.9, 0.1]: -(0.9 ln(4/5) + 0.1 ln(1/5)), gradient [-0.1, 0.1]. Summed, not
/// averaged; with grad_loss = 2 the gradient doubles.
#[test]
fn label_smoothing_with_a_sum_matches_hand_values() {
    let x = Storage::f64(vec![0.0, ln(3.0), ln(4.0), 0.0]);
    let labels = [1, 0];
    let (loss, probs) = forward_with(&x, &labels, 2, 2, AIRBENCH).unwrap();
    let want = -(0.1 * ln(0.25) + 0.9 * ln(0.75)) - (0.9 * ln(0.8) + 0.1 * ln(0.2));
    assert!(
        (scalar(&loss) - want).abs() < 1e-15,
        "{} vs {want}",
        scalar(&loss)
    );
    let g = backward_with(&probs, &labels, &Storage::f64(vec![2.0]), 2, 2, AIRBENCH)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert_close_abs(&g, &[0.3, -0.3, -0.2, 0.2], 1e-15);
}

/// PyTorch computes a smoothed loss as (1 - ε)·nll + ε·mean_j(-log_softmax_j); the same
/// from our log_softmax, averaged over the rows, must equal the Mean loss.
#[test]
fn label_smoothing_matches_pytorchs_formula_from_log_softmax() {
    let (rows, cols) = (5, 7);
    let labels = [6, 0, 3, 3, 1];
    let x = pseudo_random(rows * cols, 11);
    let eps = 0.3;
    let options = CrossEntropy {
        label_smoothing: eps,
        reduction: Reduction::Mean,
    };
    let (loss, _) = forward_with(&Storage::f64(x.clone()), &labels, rows, cols, options).unwrap();
    let logp = crate::log_softmax::forward(&Storage::f64(x), rows, cols)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let want: f64 = (0..rows)
        .map(|r| {
            let row = &logp[r * cols..(r + 1) * cols];
            let nll = -row[labels[r] as usize];
            let smooth = -row.iter().sum::<f64>() / cols as f64;
            (1.0 - eps) * nll + eps * smooth
        })
        .sum::<f64>()
        / rows as f64;
    assert!(
        (scalar(&loss) - want).abs() < 1e-13,
        "{} vs {want}",
        scalar(&loss)
    );
}

#[test]
fn smoothed_summed_backward_matches_central_finite_differences() {
    let (rows, cols) = (3, 10);
    let labels = [2, 9, 0];
    let x = pseudo_random(rows * cols, 5);
    let loss = |x: &[f64]| {
        scalar(
            &forward_with(&Storage::f64(x.to_vec()), &labels, rows, cols, AIRBENCH)
                .unwrap()
                .0,
        )
    };
    let (_, probs) = forward_with(&Storage::f64(x.clone()), &labels, rows, cols, AIRBENCH).unwrap();
    let g = backward_with(
        &probs,
        &labels,
        &Storage::f64(vec![1.0]),
        rows,
        cols,
        AIRBENCH,
    )
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
            (numeric - g[k]).abs() < 1e-9,
            "logit {k}: fd {numeric}, backward {}",
            g[k]
        );
    }
}

#[test]
fn label_smoothing_outside_zero_to_one_is_refused() {
    let bad = CrossEntropy {
        label_smoothing: 1.5,
        reduction: Reduction::Mean,
    };
    let err = forward_with(&Storage::f64(vec![0.0; 2]), &[0], 1, 2, bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("label_smoothing must be in [0, 1], got 1.5"),
        "{err}"
    );
}
