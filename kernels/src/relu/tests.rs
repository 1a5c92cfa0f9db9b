use super::*;
use crate::Error;

#[test]
fn forward_clamps_negatives_and_keeps_positives() {
    let y = forward(&Storage::f64(vec![-2.0, -0.0, 0.0, 0.5, 3.0])).unwrap();
    assert_eq!(y, Storage::f64(vec![0.0, 0.0, 0.0, 0.5, 3.0]));
}

#[test]
fn backward_passes_gradient_only_where_the_input_is_positive() {
    // Negative, zero, NaN and positive inputs: only the positive ones let the gradient through.
    let x = Storage::f32(vec![-1.0, 1.5, 0.0, 2.0, f32::NAN]);
    let g = Storage::f32(vec![10.0, 20.0, 30.0, 40.0, 50.0]);
    assert_eq!(
        backward(&x, &g).unwrap(),
        Storage::f32(vec![0.0, 20.0, 0.0, 40.0, 0.0])
    );
}

#[test]
fn backward_rejects_a_gradient_of_another_length() {
    let err = backward(&Storage::f32(vec![1.0; 3]), &Storage::f32(vec![1.0; 2])).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "relu", .. }), "{err}");
}

#[test]
fn backward_rejects_mixed_dtypes() {
    let err = backward(&Storage::f32(vec![1.0]), &Storage::f64(vec![1.0])).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "relu", .. }), "{err}");
}
