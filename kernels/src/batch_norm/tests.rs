use half::bf16;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::*;
use crate::test_util::{assert_close_rel, values};
use crate::{CpuStorage, DType, Error};

fn f64s(s: &Storage) -> Vec<f64> {
    s.to_vec_f64().unwrap()
}

/// Input [N=2, C=2, H=1, W=2], laid out n0c0 n0c1 n1c0 n1c1:
/// channel 0 holds 1, 2, 3, 6: mean 3, squared deviations 4+1+0+9 = 14,
///   biased variance 14/4 = 3.5, unbiased 14/3;
/// channel 1 holds 16, 5, 9, 10: mean 10, deviations 6,-5,-1,0, squares 36+25+1+0 = 62,
///   biased variance 15.5, unbiased 62/3.
/// With eps = 0.5, var + eps = 4 and 16, so inv_std = 0.5 and 0.25.
const SHAPE: [usize; 4] = [2, 2, 1, 2];
const X: [f64; 8] = [1.0, 2.0, 16.0, 5.0, 3.0, 6.0, 9.0, 10.0];
const GAMMA: [f64; 2] = [2.0, -1.0];
const BETA: [f64; 2] = [0.5, 3.0];
const EPS: f64 = 0.5;
/// y0 = 2 * (x - 3) * 0.5 + 0.5 = x - 2.5;  y1 = -(x - 10) * 0.25 + 3.
const Y: [f64; 8] = [-1.5, -0.5, 1.5, 4.25, 0.5, 3.5, 3.25, 3.0];

fn storage(dtype: DType, values: &[f64]) -> Storage {
    Storage::f64(values.to_vec()).to_dtype(dtype).unwrap()
}

#[test]
fn training_forward_matches_the_hand_worked_example() {
    for dtype in [DType::F32, DType::F64] {
        let g = BatchNormGeometry::new(&SHAPE, 2).unwrap();
        assert_eq!(
            g,
            BatchNormGeometry {
                batch: 2,
                channels: 2,
                spatial: 2
            }
        );
        let mut running_mean = storage(dtype, &[0.0, 1.0]);
        let mut running_var = storage(dtype, &[1.0, 2.0]);
        let (y, stats) = forward_train(
            &storage(dtype, &X),
            &storage(dtype, &GAMMA),
            &storage(dtype, &BETA),
            &mut running_mean,
            &mut running_var,
            0.1,
            EPS,
            &g,
        )
        .unwrap();
        assert_eq!(y.dtype(), dtype);
        assert_close_rel(&f64s(&y), &Y, 1e-6);
        assert_close_rel(&f64s(&stats.mean), &[3.0, 10.0], 1e-7);
        assert_close_rel(&f64s(&stats.inv_std), &[0.5, 0.25], 1e-7);
        // running = 0.9 * running + 0.1 * batch, with the UNBIASED variance:
        // mean: 0.9*0 + 0.1*3 = 0.3, 0.9*1 + 0.1*10 = 1.9;
        // var:  0.9*1 + 0.1*14/3, 0.9*2 + 0.1*62/3 (the biased 3.5 / 15.5 would give 1.25 / 3.35).
        assert_close_rel(&f64s(&running_mean), &[0.3, 1.9], 1e-6);
        assert_close_rel(
            &f64s(&running_var),
            &[0.9 + 1.4 / 3.0, 1.8 + 6.2 / 3.0],
            1e-6,
        );
    }
}

#[test]
fn momentum_zero_freezes_and_one_replaces_the_running_statistics() {
    let g = BatchNormGeometry::new(&SHAPE, 2).unwrap();
    for (momentum, mean, var) in [
        (0.0, [0.0, 1.0], [1.0, 2.0]),
        (1.0, [3.0, 10.0], [14.0 / 3.0, 62.0 / 3.0]),
    ] {
        let mut running_mean = Storage::f64(vec![0.0, 1.0]);
        let mut running_var = Storage::f64(vec![1.0, 2.0]);
        forward_train(
            &Storage::f64(X.to_vec()),
            &Storage::f64(GAMMA.to_vec()),
            &Storage::f64(BETA.to_vec()),
            &mut running_mean,
            &mut running_var,
            momentum,
            EPS,
            &g,
        )
        .unwrap();
        assert_close_rel(&f64s(&running_mean), &mean, 1e-14);
        assert_close_rel(&f64s(&running_var), &var, 1e-14);
    }
}

#[test]
fn a_large_offset_does_not_cost_precision() {
    // The hand-worked example shifted by a constant: mean and variance shift/stay exactly,
    // where E[x^2] - E[x]^2 would lose everything (1e16 - 1e16 in f64).
    for (dtype, offset) in [(DType::F32, 1e4), (DType::F64, 1e8)] {
        let x: Vec<f64> = X.iter().map(|v| v + offset).collect();
        let g = BatchNormGeometry::new(&SHAPE, 2).unwrap();
        let mut running_mean = storage(dtype, &[0.0, 0.0]);
        let mut running_var = storage(dtype, &[0.0, 0.0]);
        let (y, stats) = forward_train(
            &storage(dtype, &x),
            &storage(dtype, &GAMMA),
            &storage(dtype, &BETA),
            &mut running_mean,
            &mut running_var,
            1.0,
            EPS,
            &g,
        )
        .unwrap();
        assert_close_rel(&f64s(&y), &Y, 1e-6);
        assert_close_rel(&f64s(&stats.inv_std), &[0.5, 0.25], 1e-7);
        assert_close_rel(&f64s(&running_var), &[14.0 / 3.0, 62.0 / 3.0], 1e-6);
        assert_close_rel(&f64s(&stats.mean), &[3.0 + offset, 10.0 + offset], 1e-12);
    }
}

