use super::*;
use crate::test_util::{assert_close_scaled, values};

fn check(m: usize, k: usize, n: usize, seed: u64) {
    let g = MatmulGeometry::new(&[m, k], &[k, n]).unwrap();
    let (a, b, gc) = (
        values(m * k, seed),
        values(k * n, seed + 1),
        values(m * n, seed + 2),
    );
    let (mut c, mut ga, mut gb) = (vec![0.0; m * n], vec![0.0; m * k], vec![0.0; k * n]);
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
                ga[i * k + p] += gc[i * n + j] * b[p * n + j];
                gb[p * n + j] += a[i * k + p] * gc[i * n + j];
            }
        }
    }
    let s = |v: &[f64]| Storage::f64(v.to_vec());
    assert_close_scaled("f64 c", &forward(&s(&a), &s(&b), &g).unwrap(), &c, 1e-12);
    let (got_a, got_b) = backward(&s(&a), &s(&b), &s(&gc), &g).unwrap();
    assert_close_scaled("f64 da", &got_a, &ga, 1e-12);
    assert_close_scaled("f64 db", &got_b, &gb, 1e-12);

    let s32 = |v: &[f64]| Storage::f32(v.iter().map(|&x| x as f32).collect());
    assert_close_scaled("f32 c", &forward(&s32(&a), &s32(&b), &g).unwrap(), &c, 1e-4);
    let (got_a, got_b) = backward(&s32(&a), &s32(&b), &s32(&gc), &g).unwrap();
    assert_close_scaled("f32 da", &got_a, &ga, 1e-4);
    assert_close_scaled("f32 db", &got_b, &gb, 1e-4);
}

#[test]
fn hand_computed_product_and_gradients() {
    let g = MatmulGeometry::new(&[2, 3], &[3, 1]).unwrap();
    let a = Storage::f64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = Storage::f64(vec![1.0, 0.0, -1.0]);
    assert_eq!(forward(&a, &b, &g).unwrap(), Storage::f64(vec![-2.0, -2.0]));
    let (ga, gb) = backward(&a, &b, &Storage::f64(vec![1.0, 2.0]), &g).unwrap();
    // da = gc b^T, db = a^T gc.
    assert_eq!(ga, Storage::f64(vec![1.0, 0.0, -1.0, 2.0, 0.0, -2.0]));
    assert_eq!(gb, Storage::f64(vec![9.0, 12.0, 15.0]));
}

#[test]
fn matches_naive_loops() {
    for (idx, &(m, k, n)) in [(1, 1, 1), (3, 5, 7), (7, 1, 3), (1, 9, 4), (33, 65, 129)]
        .iter()
        .enumerate()
    {
        check(m, k, n, idx as u64);
    }
}

#[test]
fn rejects_mismatched_shapes() {
    let err = MatmulGeometry::new(&[2, 3], &[4, 5]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "matmul", .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
    let err = MatmulGeometry::new(&[2, 3, 1], &[3, 5]).unwrap_err();
    assert!(err
        .to_string()
        .contains("matmul: both operands must be 2-D"));
    assert!(MatmulGeometry::new(&[usize::MAX, 2], &[2, 3]).is_err());
}

#[test]
fn rejects_buffers_that_disagree_with_the_geometry() {
    let g = MatmulGeometry::new(&[2, 3], &[3, 4]).unwrap();
    let (a, b) = (Storage::f32(vec![0.0; 6]), Storage::f32(vec![0.0; 12]));
    let err = forward(&Storage::f32(vec![0.0; 5]), &b, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "matmul", .. }), "{err}");
    assert!(forward(&a, &Storage::f32(vec![0.0; 13]), &g).is_err());
    let err = backward(&a, &b, &Storage::f32(vec![0.0; 7]), &g).unwrap_err();
    assert!(err.to_string().contains("grad_out"), "{err}");
    let err = forward(&a, &Storage::f64(vec![0.0; 12]), &g).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "matmul", .. }), "{err}");
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    let g = MatmulGeometry::new(&[2, 0], &[0, 3]).unwrap();
    let empty = Storage::f64(vec![]);
    assert_eq!(
        forward(&empty, &empty, &g).unwrap(),
        Storage::f64(vec![0.0; 6])
    );
}
