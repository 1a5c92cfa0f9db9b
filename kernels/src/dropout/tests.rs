use super::*;
use crate::Error;

/// SplitMix64 as its authors wrote it: a state advanced by the golden gamma, then mixed.
/// `uniform(seed, i)` must be the top 24 bits of output number `i + 1` of this generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn top24(z: u64) -> f32 {
    (z >> 40) as f32 / 16_777_216.0
}

#[test]
fn uniform_is_the_splitmix64_stream() {
    // Published SplitMix64 outputs for seed 0 and seed 1234567.
    let known: [(u64, [u64; 3]); 2] = [
        (
            0,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F,
            ],
        ),
        (
            1_234_567,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
            ],
        ),
    ];
    for (seed, outputs) in known {
        let mut rng = SplitMix64(seed);
        for (i, &z) in outputs.iter().enumerate() {
            assert_eq!(rng.next(), z, "seed {seed}, output {i}");
            assert_eq!(uniform(seed, i as u64), top24(z), "seed {seed}, index {i}");
        }
    }
    for seed in [1, 42, u64::MAX] {
        let mut rng = SplitMix64(seed);
        for i in 0..1000 {
            assert_eq!(
                uniform(seed, i),
                top24(rng.next()),
                "seed {seed}, index {i}"
            );
        }
    }
}

#[test]
fn uniform_lies_in_the_unit_interval_with_mean_one_half() {
    let n = 200_000;
    let values: Vec<f32> = (0..n).map(|i| uniform(7, i)).collect();
    assert!(values.iter().all(|&u| (0.0..1.0).contains(&u)));
    let mean = values.iter().map(|&u| u as f64).sum::<f64>() / n as f64;
    // Standard deviation of the mean: sqrt(1/12 / n) ~ 6.5e-4.
    assert!((mean - 0.5).abs() < 5e-3, "{mean}");
}

fn kept(y: &Storage) -> Vec<bool> {
    y.to_vec_f64().unwrap().iter().map(|&v| v != 0.0).collect()
}

#[test]
fn kept_fraction_is_close_to_one_minus_p() {
    let n = 400_000;
    let x = Storage::f32(vec![1.0; n]);
    for p in [0.1, 0.5, 0.8] {
        let fraction = kept(&forward(&x, p, 1234).unwrap())
            .iter()
            .filter(|&&k| k)
            .count() as f64
            / n as f64;
        // Standard deviation sqrt(p (1 - p) / n) <= 8e-4.
        assert!(
            (fraction - (1.0 - p)).abs() < 5e-3,
            "p {p}: kept {fraction}"
        );
    }
}

#[test]
fn element_is_kept_iff_its_uniform_reaches_p_and_scaled_by_the_inverse_keep_rate() {
    // Long enough to span many parallel blocks: the mask depends on the global index only.
    let n = 50_000;
    let x: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    for (p, scale) in [(0.5, 2.0), (0.75, 4.0), (0.2, 1.25)] {
        let y = forward(&Storage::f64(x.clone()), p, 99)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
            let expected = if uniform(99, i as u64) as f64 >= p {
                x * scale
            } else {
                0.0
            };
            assert_eq!(y, expected, "p {p}, element {i}");
        }
    }
}

#[test]
fn an_element_whose_uniform_equals_p_is_kept() {
    let seed = 5;
    let u = uniform(seed, 3) as f64;
    let y = kept(&forward(&Storage::f64(vec![1.0; 8]), u, seed).unwrap());
    assert!(y[3]);
    for (i, &k) in y.iter().enumerate() {
        assert_eq!(k, uniform(seed, i as u64) as f64 >= u, "element {i}");
    }
}

#[test]
fn same_seed_same_mask_different_seed_different_mask() {
    let x = Storage::f32(vec![1.0; 10_000]);
    let a = kept(&forward(&x, 0.5, 1).unwrap());
    assert_eq!(a, kept(&forward(&x, 0.5, 1).unwrap()));
    for seed in [2, 1 << 40] {
        let b = kept(&forward(&x, 0.5, seed).unwrap());
        // Two independent masks agree on about half the elements.
        let agree = a.iter().zip(&b).filter(|(a, b)| a == b).count() as f64 / a.len() as f64;
        assert!((agree - 0.5).abs() < 0.05, "seed {seed}: agree {agree}");
    }
}

#[test]
fn backward_applies_the_forward_mask_and_scale() {
    let n = 10_000;
    let x = Storage::f32((0..n).map(|i| 1.0 + (i % 7) as f32).collect());
    let dy = Storage::f32((0..n).map(|i| -1.0 - (i % 5) as f32).collect());
    let y = forward(&x, 0.3, 77).unwrap();
    let dx = backward(&dy, 0.3, 77).unwrap();
    assert_eq!(kept(&y), kept(&dx));
    let (dy, dx) = (dy.to_vec_f32().unwrap(), dx.to_vec_f32().unwrap());
    let scale = (1.0 / 0.7f64) as f32;
    for i in 0..n {
        assert!(dx[i] == 0.0 || dx[i] == dy[i] * scale, "element {i}");
    }
}

#[test]
fn p_zero_is_the_identity_and_p_one_gives_zeros() {
    let x = Storage::f64(vec![1.5, -2.0, 0.25, 7.0, -0.5]);
    assert_eq!(forward(&x, 0.0, 3).unwrap(), x);
    assert_eq!(backward(&x, 0.0, 3).unwrap(), x);
    assert_eq!(forward(&x, 1.0, 3).unwrap(), Storage::f64(vec![0.0; 5]));
    assert_eq!(backward(&x, 1.0, 3).unwrap(), Storage::f64(vec![0.0; 5]));
    assert_eq!(
        forward(&Storage::f32(vec![]), 0.5, 3).unwrap(),
        Storage::f32(vec![])
    );
}

#[test]
fn refuses_a_probability_outside_zero_one() {
    for p in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        for err in [
            forward(&Storage::f32(vec![1.0; 4]), p, 0).unwrap_err(),
            backward(&Storage::f64(vec![1.0; 4]), p, 0).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::InvalidArgument { op: "dropout", .. }),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("got {p}")) && text.contains("4 elements"),
                "{text}"
            );
        }
    }
}

#[test]
fn dropped_elements_are_exactly_zero_even_when_not_finite() {
    let (p, seed) = (0.5, 11);
    let x: Vec<f64> = (0..64)
        .map(|i| if i % 2 == 0 { f64::NAN } else { f64::INFINITY })
        .collect();
    let y = forward(&Storage::f64(x), p, seed)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    for (i, &y) in y.iter().enumerate() {
        if (uniform(seed, i as u64) as f64) < p {
            assert_eq!(y, 0.0, "element {i}");
        } else {
            assert!(!y.is_finite(), "element {i}: {y}");
        }
    }
}