#[test]
fn eval_forward_uses_the_running_statistics() {
    // 2-D input [3, 2]: channel 0 holds 1, 3, 5 and channel 1 holds 2, 4, 6.
    // running_var + eps = 3.75 + 0.25 = 4 and 0.75 + 0.25 = 1: inv_std 0.5 and 1.
    // y0 = 2 * (x - 1) * 0.5 + 0.5 = x - 0.5;  y1 = -(x + 2) + 3 = 1 - x.
    let g = BatchNormGeometry::new(&[3, 2], 2).unwrap();
    assert_eq!(g.spatial, 1);
    let y = forward_eval(
        &Storage::f32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        &Storage::f32(vec![2.0, -1.0]),
        &Storage::f32(vec![0.5, 3.0]),
        &Storage::f32(vec![1.0, -2.0]),
        &Storage::f32(vec![3.75, 0.75]),
        0.25,
        &g,
    )
    .unwrap();
    assert_eq!(y, Storage::f32(vec![0.5, -1.0, 2.5, -3.0, 4.5, -5.0]));
}

#[test]
fn eval_backward_matches_the_hand_worked_example() {
    // Same setting as above. dx = gamma * inv_std * dy: factor 1 for channel 0, -1 for 1.
    // dbeta = sum(dy) per channel; dgamma = sum(dy * (x - running_mean) * inv_std):
    // channel 0: dy 1, 2, 3 at x - 1 = 0, 2, 4, times 0.5: (0 + 4 + 12) * 0.5 = 8;
    // channel 1: dy -1, 0.5, 2 at x + 2 = 4, 6, 8, times 1: -4 + 3 + 16 = 15.
    let g = BatchNormGeometry::new(&[3, 2], 2).unwrap();
    let grads = backward_eval(
        &Storage::f64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        &Storage::f64(vec![2.0, -1.0]),
        &Storage::f64(vec![1.0, -2.0]),
        &Storage::f64(vec![3.75, 0.75]),
        0.25,
        &Storage::f64(vec![1.0, -1.0, 2.0, 0.5, 3.0, 2.0]),
        &g,
    )
    .unwrap();
    assert_close_rel(
        &f64s(&grads.input),
        &[1.0, 1.0, 2.0, -0.5, 3.0, -2.0],
        1e-15,
    );
    assert_close_rel(&f64s(&grads.gamma), &[8.0, 15.0], 1e-15);
    assert_close_rel(&f64s(&grads.beta), &[6.0, 1.5], 1e-15);
}

/// Everything a forward call needs; `loss` is `sum(y * w)` so `dL/dy = w`.
struct Problem {
    shape: Vec<usize>,
    x: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    running_mean: Vec<f64>,
    running_var: Vec<f64>,
    w: Vec<f64>,
}

const FD_EPS: f64 = 1e-3;

impl Problem {
    fn new(shape: &[usize]) -> Problem {
        let len: usize = shape.iter().product();
        let c = shape[1];
        Problem {
            shape: shape.to_vec(),
            // An offset and scale so the statistics are not trivially 0 and 1.
            x: values(len, 1).iter().map(|v| 3.0 * v + 0.7).collect(),
            gamma: values(c, 2).iter().map(|v| v + 1.5).collect(),
            beta: values(c, 3),
            running_mean: values(c, 4),
            running_var: values(c, 5).iter().map(|v| v + 1.2).collect(),
            w: values(len, 6),
        }
    }

    fn geometry(&self) -> BatchNormGeometry {
        BatchNormGeometry::new(&self.shape, self.shape[1]).unwrap()
    }

    fn loss(&self, train: bool) -> f64 {
        let g = self.geometry();
        let (x, gamma, beta) = (
            Storage::f64(self.x.clone()),
            Storage::f64(self.gamma.clone()),
            Storage::f64(self.beta.clone()),
        );
        let mut rm = Storage::f64(self.running_mean.clone());
        let mut rv = Storage::f64(self.running_var.clone());
        let y = if train {
            forward_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, FD_EPS, &g)
                .unwrap()
                .0
        } else {
            forward_eval(&x, &gamma, &beta, &rm, &rv, FD_EPS, &g).unwrap()
        };
        f64s(&y).iter().zip(&self.w).map(|(y, w)| y * w).sum()
    }

    fn grads(&self, train: bool) -> BatchNormGrads {
        let g = self.geometry();
        let (x, gamma, beta, w) = (
            Storage::f64(self.x.clone()),
            Storage::f64(self.gamma.clone()),
            Storage::f64(self.beta.clone()),
            Storage::f64(self.w.clone()),
        );
        let mut rm = Storage::f64(self.running_mean.clone());
        let mut rv = Storage::f64(self.running_var.clone());
        if train {
            let (_, stats) =
                forward_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, FD_EPS, &g).unwrap();
            backward_train(&x, &gamma, &stats, &w, &g).unwrap()
        } else {
            backward_eval(&x, &gamma, &rm, &rv, FD_EPS, &w, &g).unwrap()
        }
    }
}

