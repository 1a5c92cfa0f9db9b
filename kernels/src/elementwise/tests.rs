use super::*;

#[test]
fn add_and_mul_match_hand_values() {
    let a = Storage::f64(vec![1.5, -2.0, 0.0, 3.0]);
    let b = Storage::f64(vec![0.5, 4.0, -7.0, -3.0]);
    assert_eq!(
        add(&a, &b).unwrap(),
        Storage::f64(vec![2.0, 2.0, -7.0, 0.0])
    );
    assert_eq!(
        mul(&a, &b).unwrap(),
        Storage::f64(vec![0.75, -8.0, -0.0, -9.0])
    );
}

#[test]
fn scale_multiplies_every_element_in_the_buffer_dtype() {
    let a = Storage::f32(vec![1.0, -2.0, 0.25]);
    assert_eq!(
        scale(&a, -4.0).unwrap(),
        Storage::f32(vec![-4.0, 8.0, -1.0])
    );
    assert_eq!(
        scale(&Storage::f64(vec![3.0]), 0.5).unwrap(),
        Storage::f64(vec![1.5])
    );
}

#[test]
fn add_assign_accumulates_in_place() {
    let mut acc = Storage::f32(vec![1.0, 2.0, 3.0]);
    add_assign(&mut acc, &Storage::f32(vec![0.5, -2.0, 10.0])).unwrap();
    add_assign(&mut acc, &Storage::f32(vec![0.5, 1.0, 1.0])).unwrap();
    assert_eq!(acc, Storage::f32(vec![2.0, 1.0, 14.0]));
}

/// Long enough to take the rayon path; integers below 2^24 are exact in f32, so
/// `i + 2i = 3i`, `i * 2 = 2i` and the scaled values are exact.
#[test]
fn large_buffers_take_the_parallel_path_and_stay_exact() {
    let n = 50_000;
    let a = Storage::f32((0..n).map(|i| i as f32).collect());
    let b = Storage::f32((0..n).map(|i| 2.0 * i as f32).collect());
    let three: Vec<f32> = (0..n).map(|i| 3.0 * i as f32).collect();
    assert_eq!(add(&a, &b).unwrap(), Storage::f32(three.clone()));
    assert_eq!(scale(&a, 3.0).unwrap(), Storage::f32(three.clone()));
    let twos = Storage::f32(vec![2.0; n]);
    assert_eq!(mul(&a, &twos).unwrap(), b);
    let mut acc = a.clone();
    add_assign(&mut acc, &b).unwrap();
    assert_eq!(acc, Storage::f32(three));
}

#[test]
fn empty_operands_give_empty_results() {
    let e = Storage::f64(vec![]);
    assert_eq!(add(&e, &e).unwrap(), e);
    assert_eq!(scale(&e, 2.0).unwrap(), e);
}

#[test]
fn length_mismatch_names_the_op_and_both_lengths() {
    let a = Storage::f32(vec![1.0; 3]);
    let b = Storage::f32(vec![1.0; 2]);
    for (op, err) in [
        ("add", add(&a, &b).unwrap_err()),
        ("mul", mul(&a, &b).unwrap_err()),
        ("add_assign", add_assign(&mut a.clone(), &b).unwrap_err()),
    ] {
        assert!(
            matches!(err, Error::Shape { op: o, .. } if o == op),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(op) && msg.contains('3') && msg.contains('2'),
            "{msg}"
        );
    }
}

#[test]
fn mixed_dtypes_are_rejected() {
    let a = Storage::f32(vec![1.0]);
    let b = Storage::f64(vec![1.0]);
    let err = add(&a, &b).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "add", .. }), "{err}");
    let err = add_assign(&mut b.clone(), &a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "add_assign",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lerp_assign_moves_each_element_a_fraction_of_the_way() {
    // acc + w (end - acc): 1 + 0.25 (5 - 1) = 2, -2 + 0.25 (2 + 2) = -1, 3 stays at 3.
    let mut acc = Storage::f64(vec![1.0, -2.0, 3.0]);
    lerp_assign(&mut acc, &Storage::f64(vec![5.0, 2.0, 3.0]), 0.25).unwrap();
    assert_eq!(acc, Storage::f64(vec![2.0, -1.0, 3.0]));
    // Weight 1 lands on `end`, weight 0 stays put.
    let mut acc = Storage::f32(vec![1.5, -7.0]);
    lerp_assign(&mut acc, &Storage::f32(vec![4.0, 8.0]), 1.0).unwrap();
    assert_eq!(acc, Storage::f32(vec![4.0, 8.0]));
    lerp_assign(&mut acc, &Storage::f32(vec![0.0, 0.0]), 0.0).unwrap();
    assert_eq!(acc, Storage::f32(vec![4.0, 8.0]));
}

#[test]
fn lerp_assign_checks_lengths_types_and_the_weight() {
    let mut acc = Storage::f32(vec![1.0; 3]);
    let err = lerp_assign(&mut acc, &Storage::f32(vec![1.0; 2]), 0.5).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "lerp", .. }), "{err}");
    let err = lerp_assign(&mut acc, &Storage::f64(vec![1.0; 3]), 0.5).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "lerp", .. }), "{err}");
    let err = lerp_assign(&mut acc, &Storage::f32(vec![1.0; 3]), f64::NAN).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "lerp", .. }),
        "{err}"
    );
    assert_eq!(acc, Storage::f32(vec![1.0; 3]));
}
