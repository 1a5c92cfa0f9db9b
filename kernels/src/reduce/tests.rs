use super::*;

#[test]
fn sum_matches_hand_values() {
    assert_eq!(
        sum(&Storage::f64(vec![1.0, -2.5, 4.0, 0.25])).unwrap(),
        Storage::f64(vec![2.75])
    );
    // 1 + 2 + ... + 100 = 100 * 101 / 2; 100 elements exercise the 8-lane loop and its tail.
    let x: Vec<f32> = (1..=100).map(|i| i as f32).collect();
    assert_eq!(sum(&Storage::f32(x)).unwrap(), Storage::f32(vec![5050.0]));
}

#[test]
fn sum_of_nothing_is_zero() {
    assert_eq!(sum(&Storage::f32(vec![])).unwrap(), Storage::f32(vec![0.0]));
}

/// 0.1f32 is 13421773 * 2^-27; 2^22 copies of it sum to 13421773 * 2^-5 exactly (a 24-bit
/// integer times a power of two), which f64 holds exactly. So an f64 accumulation must
/// return that value rounded once to f32. A running f32 total is off by about 1% here.
#[test]
fn f32_sum_of_many_tenths_is_correctly_rounded() {
    let n = 1usize << 22;
    let exact = n as f64 * 0.1f32 as f64;
    assert_eq!(exact, 13421773.0 / 32.0);
    let got = sum(&Storage::f32(vec![0.1; n]))
        .unwrap()
        .to_vec_f64()
        .unwrap()[0];
    assert_eq!(got, exact as f32 as f64);

    let naive = vec![0.1f32; n].iter().fold(0.0f32, |a, &b| a + b) as f64;
    assert!(
        (naive - exact).abs() / exact > 1e-3,
        "naive f32 sum {naive} unexpectedly good"
    );
}

/// Integers up to 2^24 are exact in f32, and their f64 partial sums are exact too.
#[test]
fn parallel_sum_of_integers_is_exact() {
    let n = 100_003u64;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let expected: u64 = (0..n).map(|i| i % 1000).sum();
    assert_eq!(
        sum(&Storage::f32(x)).unwrap(),
        Storage::f32(vec![expected as f32])
    );
}

#[test]
fn broadcast_scalar_fills_with_the_scaled_value() {
    assert_eq!(
        broadcast_scalar(&Storage::f32(vec![3.0]), 4, 0.25).unwrap(),
        Storage::f32(vec![0.75; 4])
    );
    assert_eq!(
        broadcast_scalar(&Storage::f64(vec![-2.0]), 0, 1.0).unwrap(),
        Storage::f64(vec![])
    );
}

#[test]
fn broadcast_scalar_rejects_a_non_scalar() {
    for bad in [vec![], vec![1.0, 2.0]] {
        let err = broadcast_scalar(&Storage::f64(bad), 3, 1.0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Shape {
                    op: "broadcast_scalar",
                    ..
                }
            ),
            "{err}"
        );
    }
}