/// Central differences of the loss with respect to every entry of one parameter.
fn numeric_grad(
    p: &mut Problem,
    train: bool,
    field: fn(&mut Problem) -> &mut Vec<f64>,
) -> Vec<f64> {
    let h = 1e-5;
    (0..field(p).len())
        .map(|i| {
            let orig = field(p)[i];
            field(p)[i] = orig + h;
            let up = p.loss(train);
            field(p)[i] = orig - h;
            let down = p.loss(train);
            field(p)[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn check_gradients(shape: &[usize], train: bool) {
    let mut p = Problem::new(shape);
    let grads = p.grads(train);
    let dx = numeric_grad(&mut p, train, |p| &mut p.x);
    let dgamma = numeric_grad(&mut p, train, |p| &mut p.gamma);
    let dbeta = numeric_grad(&mut p, train, |p| &mut p.beta);
    assert_close_rel(&f64s(&grads.input), &dx, 1e-7);
    assert_close_rel(&f64s(&grads.gamma), &dgamma, 1e-7);
    assert_close_rel(&f64s(&grads.beta), &dbeta, 1e-7);
}

#[test]
fn training_backward_matches_finite_differences() {
    check_gradients(&[3, 2, 2, 3], true);
    check_gradients(&[5, 3], true);
    check_gradients(&[1, 2, 3], true);
    // Planes of 256 values and more take the per-plane loops, smaller ones per-image loops.
    check_gradients(&[2, 1, 16, 16], true);
}

#[test]
fn eval_backward_matches_finite_differences() {
    check_gradients(&[3, 2, 2, 3], false);
    check_gradients(&[4, 3], false);
    check_gradients(&[2, 1, 16, 16], false);
}

#[test]
fn training_gradient_of_the_input_sums_to_zero_per_channel() {
    // A consequence of normalising by the batch mean that the eval gradient lacks:
    // shifting a whole channel leaves the output unchanged.
    let p = Problem::new(&[4, 3, 2, 2]);
    let dx = f64s(&p.grads(true).input);
    for c in 0..3 {
        let sum: f64 = (0..4)
            .flat_map(|n| (0..4).map(move |s| (n * 3 + c) * 4 + s))
            .map(|i| dx[i])
            .sum();
        assert!(sum.abs() < 1e-12, "channel {c}: {sum}");
    }
}

#[test]
fn f32_matches_f64() {
    let p = Problem::new(&[4, 3, 5, 5]);
    let g = p.geometry();
    let run = |dtype: DType| {
        let s = |v: &[f64]| storage(dtype, v);
        let (x, gamma, beta, w) = (s(&p.x), s(&p.gamma), s(&p.beta), s(&p.w));
        let (mut rm, mut rv) = (s(&p.running_mean), s(&p.running_var));
        let (y, stats) = forward_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5, &g).unwrap();
        let grads = backward_train(&x, &gamma, &stats, &w, &g).unwrap();
        [y, rm, rv, grads.input, grads.gamma, grads.beta].map(|s| f64s(&s))
    };
    let (single, double) = (run(DType::F32), run(DType::F64));
    for (a, b) in single.iter().zip(&double) {
        assert_close_rel(a, b, 1e-5);
    }
}

fn train_error(shape: &[usize], momentum: f64, eps: f64) -> Error {
    let g = BatchNormGeometry::new(shape, shape[1]).unwrap();
    let len: usize = shape.iter().product();
    let c = shape[1];
    let mut rm = Storage::f32(vec![0.5; c]);
    let mut rv = Storage::f32(vec![2.0; c]);
    let err = forward_train(
        &Storage::f32(vec![1.0; len]),
        &Storage::f32(vec![1.0; c]),
        &Storage::f32(vec![0.0; c]),
        &mut rm,
        &mut rv,
        momentum,
        eps,
        &g,
    )
    .unwrap_err();
    // A refused call leaves the running statistics alone.
    assert_eq!(
        (rm, rv),
        (Storage::f32(vec![0.5; c]), Storage::f32(vec![2.0; c]))
    );
    assert!(err.to_string().starts_with("batch_norm: "), "{err}");
    err
}

#[test]
fn training_refuses_a_single_value_per_channel() {
    for shape in [&[1, 3][..], &[1, 3, 1, 1]] {
        let err = train_error(shape, 0.1, 1e-5);
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(
            err.to_string().contains("more than 1 value per channel"),
            "{err}"
        );
    }
    // Evaluation is fine with one value.
    let g = BatchNormGeometry::new(&[1, 3], 3).unwrap();
    let y = forward_eval(
        &Storage::f64(vec![1.0, 2.0, 3.0]),
        &Storage::f64(vec![1.0; 3]),
        &Storage::f64(vec![0.0; 3]),
        &Storage::f64(vec![0.0; 3]),
        &Storage::f64(vec![1.0; 3]),
        1e-5,
        &g,
    )
    .unwrap();
    assert_close_rel(&f64s(&y), &[1.0, 2.0, 3.0], 1e-5);
}

#[test]
fn refuses_bad_momentum_and_eps() {
    for momentum in [-0.1, 1.5, f64::NAN] {
        let err = train_error(&[2, 2], momentum, 1e-5);
        assert!(err.to_string().contains("momentum"), "{err}");
    }
    for eps in [0.0, -1e-5, f64::NAN, f64::INFINITY] {
        let err = train_error(&[2, 2], 0.1, eps);
        assert!(err.to_string().contains("eps"), "{err}");
    }
}

#[test]
fn refuses_bad_shapes_naming_them() {
    let err = BatchNormGeometry::new(&[4], 4).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "batch_norm",
                ..
            }
        ) && err.to_string().contains("[4]"),
        "{err}"
    );
    let err = BatchNormGeometry::new(&[2, 3, 4, 4, 4], 3).unwrap_err();
    assert!(err.to_string().contains("[2, 3, 4, 4, 4]"), "{err}");
    let err = BatchNormGeometry::new(&[2, 3, 4, 4], 8).unwrap_err();
    assert!(
        err.to_string().contains("[2, 3, 4, 4]") && err.to_string().contains("8"),
        "{err}"
    );

    let g = BatchNormGeometry::new(&[2, 3], 3).unwrap();
    let x = Storage::f64(vec![1.0; 6]);
    let ok3 = Storage::f64(vec![1.0; 3]);
    let err =
        forward_eval(&x, &Storage::f64(vec![1.0; 2]), &ok3, &ok3, &ok3, 1e-5, &g).unwrap_err();
    assert!(err.to_string().contains("gamma has 2 elements"), "{err}");
    let err = forward_eval(
        &Storage::f64(vec![1.0; 5]),
        &ok3,
        &ok3,
        &ok3,
        &ok3,
        1e-5,
        &g,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("input has 5 elements") && err.to_string().contains("[2, 3, 1]"),
        "{err}"
    );
    let stats = BatchStats {
        mean: ok3.clone(),
        inv_std: ok3.clone(),
    };
    let err = backward_train(&x, &ok3, &stats, &Storage::f64(vec![1.0; 7]), &g).unwrap_err();
    assert!(err.to_string().contains("grad_out has 7 elements"), "{err}");
    let err = backward_train(&x, &Storage::f32(vec![1.0; 3]), &stats, &x, &g).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "batch_norm",
                ..
            }
        ),
        "{err}"
    );
    let huge = BatchNormGeometry {
        batch: usize::MAX,
        channels: 3,
        spatial: 2,
    };
    assert!(forward_eval(&x, &ok3, &ok3, &ok3, &ok3, 1e-5, &huge).is_err());
}

