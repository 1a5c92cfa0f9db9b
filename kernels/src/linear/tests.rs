use super::*;
use crate::test_util::{assert_close_scaled, values};

/// `y[n][o] = b[o] + sum_i x[n][i] w[o][i]` and its gradients, term by term.
#[allow(clippy::type_complexity)]
fn naive(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    gy: &[f64],
    (n, i, o): (usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut gx, mut gw, mut gb) = (
        vec![0.0; n * o],
        vec![0.0; n * i],
        vec![0.0; o * i],
        vec![0.0; o],
    );
    for r in 0..n {
        for c in 0..o {
            y[r * o + c] = b[c];
            gb[c] += gy[r * o + c];
            for k in 0..i {
                y[r * o + c] += x[r * i + k] * w[c * i + k];
                gx[r * i + k] += gy[r * o + c] * w[c * i + k];
                gw[c * i + k] += gy[r * o + c] * x[r * i + k];
            }
        }
    }
    (y, gx, gw, gb)
}

fn check(n: usize, i: usize, o: usize, seed: u64) {
    let g = LinearGeometry::new(&[n, i], &[o, i]).unwrap();
    let (x, w, b, gy) = (
        values(n * i, seed),
        values(o * i, seed + 1),
        values(o, seed + 2),
        values(n * o, seed + 3),
    );
    let (y, gx, gw, gb) = naive(&x, &w, &b, &gy, (n, i, o));

    let s = |v: &[f64]| Storage::f64(v.to_vec());
    let got = forward(&s(&x), &s(&w), Some(&s(&b)), &g).unwrap();
    assert_close_scaled("f64 y", &got, &y, 1e-12);
    let grads = backward(&s(&x), &s(&w), &s(&gy), &g, true, true).unwrap();
    assert_close_scaled("f64 dx", grads.input.as_ref().unwrap(), &gx, 1e-12);
    assert_close_scaled("f64 dw", &grads.weight, &gw, 1e-12);
    assert_close_scaled("f64 db", grads.bias.as_ref().unwrap(), &gb, 1e-12);

    let s32 = |v: &[f64]| Storage::f32(v.iter().map(|&x| x as f32).collect());
    let got = forward(&s32(&x), &s32(&w), None, &g).unwrap();
    let y_no_bias: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(idx, v)| v - b[idx % o.max(1)])
        .collect();
    assert_close_scaled("f32 y", &got, &y_no_bias, 1e-4);
    let grads = backward(&s32(&x), &s32(&w), &s32(&gy), &g, false, false).unwrap();
    assert!(grads.input.is_none() && grads.bias.is_none());
    assert_close_scaled("f32 dw", &grads.weight, &gw, 1e-4);
}

#[test]
fn hand_computed_layer() {
    // x = [1 2; 3 4], W = [1 0; 0 1; 1 1], b = [0.5, -0.5, 0]
    let g = LinearGeometry::new(&[2, 2], &[3, 2]).unwrap();
    let x = Storage::f64(vec![1.0, 2.0, 3.0, 4.0]);
    let w = Storage::f64(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let b = Storage::f64(vec![0.5, -0.5, 0.0]);
    let y = forward(&x, &w, Some(&b), &g).unwrap();
    assert_eq!(y, Storage::f64(vec![1.5, 1.5, 3.0, 3.5, 3.5, 7.0]));

    let gy = Storage::f64(vec![1.0, 0.0, 2.0, 0.0, 1.0, -1.0]);
    let grads = backward(&x, &w, &gy, &g, true, true).unwrap();
    // dx = gy W, dW = gy^T x, db = column sums of gy.
    assert_eq!(grads.input, Some(Storage::f64(vec![3.0, 2.0, -1.0, 0.0])));
    assert_eq!(
        grads.weight,
        Storage::f64(vec![1.0, 2.0, 3.0, 4.0, -1.0, 0.0])
    );
    assert_eq!(grads.bias, Some(Storage::f64(vec![1.0, 1.0, 1.0])));
}

#[test]
fn matches_naive_loops() {
    for (idx, &(n, i, o)) in [(1, 1, 1), (3, 5, 7), (7, 1, 3), (4, 9, 1), (13, 17, 300)]
        .iter()
        .enumerate()
    {
        check(n, i, o, idx as u64);
    }
}

#[test]
fn matches_naive_loops_on_notebook_sized_layers() {
    // Large enough for the products to run in parallel.
    check(32, 512, 130, 40);
}

#[test]
fn forward_flops_counts_two_per_multiply_add() {
    let g = LinearGeometry::new(&[4, 8192], &[1024, 8192]).unwrap();
    assert_eq!(g.forward_flops(), 2.0 * 4.0 * 8192.0 * 1024.0);
}

#[test]
fn rejects_mismatched_shapes() {
    let err = LinearGeometry::new(&[4, 3], &[5, 2]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "linear", .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("[4, 3]") && msg.contains("[5, 2]"), "{msg}");
    assert!(LinearGeometry::new(&[4, 3, 1], &[5, 3])
        .unwrap_err()
        .to_string()
        .contains("linear: input must be 2-D"));
    assert!(LinearGeometry::new(&[4, 3], &[3])
        .unwrap_err()
        .to_string()
        .contains("linear: weight must be 2-D"));
    assert!(LinearGeometry::new(&[usize::MAX, 3], &[5, 3]).is_err());
}

#[test]
fn rejects_buffers_that_disagree_with_the_geometry() {
    let g = LinearGeometry::new(&[2, 3], &[4, 3]).unwrap();
    let x = Storage::f32(vec![0.0; 6]);
    let w = Storage::f32(vec![0.0; 12]);
    let err = forward(&Storage::f32(vec![0.0; 5]), &w, None, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "linear", .. }), "{err}");
    assert!(forward(&x, &Storage::f32(vec![0.0; 11]), None, &g).is_err());
    let err = forward(&x, &w, Some(&Storage::f32(vec![0.0; 3])), &g).unwrap_err();
    assert!(err.to_string().contains("bias has 3 elements"), "{err}");
    let err = backward(&x, &w, &Storage::f32(vec![0.0; 7]), &g, true, true).unwrap_err();
    assert!(err.to_string().contains("grad_out"), "{err}");
    let err = forward(&x, &Storage::f64(vec![0.0; 12]), None, &g).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "linear", .. }), "{err}");
}

#[test]
fn empty_batch_gives_zero_weight_gradient() {
    let g = LinearGeometry::new(&[0, 3], &[2, 3]).unwrap();
    let w = Storage::f64(vec![1.0; 6]);
    let empty = Storage::f64(vec![]);
    assert!(forward(&empty, &w, None, &g).unwrap().is_empty());
    let grads = backward(&empty, &w, &empty, &g, true, true).unwrap();
    assert_eq!(grads.weight, Storage::f64(vec![0.0; 6]));
    assert_eq!(grads.bias, Some(Storage::f64(vec![0.0; 2])));
}
