use super::*;
use crate::bf16_values::narrow;
use crate::{CpuStorage, Error};

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

/// Every bf16 bit pattern: NaNs, infinities, signed zeros and subnormals included.
fn every_bf16() -> Vec<bf16> {
    (0..=u16::MAX).map(bf16::from_bits).collect()
}

#[test]
fn every_bf16_input_gives_the_bits_of_the_f32_kernel_on_its_widened_value() {
    let x = every_bf16();
    let wide = Storage::f32(x.iter().map(|&v| widen(v)).collect());
    let dy: Vec<bf16> = (0..x.len())
        .map(|i| bf16::from_f32(0.75 - (i % 13) as f32 * 0.125))
        .collect();
    let wide_dy = Storage::f32(dy.iter().map(|&v| widen(v)).collect());
    // The f32 kernel's results, each rounded once to bf16.
    let narrowed = |s: Storage| -> Vec<u16> {
        let v = s.to_vec_f32().unwrap();
        v.into_iter().map(|v| narrow(v).to_bits()).collect()
    };
    let want_y = narrowed(forward(&wide).unwrap());
    let want_dx = narrowed(backward(&wide, &wide_dy).unwrap());
    let x = Storage::bf16(x);
    let Storage::Cpu(CpuStorage::BF16(y)) = forward(&x).unwrap() else {
        panic!("a bf16 input gives a bf16 output");
    };
    assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_y);
    let Storage::Cpu(CpuStorage::BF16(dx)) = backward(&x, &Storage::bf16(dy)).unwrap() else {
        panic!("a bf16 input gives a bf16 gradient");
    };
    assert_eq!(dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_dx);
}

#[test]
fn bf16_relu_is_exact() {
    // The reference: max(x, 0) in f64, exact for every bf16 value; NaN gives 0 as in the
    // f32 kernel (its comparison is false), and the gradient passes where x > 0.
    let x = every_bf16();
    let y = forward(&Storage::bf16(x.clone()))
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let dx = backward(
        &Storage::bf16(x.clone()),
        &Storage::bf16(vec![bf16::from_f32(2.5); x.len()]),
    )
    .unwrap()
    .to_vec_f64()
    .unwrap();
    for (i, v) in x.iter().map(|v| v.to_f64()).enumerate() {
        let positive = v > 0.0;
        assert_eq!(y[i], if positive { v } else { 0.0 }, "relu({v})");
        assert!(y[i].is_sign_positive() || positive, "relu({v}) = {}", y[i]);
        assert_eq!(dx[i], if positive { 2.5 } else { 0.0 }, "relu'({v})");
    }
}

#[test]
fn a_bf16_input_takes_a_bf16_gradient_and_no_other() {
    crate::test_util::assert_gradients_have_the_input_dtype("relu", backward);
}