#[test]
fn empty_inputs_are_handled() {
    // Zero batch in eval, and zero spatial size, give empty outputs without panicking.
    for shape in [&[0, 2, 3, 3][..], &[2, 2, 0, 3]] {
        let g = BatchNormGeometry::new(shape, 2).unwrap();
        let two = Storage::f32(vec![1.0; 2]);
        let y = forward_eval(&Storage::f32(vec![]), &two, &two, &two, &two, 1e-5, &g).unwrap();
        assert!(y.is_empty());
        let grads = backward_eval(
            &Storage::f32(vec![]),
            &two,
            &two,
            &two,
            1e-5,
            &Storage::f32(vec![]),
            &g,
        )
        .unwrap();
        assert!(grads.input.is_empty());
        assert_eq!(grads.beta, Storage::f32(vec![0.0; 2]));
    }
}

#[test]
fn small_and_large_channels_give_the_textbook_statistics_outputs_and_gradients() {
    // Channels of up to 1 MiB (of the compute type) take whole-channel sums, larger ones
    // per-plane sums merged by Chan's update; planes under 256 values are normalised an
    // image at a time, larger ones a plane at a time. Each against plain two-pass
    // statistics and the textbook gradient in f64, with an offset (1e3) large against the
    // spread so that a one-pass E[x^2] - E[x]^2 would show. A bf16 input (rounded to bf16,
    // so its values are multiples of 4 near 1e3) has f32 parameters and a bf16 dy.
    for (shape, dtype) in [
        ([3, 2, 7, 7], DType::F64),
        ([2, 3, 1, 1], DType::F32),
        ([2, 2, 300, 300], DType::F64),
        ([3, 1, 330, 330], DType::F32),
        ([3, 2, 7, 7], DType::BF16),
        ([1200, 1, 15, 15], DType::BF16),
        ([2, 2, 300, 300], DType::BF16),
        ([3, 1, 330, 330], DType::BF16),
    ] {
        let [n, c, h, w] = shape;
        let params = if dtype == DType::BF16 {
            DType::F32
        } else {
            dtype
        };
        let x: Vec<f64> = values(n * c * h * w, 7).iter().map(|v| 1e3 + v).collect();
        let x = storage(dtype, &x).to_vec_f64().unwrap();
        let g = BatchNormGeometry::new(&shape, c).unwrap();
        let (gamma, beta) = (vec![1.5; c], vec![-0.25; c]);
        let (mut rm, mut rv) = (
            storage(params, &vec![0.0; c]),
            storage(params, &vec![1.0; c]),
        );
        let (y, stats) = forward_train(
            &storage(dtype, &x),
            &storage(params, &gamma),
            &storage(params, &beta),
            &mut rm,
            &mut rv,
            1.0,
            1e-5,
            &g,
        )
        .unwrap();
        let y = f64s(&y);
        let dy = storage(dtype, &values(n * c * h * w, 11))
            .to_vec_f64()
            .unwrap();
        let grads = backward_train(
            &storage(dtype, &x),
            &storage(params, &gamma),
            &stats,
            &storage(dtype, &dy),
            &g,
        )
        .unwrap();
        let (dx, dgamma, dbeta) = (f64s(&grads.input), f64s(&grads.gamma), f64s(&grads.beta));
        let plane = h * w;
        for ch in 0..c {
            let members: Vec<usize> = (0..n)
                .flat_map(|b| (0..plane).map(move |s| (b * c + ch) * plane + s))
                .collect();
            let count = members.len() as f64;
            let mean = members.iter().map(|&i| x[i]).sum::<f64>() / count;
            let var = members.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / count;
            let inv_std = 1.0 / (var + 1e-5).sqrt();
            let tolerance = if dtype == DType::F64 { 1e-12 } else { 1e-6 };
            assert_close_rel(&[f64s(&stats.mean)[ch]], &[mean], tolerance);
            assert_close_rel(&[f64s(&stats.inv_std)[ch]], &[inv_std], tolerance);
            // x - mean in the compute precision (a few units of x's last place, x being
            // about 1e3) plus the rounding of the f64 sums behind the mean (about
            // sqrt(count) units of f64's last place), scaled by gamma * inv_std.
            let unit = if dtype == DType::F64 {
                f64::EPSILON
            } else {
                f32::EPSILON as f64
            };
            let sums = count.sqrt() * f64::EPSILON;
            let y_tolerance = 4.0 * (unit + sums) * 1e3 * 1.5 * inv_std;
            // A bf16 output is the f32 one rounded once more: half a unit in the last of
            // bf16's 8 significant bits, 2^-8 relative, of a value within y_tolerance of
            // the exact one.
            let rounding = if dtype == DType::BF16 {
                2f64.powi(-8)
            } else {
                0.0
            };
            for &i in members.iter().step_by(97) {
                let want = (x[i] - mean) * inv_std * 1.5 - 0.25;
                let y_tolerance = y_tolerance + rounding * (want.abs() + y_tolerance);
                assert!(
                    (y[i] - want).abs() <= y_tolerance,
                    "{shape:?} {dtype:?}: y[{i}] = {}, want {want}",
                    y[i]
                );
            }
            // dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
            let x_hat = |i: usize| (x[i] - mean) * inv_std;
            let sum_dy: f64 = members.iter().map(|&i| dy[i]).sum();
            let sum_dy_x_hat: f64 = members.iter().map(|&i| dy[i] * x_hat(i)).sum();
            // Tolerances from the error of x_hat (that of y before any rounding to bf16,
            // over gamma) and the rounding of the result to the compute precision.
            let x_hat_error = y_tolerance / 1.5;
            let sum_abs_dy: f64 = members.iter().map(|&i| dy[i].abs()).sum();
            let close = |got: f64, want: f64, tolerance: f64| {
                assert!(
                    (got - want).abs() <= tolerance,
                    "{shape:?} {dtype:?} channel {ch}: {got}, want {want}"
                )
            };
            close(dbeta[ch], sum_dy, 4.0 * unit * sum_abs_dy);
            close(
                dgamma[ch],
                sum_dy_x_hat,
                x_hat_error * sum_abs_dy + 4.0 * unit * sum_dy_x_hat.abs(),
            );
            let a = 1.5 * inv_std;
            for &i in members.iter().step_by(89) {
                let want = a * (dy[i] - sum_dy / count - x_hat(i) * sum_dy_x_hat / count);
                // A bf16 dx is the f32 one rounded once more, as y is above.
                let tolerance = a * (8.0 * unit + x_hat_error) * (1.0 + x_hat(i).abs());
                close(dx[i], want, tolerance + rounding * (want.abs() + tolerance));
            }
        }
    }
}

