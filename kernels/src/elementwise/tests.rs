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

#[test]
fn bf16_add_assign_adds_in_f32_and_rounds_the_sum_once() {
    use half::bf16;
    // By hand: 1 + 2^-8 lies halfway between the bf16 neighbours 1 and 1 + 2^-7 and
    // rounds to the even one, 1; (1 + 2^-7) + 2^-8 is halfway too and rounds to the even
    // 1 + 2^-6; -0 + -0 stays -0; MAX + MAX overflows to infinity.
    let b = |v: f32| bf16::from_f32(v);
    let tiny = 2f32.powi(-8);
    let mut acc = Storage::bf16(vec![b(1.0), b(1.0 + 2.0 * tiny), b(-0.0), b(f32::MAX)]);
    let x = Storage::bf16(vec![b(tiny), b(tiny), b(-0.0), b(f32::MAX)]);
    add_assign(&mut acc, &x).unwrap();
    let got = acc.to_vec_f32().unwrap();
    assert_eq!(got[0], 1.0);
    assert_eq!(got[1], 1.0 + 4.0 * tiny);
    assert!(got[2] == 0.0 && got[2].is_sign_negative());
    assert_eq!(got[3], f32::INFINITY);
    let err = add_assign(&mut acc, &Storage::f32(vec![1.0; 4])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "add_assign: operands disagree: x is f32 on cpu, expected bf16 on cpu"
    );
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