/// The bits of every value of a host f32 or bf16 buffer (so that signed zeros and
/// infinities compare too), tagged with the dtype. Every NaN reads as one NaN: an
/// operation on two NaNs (as `a * dy + b * (x - mean)` is in a channel whose statistics
/// are NaN) returns one of them, and which one is the compiler's choice of operand order
/// (Rust leaves a NaN result's sign and payload unspecified), not part of the contract.
fn bits(s: &Storage) -> (DType, Vec<u32>) {
    let bits = match s {
        Storage::Cpu(CpuStorage::F32(v)) => v
            .iter()
            .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
            .collect(),
        Storage::Cpu(CpuStorage::BF16(v)) => v
            .iter()
            .map(|x| {
                if x.is_nan() {
                    u32::MAX
                } else {
                    u32::from(x.to_bits())
                }
            })
            .collect(),
        other => panic!(
            "expected a host f32 or bf16 buffer, got {:?}",
            other.dtype()
        ),
    };
    (s.dtype(), bits)
}

/// `values` rounded to bf16 by `half` (not by the code under test).
fn rounded(values: &[f32]) -> Storage {
    Storage::bf16(values.iter().map(|&v| bf16::from_f32(v)).collect())
}

/// Everything the four entry points return, for one input dtype.
struct Results {
    /// forward_train: the output, the batch statistics, the updated running statistics.
    train: [Storage; 5],
    /// backward_train: the gradients of input, gamma and beta.
    train_grads: [Storage; 3],
    eval: Storage,
    eval_grads: [Storage; 3],
}

/// Runs forward and backward, training and eval, on `x` and `dy` (of `x`'s dtype) with
/// f32 parameters.
fn run_all(shape: &[usize], x: &Storage, dy: &Storage, seed: u64) -> Results {
    let g = BatchNormGeometry::new(shape, shape[1]).unwrap();
    let c = shape[1];
    let f32s = |v: Vec<f64>| Storage::f64(v).to_dtype(DType::F32).unwrap();
    let gamma = f32s(values(c, seed).iter().map(|v| v + 1.5).collect());
    let beta = f32s(values(c, seed + 1));
    let mut rm = f32s(values(c, seed + 2));
    let mut rv = f32s(values(c, seed + 3).iter().map(|v| v + 1.2).collect());
    let eval = forward_eval(x, &gamma, &beta, &rm, &rv, 1e-5, &g).unwrap();
    let eval_grads = backward_eval(x, &gamma, &rm, &rv, 1e-5, dy, &g).unwrap();
    let (y, stats) = forward_train(x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5, &g).unwrap();
    let grads = backward_train(x, &gamma, &stats, dy, &g).unwrap();
    Results {
        train: [y, stats.mean, stats.inv_std, rm, rv],
        train_grads: [grads.input, grads.gamma, grads.beta],
        eval,
        eval_grads: [eval_grads.input, eval_grads.gamma, eval_grads.beta],
    }
}

/// The contract of a bf16 input and gradient: every result has the bits of the f32
/// kernel's on the widened input and gradient, the bf16 outputs (y and the gradient of
/// the input) rounded once from the f32 ones, everything else f32.
fn check_bf16_against_f32(shape: &[usize], x: &[f32], dy: &[f32], seed: u64) {
    let (bf16_input, bf16_dy) = (rounded(x), rounded(dy));
    let widen = |s: &Storage| Storage::f32(s.to_vec_f32().unwrap());
    let (half, single) = (
        run_all(shape, &bf16_input, &bf16_dy, seed),
        run_all(shape, &widen(&bf16_input), &widen(&bf16_dy), seed),
    );
    let narrowed = |s: &Storage| rounded(&s.to_vec_f32().unwrap());
    let [y, rest @ ..] = &single.train;
    let y = narrowed(y);
    let want_train = [&y].into_iter().chain(rest);
    for (what, (got, want)) in ["y", "mean", "inv_std", "running_mean", "running_var"]
        .iter()
        .zip(half.train.iter().zip(want_train))
    {
        assert_eq!(bits(got), bits(want), "{shape:?}: forward_train {what}");
    }
    assert_eq!(
        bits(&half.eval),
        bits(&narrowed(&single.eval)),
        "{shape:?}: forward_eval"
    );
    for (what, (got, [dx, dgamma, dbeta])) in [
        ("backward_train", (&half.train_grads, &single.train_grads)),
        ("backward_eval", (&half.eval_grads, &single.eval_grads)),
    ] {
        let want = [&narrowed(dx), dgamma, dbeta];
        for (name, (got, want)) in ["input", "gamma", "beta"].iter().zip(got.iter().zip(want)) {
            assert_eq!(
                bits(got),
                bits(want),
                "{shape:?}: {what} gradient of {name}"
            );
        }
    }
}

/// `len` values around `offset` with a spread of `scale`.
fn spread(len: usize, seed: u64, offset: f64, scale: f64) -> Vec<f32> {
    values(len, seed)
        .iter()
        .map(|v| (offset + scale * v) as f32)
        .collect()
}

#[test]
fn bf16_input_gives_the_bits_of_f32_on_both_sides_of_both_thresholds() {
    // Planes of 255 and 256 values (an image at a time, a plane at a time), and channels of
    // 1 MiB of f32 and one value more (whole-channel sums, per-plane sums merged by Chan's
    // update): a bf16 channel takes the f32 channel's path, though it is half the bytes.
    // Which path a shape takes shows in the bits of f64 sums only, rarely in their f32
    // roundings, so the paths are checked here directly.
    for (shape, small_planes, cached) in [
        (&[2, 3, 15, 17][..], true, true),
        (&[2, 3, 16, 16], false, true),
        (&[1024, 1, 16, 16], false, true),
        (&[5, 1, 52429], false, false),
        (&[1200, 1, 15, 15], true, false),
        (&[4, 3], true, true),
    ] {
        let g = BatchNormGeometry::new(shape, shape[1]).unwrap();
        assert_eq!(g.spatial < cpu::SMALL_PLANE, small_planes, "{shape:?}");
        assert_eq!(cpu::channel_fits_in_cache::<f32>(&g), cached, "{shape:?}");
        assert_eq!(cpu::channel_fits_in_cache::<bf16>(&g), cached, "{shape:?}");
        let len: usize = shape.iter().product();
        check_bf16_against_f32(
            shape,
            &spread(len, 21, 3.0, 2.0),
            &spread(len, 23, 0.0, 1.0),
            30,
        );
    }
}

#[test]
fn bf16_input_gives_the_bits_of_f32_with_special_values() {
    // In x: channel 0 holds a NaN, channel 1 an infinity, channel 2 signed zeros only
    // (variance 0: inv_std = 1/sqrt(eps)), channel 3 a constant, channel 4 the largest
    // finite bf16 values (whose squared deviations overflow f32 but not the f64 sums).
    // In dy: channel 2 an infinity, channel 3 signed zeros only, channel 4 a NaN, channel 5
    // the largest finite bf16 values (whose gradients overflow to infinity).
    let (n, c, plane) = (3, 6, 4);
    let mut x = spread(n * c * plane, 22, 0.0, 1.0);
    let mut dy = spread(n * c * plane, 24, 0.0, 1.0);
    for b in 0..n {
        let at = |ch: usize, s: usize| (b * c + ch) * plane + s;
        x[at(0, 1)] = if b == 1 { f32::NAN } else { x[at(0, 1)] };
        x[at(1, 2)] = if b == 2 {
            f32::NEG_INFINITY
        } else {
            x[at(1, 2)]
        };
        dy[at(2, 3)] = if b == 0 { f32::INFINITY } else { dy[at(2, 3)] };
        dy[at(4, 0)] = if b == 2 { f32::NAN } else { dy[at(4, 0)] };
        for s in 0..plane {
            let sign = if (b + s) % 2 == 0 { 1.0 } else { -1.0 };
            x[at(2, s)] = sign * 0.0;
            x[at(3, s)] = 1.25;
            x[at(4, s)] = sign * 3.3e38;
            dy[at(3, s)] = sign * 0.0;
            dy[at(5, s)] = sign * 3.3e38;
        }
    }
    check_bf16_against_f32(&[n, c, 2, 2], &x, &dy, 40);
}

/// A shape, x and dy in [-1, 1), an offset and a scale for x, a scale for dy.
type Case = (Vec<usize>, Vec<f32>, Vec<f32>, f32, f32, f32);

fn shape_and_values() -> impl Strategy<Value = Case> {
    // Batch of at least 2 so that training has more than one value per channel; planes
    // from 1 to 400 values, on both sides of the per-image threshold (256).
    (2usize..6, 1usize..5, 1usize..21, 1usize..21, 2usize..5).prop_flat_map(|(n, c, h, w, rank)| {
        let shape = match rank {
            2 => vec![n, c],
            3 => vec![n, c, h * w],
            _ => vec![n, c, h, w],
        };
        let len: usize = shape.iter().product();
        (
            Just(shape),
            proptest::collection::vec(-1.0f32..1.0, len),
            proptest::collection::vec(-1.0f32..1.0, len),
            -50.0f32..50.0,
            0.01f32..100.0,
            1e-3f32..10.0,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(0xb_f16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn bf16_input_gives_the_bits_of_f32(
        (shape, x, dy, offset, scale, dy_scale) in shape_and_values()
    ) {
        let x: Vec<f32> = x.iter().map(|v| offset + scale * v).collect();
        let dy: Vec<f32> = dy.iter().map(|v| dy_scale * v).collect();
        check_bf16_against_f32(&shape, &x, &dy, 50);
    }
}

/// The error of a call, which must be a Mismatch that names `operand`.
fn assert_mismatch_naming<T: std::fmt::Debug>(result: Result<T>, operand: &str) {
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "batch_norm",
                ..
            }
        ) && err.to_string().contains(&format!("{operand} is ")),
        "{operand}: {err}"
    );
}

/// The error of a call given a `grad_out` of the wrong dtype: a Mismatch naming grad_out
/// and the dtype it must have (the input's).
fn assert_grad_out_refused<T: std::fmt::Debug>(result: Result<T>, expected: DType) {
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains(&format!("expected {expected}")),
        "{err}"
    );
    assert_mismatch_naming(Err::<T, _>(err), "grad_out");
}

#[test]
fn bf16_input_takes_f32_parameters_and_refuses_every_other_mix() {
    let g = BatchNormGeometry::new(&[2, 3], 3).unwrap();
    let of = |dtype: DType, len: usize| Storage::f32(vec![0.5; len]).to_dtype(dtype).unwrap();
    let x = of(DType::BF16, 6);
    let (p, dy) = (of(DType::F32, 3), of(DType::BF16, 6));
    let stats = BatchStats {
        mean: p.clone(),
        inv_std: p.clone(),
    };
    for wrong in [DType::BF16, DType::F64] {
        let bad = of(wrong, 3);
        // Forward, training: each parameter in turn; a refused call leaves the running
        // statistics alone.
        for operand in 0..4 {
            let mut ops = [p.clone(), p.clone(), p.clone(), p.clone()];
            ops[operand] = bad.clone();
            let [gamma, beta, mut rm, mut rv] = ops;
            let before = (rm.clone(), rv.clone());
            let name = ["gamma", "beta", "running_mean", "running_var"][operand];
            assert_mismatch_naming(
                forward_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5, &g),
                name,
            );
            assert_eq!((rm.clone(), rv.clone()), before, "{name}");
            assert_mismatch_naming(forward_eval(&x, &gamma, &beta, &rm, &rv, 1e-5, &g), name);
        }
        // Backward: gamma and each statistic.
        assert_mismatch_naming(backward_train(&x, &bad, &stats, &dy, &g), "gamma");
        for (mean, inv_std, name) in [(&bad, &p, "stats.mean"), (&p, &bad, "stats.inv_std")] {
            let stats = BatchStats {
                mean: mean.clone(),
                inv_std: inv_std.clone(),
            };
            assert_mismatch_naming(backward_train(&x, &p, &stats, &dy, &g), name);
        }
        assert_mismatch_naming(backward_eval(&x, &bad, &p, &p, 1e-5, &dy, &g), "gamma");
        assert_mismatch_naming(
            backward_eval(&x, &p, &bad, &p, 1e-5, &dy, &g),
            "running_mean",
        );
        assert_mismatch_naming(
            backward_eval(&x, &p, &p, &bad, 1e-5, &dy, &g),
            "running_var",
        );
    }
    // grad_out is the gradient of the bf16 output: bf16 too, never f32 (the old autocast
    // rule) or f64.
    for wrong in [DType::F32, DType::F64] {
        let bad_dy = of(wrong, 6);
        assert_grad_out_refused(backward_train(&x, &p, &stats, &bad_dy, &g), DType::BF16);
        assert_grad_out_refused(
            backward_eval(&x, &p, &p, &p, 1e-5, &bad_dy, &g),
            DType::BF16,
        );
    }
    // The mix is for bf16 inputs only: an f32 or f64 input takes parameters, statistics
    // and grad_out of its own dtype, never bf16 ones.
    for dtype in [DType::F32, DType::F64] {
        let x = of(dtype, 6);
        let (own, own_dy, half, half_dy) = (
            of(dtype, 3),
            of(dtype, 6),
            of(DType::BF16, 3),
            of(DType::BF16, 6),
        );
        let (mut rm, mut rv) = (own.clone(), own.clone());
        assert_mismatch_naming(
            forward_train(&x, &half, &own, &mut rm, &mut rv, 0.1, 1e-5, &g),
            "gamma",
        );
        assert_mismatch_naming(
            forward_eval(&x, &own, &own, &own, &half, 1e-5, &g),
            "running_var",
        );
        let stats = BatchStats {
            mean: own.clone(),
            inv_std: own.clone(),
        };
        assert_grad_out_refused(backward_train(&x, &own, &stats, &half_dy, &g), dtype);
        assert_grad_out_refused(
            backward_eval(&x, &own, &own, &own, 1e-5, &half_dy, &g),
            dtype,
        );
        assert!(backward_eval(&x, &own, &own, &own, 1e-5, &own_dy, &g).is_ok());
    }
    // And the accepted mix gives a bf16 output and f32 statistics; a bf16 gradient of the
    // input and f32 gradients of the parameters.
    let (mut rm, mut rv) = (p.clone(), p.clone());
    let (y, stats) = forward_train(&x, &p, &p, &mut rm, &mut rv, 0.1, 1e-5, &g).unwrap();
    assert_eq!(
        [y.dtype(), stats.mean.dtype(), stats.inv_std.dtype()],
        [DType::BF16, DType::F32, DType::F32]
    );
    for grads in [
        backward_train(&x, &p, &stats, &dy, &g).unwrap(),
        backward_eval(&x, &p, &p, &p, 1e-5, &dy, &g).unwrap(),
    ] {
        assert_eq!(
            [grads.input.dtype(), grads.gamma.dtype(), grads.beta.dtype()],
            [DType::BF16, DType::F32, DType::F32]
        );
    }
}

#[test]
fn bf16_eval_backward_matches_the_hand_worked_example() {
    // [5, 1] with running_var + eps = 0.75 + 0.25 = 1 and running_mean 0: inv_std = 1, so
    // dx = gamma * dy with gamma = 1 + 2^-8, exact in f32, then rounded to bf16 (spacing
    // 2^-7 in [1, 2), 2^-6 in [2, 4)): 1 + 2^-8 is a tie that goes down to the even 1 (and
    // -1 - 2^-8 to -1); both zeros give +0, as in f32 (the loop adds a zero shift to
    // gamma * dy); 3 + 3 * 2^-8 is past the middle
    // (2^-7) and goes up to 3 + 2^-6. dbeta = sum(dy) = 3 and dgamma = sum(dy * x) =
    // 1 - 2 + 0 + 0 + 3 = 2, in f32.
    let g = BatchNormGeometry::new(&[5, 1], 1).unwrap();
    let grads = backward_eval(
        &rounded(&[1.0, 2.0, 7.0, -7.0, 1.0]),
        &Storage::f32(vec![1.0 + 2f32.powi(-8)]),
        &Storage::f32(vec![0.0]),
        &Storage::f32(vec![0.75]),
        0.25,
        &rounded(&[1.0, -1.0, -0.0, 0.0, 3.0]),
        &g,
    )
    .unwrap();
    assert_eq!(
        bits(&grads.input),
        bits(&rounded(&[1.0, -1.0, 0.0, 0.0, 3.0 + 2f32.powi(-6)]))
    );
    assert_eq!(grads.gamma, Storage::f32(vec![2.0]));
    assert_eq!(grads.beta, Storage::f32(vec![3.0]));
}

#[test]
fn bf16_output_rounds_ties_to_even() {
    // running_var + eps = 0.75 + 0.25 = 1, so inv_std = 1 and y = x - mean + beta exactly
    // in f32. With beta = 2^-8, half of bf16's spacing near 1 (2^-7), every y is a tie:
    // 1 + 2^-8 goes down to the even 1, (1 + 2^-7) + 2^-8 up to the even 1 + 2^-6; and
    // -1 - 2^-8 down in magnitude to -1.
    let g = BatchNormGeometry::new(&[3, 1], 1).unwrap();
    let x = [1.0, 1.0 + 2f32.powi(-7), -1.0 - 2f32.powi(-7)];
    let one = Storage::f32(vec![1.0]);
    let y = forward_eval(
        &rounded(&x),
        &one,
        &Storage::f32(vec![2f32.powi(-8)]),
        &Storage::f32(vec![0.0]),
        &Storage::f32(vec![0.75]),
        0.25,
        &g,
    )
    .unwrap();
    assert_eq!(bits(&y), bits(&rounded(&[1.0, 1.0 + 2f32.powi(-6), -1.0])));
}
