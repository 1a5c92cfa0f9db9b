//! Every number section 4 of the notebook prints, reproduced from the same seeds;
//! the backward passes against central finite differences; padding worked out by hand.

use super::*;
use proptest::prelude::*;

/// The notebook prints arrays to 8 decimals, so a correct value is within half a unit
/// of the last printed digit.
const PRINTED_8_DECIMALS: f64 = 5e-9;

fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual:e}, expected {expected:e} (tolerance {tol:e})"
    );
}

fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (k, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert_close(a, e, tol, &format!("{what}[{k}]"));
    }
}

// ---------------------------------------------------------------------------------
// NumpyRng
// ---------------------------------------------------------------------------------

#[test]
fn mt19937_matches_the_reference_outputs_of_init_genrand_5489() {
    let mut rng = NumpyRng::new(5489);
    let first: Vec<u32> = (0..5).map(|_| rng.next_u32()).collect();
    assert_eq!(
        first,
        [3499211612, 581869302, 3890346734, 3586334585, 545404204]
    );
    // C++11 [rand.predef]: the 10000th output of a default-seeded mt19937.
    let mut rng = NumpyRng::new(5489);
    let ten_thousandth = (0..10_000).map(|_| rng.next_u32()).last().unwrap();
    assert_eq!(ten_thousandth, 4123659995);
}

// The expected values below were printed by NumPy 2.4 (legacy `np.random`), repr'd
// to 17 significant digits; the generator must match them to the last bit.

#[test]
fn random_sample_matches_numpy() {
    // np.random.seed(0); np.random.random_sample(3)
    let mut rng = NumpyRng::new(0);
    let got: Vec<f64> = (0..3).map(|_| rng.random_sample()).collect();
    assert_eq!(
        got,
        [0.5488135039273248, 0.7151893663724195, 0.6027633760716439]
    );
}

#[test]
fn randn_matches_numpy() {
    // np.random.seed(1); np.random.randn(5)
    let mut rng = NumpyRng::new(1);
    assert_eq!(
        rng.randn_vec(5),
        [
            1.6243453636632417,
            -0.6117564136500754,
            -0.5281717522634557,
            -1.0729686221561705,
            0.8654076293246785
        ]
    );
    // np.random.seed(4294967295); np.random.randn(3); np.random.random_sample()
    let mut rng = NumpyRng::new(u32::MAX);
    assert_eq!(
        rng.randn_vec(3),
        [0.6484086742306527, 0.6693235306338161, -1.0805437227474493]
    );
    // randn(3) drew two pairs: the cached fourth normal does not touch the uniform stream.
    assert_eq!(rng.random_sample(), 0.9093750727977705);
}

#[test]
fn randn_array4_fills_in_c_order() {
    // np.random.seed(0); np.random.randn(2, 3), seen as shape (1, 2, 3, 1)
    let a = NumpyRng::new(0).randn_array4([1, 2, 3, 1]);
    assert_eq!(a.shape, [1, 2, 3, 1]);
    assert_eq!(a.get([0, 0, 2, 0]), 0.9787379841057392);
    assert_eq!(a.get([0, 1, 0, 0]), 2.240893199201458);
    assert_eq!(a.get([0, 1, 2, 0]), -0.977277879876411);
}

#[test]
fn reseeding_discards_the_cached_gaussian() {
    // np.random.seed(7); randn(); np.random.seed(7); randn(); randn()
    let mut rng = NumpyRng::new(7);
    assert_eq!(rng.randn(), 1.690525703800356);
    rng = NumpyRng::new(7);
    assert_eq!(rng.randn(), 1.690525703800356);
    assert_eq!(rng.randn(), -0.4659373705408328);
}

// ---------------------------------------------------------------------------------
// Array4
// ---------------------------------------------------------------------------------

#[test]
fn array4_indexes_in_c_order() {
    let a = Array4::from_vec([2, 1, 2, 3], (0..12).map(f64::from).collect());
    assert_eq!(a.get([0, 0, 0, 2]), 2.0);
    assert_eq!(a.get([0, 0, 1, 0]), 3.0);
    assert_eq!(a.get([1, 0, 1, 2]), 11.0);
    assert_eq!(a.mean(), 5.5);
}

#[test]
fn nchw_conversion_moves_channels_and_round_trips() {
    // One image, 2 channels of 2x2: channel 0 holds 0..4, channel 1 holds 10..14.
    let nchw = [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0];
    let a = Array4::from_nchw([1, 2, 2, 2], &nchw);
    assert_eq!(a.shape, [1, 2, 2, 2]);
    // NHWC: for each pixel, its two channel values side by side.
    assert_eq!(a.data, [0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0]);
    assert_eq!(a.to_nchw(), nchw);

    let b = NumpyRng::new(3).randn_array4([2, 3, 4, 5]);
    assert_eq!(Array4::from_nchw([2, 5, 3, 4], &b.to_nchw()), b);
}

#[test]
#[should_panic(expected = "do not fill shape")]
fn from_vec_rejects_a_wrong_length() {
    Array4::from_vec([1, 2, 2, 1], vec![0.0; 3]);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn get_checks_each_axis() {
    // [0, 0, 2, 0] would be a valid flat offset (2) but is outside axis 2.
    Array4::zeros([1, 2, 2, 1]).get([0, 0, 2, 0]);
}

// ---------------------------------------------------------------------------------
// Notebook section 4, number for number
// ---------------------------------------------------------------------------------

#[test]
fn notebook_4_1_conv_single_step() {
    let mut rng = NumpyRng::new(1);
    let a_slice_prev = rng.randn_vec(4 * 4 * 3);
    let w = rng.randn_vec(4 * 4 * 3);
    let b = rng.randn();
    let z = conv_single_step(&a_slice_prev, &w, b);
    assert_close(z, -6.999089450680221, 1e-12, "Z");
}

#[test]
fn conv_single_step_by_hand() {
    assert_eq!(
        conv_single_step(&[1.0, 2.0, 3.0], &[4.0, 5.0, -6.0], 0.5),
        -3.5
    );
}

#[test]
fn notebook_4_2_zero_pad() {
    let x = NumpyRng::new(1).randn_array4([4, 3, 3, 2]);
    let x_pad = zero_pad(&x, 2);
    assert_eq!(x.shape, [4, 3, 3, 2]);
    assert_eq!(x_pad.shape, [4, 7, 7, 2]);

    let x_1_1: Vec<f64> = (0..3)
        .flat_map(|w| (0..2).map(move |c| (w, c)))
        .map(|(w, c)| x.get([1, 1, w, c]))
        .collect();
    let printed = [
        0.90085595,
        -0.68372786,
        -0.12289023,
        -0.93576943,
        -0.26788808,
        0.53035547,
    ];
    assert_all_close(&x_1_1, &printed, PRINTED_8_DECIMALS, "x[1,1]");

    for w in 0..7 {
        for c in 0..2 {
            assert_eq!(x_pad.get([1, 1, w, c]), 0.0, "x_pad[1,1,{w},{c}]");
        }
    }
    // And the interior is x, shifted by the border.
    assert_eq!(x_pad.get([1, 3, 2, 0]), x.get([1, 1, 0, 0]));
    assert_eq!(x_pad.get([3, 4, 4, 1]), x.get([3, 2, 2, 1]));
}

#[test]
fn notebook_4_3_conv_forward() {
    let mut rng = NumpyRng::new(1);
    let a_prev = rng.randn_array4([10, 5, 7, 4]);
    let w = rng.randn_array4([3, 3, 4, 8]);
    let b = rng.randn_vec(8);
    let z = conv_forward(&a_prev, &w, &b, ConvParams { stride: 2, pad: 1 });

    assert_eq!(z.shape, [10, 3, 4, 8]);
    assert_close(z.mean(), 0.6923608807576933, 1e-12, "Z's mean");

    let z_3_2_1: Vec<f64> = (0..8).map(|c| z.get([3, 2, 1, c])).collect();
    let printed = [
        -1.28912231,
        2.27650251,
        6.61941931,
        0.95527176,
        8.25132576,
        2.31329639,
        13.00689405,
        2.34576051,
    ];
    assert_all_close(&z_3_2_1, &printed, PRINTED_8_DECIMALS, "Z[3,2,1]");

    // cache_conv[0] is A_prev itself.
    let a_1_2_3: Vec<f64> = (0..4).map(|c| a_prev.get([1, 2, 3, c])).collect();
    let printed = [-1.1191154, 1.9560789, -0.3264995, -1.34267579];
    assert_all_close(
        &a_1_2_3,
        &printed,
        PRINTED_8_DECIMALS,
        "cache_conv[0][1][2][3]",
    );
}

#[test]
fn notebook_4_4_pool_forward_max() {
    let a_prev = NumpyRng::new(1).randn_array4([2, 5, 5, 3]);
    let hp = PoolParams {
        f: 3,
        stride: 1,
        pad: 0,
    };
    let a = pool_forward(&a_prev, hp, PoolMode::Max);
    assert_eq!(a.shape, [2, 3, 3, 3]);
    #[rustfmt::skip]
    let printed = [
        1.74481176, 0.90159072, 1.65980218,
        1.74481176, 1.46210794, 1.65980218,
        1.74481176, 1.6924546, 1.65980218,
        1.14472371, 0.90159072, 2.10025514,
        1.14472371, 0.90159072, 1.65980218,
        1.14472371, 1.6924546, 1.65980218,
        1.13162939, 1.51981682, 2.18557541,
        1.13162939, 1.51981682, 2.18557541,
        1.13162939, 1.6924546, 2.18557541,
        1.19891788, 0.84616065, 0.82797464,
        0.69803203, 0.84616065, 1.2245077,
        0.69803203, 1.12141771, 1.2245077,
        1.96710175, 0.84616065, 1.27375593,
        1.96710175, 0.84616065, 1.23616403,
        1.62765075, 1.12141771, 1.2245077,
        1.96710175, 0.86888616, 1.27375593,
        1.96710175, 0.86888616, 1.23616403,
        1.62765075, 1.12141771, 0.79280687,
    ];
    assert_all_close(&a.data, &printed, PRINTED_8_DECIMALS, "A (max)");
}

#[test]
fn notebook_4_4_pool_forward_average() {
    let a_prev = NumpyRng::new(1).randn_array4([2, 5, 5, 3]);
    let hp = PoolParams {
        f: 3,
        stride: 1,
        pad: 0,
    };
    let a = pool_forward(&a_prev, hp, PoolMode::Average);
    assert_eq!(a.shape, [2, 3, 3, 3]);
    #[rustfmt::skip]
    let printed = [
        -3.01046719e-02, -3.24021315e-03, -3.36298859e-01,
        1.43310483e-01, 1.93146751e-01, -4.44905196e-01,
        1.28934436e-01, 2.22428468e-01, 1.25067597e-01,
        -3.81801899e-01, 1.59993515e-02, 1.70562706e-01,
        4.73707165e-02, 2.59244658e-02, 9.20338402e-02,
        3.97048605e-02, 1.57189094e-01, 3.45302489e-01,
        -3.82680519e-01, 2.32579951e-01, 6.25997903e-01,
        -2.47157416e-01, -3.48524998e-04, 3.50539717e-01,
        -9.52551510e-02, 2.68511000e-01, 4.66056368e-01,
        -1.73134159e-01, 3.23771981e-01, -3.43175716e-01,
        3.80634669e-02, 7.26706274e-02, -2.30268958e-01,
        2.03009393e-02, 1.41414785e-01, -1.23158476e-02,
        4.44976963e-01, -2.61694592e-03, -3.10403073e-01,
        5.08114737e-01, -2.34937338e-01, -2.39611830e-01,
        1.18726772e-01, 1.72552294e-01, -2.21121966e-01,
        4.29449255e-01, 8.44699612e-02, -2.72909051e-01,
        6.76351685e-01, -1.20138225e-01, -2.44076712e-01,
        1.50774518e-01, 2.89111751e-01, 1.23238536e-03,
    ];
    // Printed with 9 significant digits: half a unit of the last one, relative.
    for (k, (&got, &want)) in a.data.iter().zip(&printed).enumerate() {
        assert_close(got, want, 5e-9 * want.abs(), &format!("A (average)[{k}]"));
    }
}

// ---------------------------------------------------------------------------------
// Small cases worked out by hand
// ---------------------------------------------------------------------------------

/// One 3x3 single-channel image holding `values` row by row.
fn image_3x3(values: [f64; 9]) -> Array4 {
    Array4::from_vec([1, 3, 3, 1], values.to_vec())
}

#[test]
fn conv_forward_with_stride_and_padding_by_hand() {
    // Image 1..9, filter [[1, 0], [0, -1]] (top-left minus bottom-right), bias 0.5,
    // stride 2, pad 1: the padded image is 5x5 and the output 2x2. Each window's
    // top-left cell is padding or an image cell:
    //   (0,0): 0 - a[0][0] = -1      (0,2): 0 - a[0][2] = -3
    //   (2,0): 0 - a[2][0] = -7      (2,2): a[1][1] - a[2][2] = 5 - 9 = -4
    let a = image_3x3([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let w = Array4::from_vec([2, 2, 1, 1], vec![1.0, 0.0, 0.0, -1.0]);
    let z = conv_forward(&a, &w, &[0.5], ConvParams { stride: 2, pad: 1 });
    assert_eq!(z.shape, [1, 2, 2, 1]);
    assert_eq!(z.data, [-0.5, -2.5, -6.5, -3.5]);
}

#[test]
fn padded_max_pooling_by_hand() {
    // All-negative image -1..-9, f 2, stride 2, pad 1: the windows see
    //   {-1}  {-2, -3}  {-4, -7}  {-5, -6, -8, -9}
    // plus padding, which must never win (a zero pad would give 0 everywhere).
    let a = image_3x3([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0]);
    let hp = PoolParams {
        f: 2,
        stride: 2,
        pad: 1,
    };
    let pooled = pool_forward(&a, hp, PoolMode::Max);
    assert_eq!(pooled.shape, [1, 2, 2, 1]);
    assert_eq!(pooled.data, [-1.0, -2.0, -4.0, -5.0]);

    // Each window's gradient lands on its maximum.
    let da = Array4::from_vec([1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]);
    let da_prev = pool_backward(&da, &a, hp, PoolMode::Max);
    #[rustfmt::skip]
    let expected = [
        1.0, 2.0, 0.0,
        3.0, 4.0, 0.0,
        0.0, 0.0, 0.0,
    ];
    assert_eq!(da_prev.data, expected);
}

#[test]
fn padded_average_pooling_by_hand() {
    // Image 1..9, f 2, stride 2, pad 1. Padded zeros count: every window divides by 4.
    //   {1} -> 1/4   {2, 3} -> 5/4   {4, 7} -> 11/4   {5, 6, 8, 9} -> 28/4
    let a = image_3x3([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let hp = PoolParams {
        f: 2,
        stride: 2,
        pad: 1,
    };
    let pooled = pool_forward(&a, hp, PoolMode::Average);
    assert_eq!(pooled.data, [0.25, 1.25, 2.75, 7.0]);

    // Each image cell gets a quarter of its window's gradient; padding takes the rest.
    let da = Array4::from_vec([1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]);
    let da_prev = pool_backward(&da, &a, hp, PoolMode::Average);
    #[rustfmt::skip]
    let expected = [
        0.25, 0.5, 0.5,
        0.75, 1.0, 1.0,
        0.75, 1.0, 1.0,
    ];
    assert_eq!(da_prev.data, expected);
}

#[test]
fn max_pool_backward_sends_ties_to_the_first_maximum_and_adds_overlaps() {
    // A constant 3x3 image, f 2, stride 1: each of the four windows picks its top-left
    // cell, so the four gradients land on the four top-left cells of the image.
    let a = image_3x3([2.0; 9]);
    let hp = PoolParams {
        f: 2,
        stride: 1,
        pad: 0,
    };
    let da = Array4::from_vec([1, 2, 2, 1], vec![1.0, 10.0, 100.0, 1000.0]);
    let da_prev = pool_backward(&da, &a, hp, PoolMode::Max);
    #[rustfmt::skip]
    let expected = [
        1.0,   10.0,   0.0,
        100.0, 1000.0, 0.0,
        0.0,   0.0,    0.0,
    ];
    assert_eq!(da_prev.data, expected);

    // With a single peak, every window containing it sends its gradient there.
    let a = image_3x3([0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
    let da_prev = pool_backward(&da, &a, hp, PoolMode::Max);
    assert_eq!(da_prev.get([0, 1, 1, 0]), 1111.0);
    assert_eq!(da_prev.data.iter().sum::<f64>(), 1111.0);
}

#[test]
fn max_pooling_propagates_nan() {
    let a = image_3x3([1.0, f64::NAN, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let hp = PoolParams {
        f: 3,
        stride: 1,
        pad: 0,
    };
    assert!(pool_forward(&a, hp, PoolMode::Max).data[0].is_nan());
}

#[test]
#[should_panic(expected = "expects 3 input channels")]
fn conv_forward_rejects_mismatched_channels() {
    let a = Array4::zeros([1, 4, 4, 2]);
    let w = Array4::zeros([3, 3, 3, 1]);
    conv_forward(&a, &w, &[0.0], ConvParams { stride: 1, pad: 0 });
}

#[test]
#[should_panic(expected = "more than half the window")]
fn pooling_rejects_padding_beyond_half_the_window() {
    let hp = PoolParams {
        f: 2,
        stride: 1,
        pad: 2,
    };
    pool_forward(&Array4::zeros([1, 4, 4, 1]), hp, PoolMode::Max);
}

// ---------------------------------------------------------------------------------
// Backward passes against central finite differences
// ---------------------------------------------------------------------------------

/// Step of the central difference. Conv and average pooling are linear in each
/// operand and max pooling is piecewise linear with inputs spaced far wider than
/// this, so the difference is exact up to rounding.
const STEP: f64 = 1e-4;
const GRAD_TOL: f64 = 1e-7;

/// `sum(a * b)`: the scalar loss whose gradient with respect to `a` is `b`.
fn dot(a: &Array4, b: &Array4) -> f64 {
    assert_eq!(a.shape, b.shape);
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}

/// `d loss / d x` by central differences, one element at a time.
fn numerical_gradient(x: &Array4, loss: impl Fn(&Array4) -> f64) -> Array4 {
    let mut grad = Array4::zeros(x.shape);
    let mut probe = x.clone();
    for k in 0..x.data.len() {
        probe.data[k] = x.data[k] + STEP;
        let up = loss(&probe);
        probe.data[k] = x.data[k] - STEP;
        let down = loss(&probe);
        probe.data[k] = x.data[k];
        grad.data[k] = (up - down) / (2.0 * STEP);
    }
    grad
}

/// Checks all three conv gradients for loss `sum(conv_forward(a, w, b) * dz)`.
fn check_conv_backward(
    a_shape: [usize; 4],
    f: usize,
    n_c: usize,
    hp: ConvParams,
    seed: u32,
) -> Result<(), TestCaseError> {
    let mut rng = NumpyRng::new(seed);
    let a = rng.randn_array4(a_shape);
    let w = rng.randn_array4([f, f, a_shape[3], n_c]);
    let b = rng.randn_array4([1, 1, 1, n_c]);
    let z_shape = conv_forward(&a, &w, &b.data, hp).shape;
    let dz = rng.randn_array4(z_shape);

    let grads = conv_backward(&dz, &a, &w, hp);
    let da = numerical_gradient(&a, |a| dot(&conv_forward(a, &w, &b.data, hp), &dz));
    let dw = numerical_gradient(&w, |w| dot(&conv_forward(&a, w, &b.data, hp), &dz));
    let db = numerical_gradient(&b, |b| dot(&conv_forward(&a, &w, &b.data, hp), &dz));

    for (name, analytic, numeric) in [
        ("da_prev", &grads.da_prev.data, &da.data),
        ("dw", &grads.dw.data, &dw.data),
        ("db", &grads.db, &db.data),
    ] {
        prop_assert_eq!(analytic.len(), numeric.len());
        for (k, (x, y)) in analytic.iter().zip(numeric.iter()).enumerate() {
            prop_assert!(
                (x - y).abs() <= GRAD_TOL,
                "{}[{}]: backward {} vs finite difference {} (a {:?}, f {}, {:?})",
                name,
                k,
                x,
                y,
                a_shape,
                f,
                hp
            );
        }
    }
    Ok(())
}

/// Checks `pool_backward` for loss `sum(pool_forward(a) * da)`.
///
/// The input is a shuffled ramp with steps of 0.1, so no perturbation of `STEP` can
/// change which cell of a window is the maximum.
fn check_pool_backward(
    a_shape: [usize; 4],
    hp: PoolParams,
    mode: PoolMode,
    seed: u32,
) -> Result<(), TestCaseError> {
    let mut rng = NumpyRng::new(seed);
    let len: usize = a_shape.iter().product();
    let mut ramp: Vec<f64> = (0..len).map(|k| 0.1 * k as f64 - 1.0).collect();
    for k in (1..len).rev() {
        let j = (rng.random_sample() * (k + 1) as f64) as usize;
        ramp.swap(k, j);
    }
    let a = Array4::from_vec(a_shape, ramp);
    let da = rng.randn_array4(pool_forward(&a, hp, mode).shape);

    let analytic = pool_backward(&da, &a, hp, mode);
    let numeric = numerical_gradient(&a, |a| dot(&pool_forward(a, hp, mode), &da));
    prop_assert_eq!(analytic.shape, a_shape);
    for (k, (x, y)) in analytic.data.iter().zip(&numeric.data).enumerate() {
        prop_assert!(
            (x - y).abs() <= GRAD_TOL,
            "da_prev[{}]: backward {} vs finite difference {} (a {:?}, {:?}, {:?})",
            k,
            x,
            y,
            a_shape,
            hp,
            mode
        );
    }
    Ok(())
}

#[test]
fn conv_backward_matches_finite_differences_with_stride_and_padding() {
    // Stride 2, pad 1, 3x3 filters: windows overlap and straddle the border.
    check_conv_backward([2, 5, 6, 3], 3, 2, ConvParams { stride: 2, pad: 1 }, 11).unwrap();
    // Stride 3 with f 2: gaps between windows, and the last row/column is never read.
    check_conv_backward([1, 6, 7, 2], 2, 3, ConvParams { stride: 3, pad: 2 }, 12).unwrap();
}

#[test]
fn pool_backward_matches_finite_differences_with_stride_and_padding() {
    for mode in [PoolMode::Max, PoolMode::Average] {
        let hp = PoolParams {
            f: 3,
            stride: 2,
            pad: 1,
        };
        check_pool_backward([2, 5, 6, 2], hp, mode, 21).unwrap();
        let hp = PoolParams {
            f: 2,
            stride: 3,
            pad: 1,
        };
        check_pool_backward([1, 6, 7, 3], hp, mode, 22).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv_backward_matches_finite_differences_on_random_shapes(
        m in 1usize..=2, h in 1usize..=6, w in 1usize..=6, n_c_prev in 1usize..=3,
        n_c in 1usize..=3, f in 1usize..=3, stride in 1usize..=3, pad in 0usize..=2,
        seed in any::<u32>(),
    ) {
        prop_assume!(f <= h + 2 * pad && f <= w + 2 * pad);
        check_conv_backward([m, h, w, n_c_prev], f, n_c, ConvParams { stride, pad }, seed)?;
    }

    #[test]
    fn pool_backward_matches_finite_differences_on_random_shapes(
        m in 1usize..=2, h in 1usize..=6, w in 1usize..=6, n_c in 1usize..=3,
        f in 1usize..=4, stride in 1usize..=3, pad in 0usize..=2, max in any::<bool>(),
        seed in any::<u32>(),
    ) {
        prop_assume!(pad <= f / 2 && f <= h + 2 * pad && f <= w + 2 * pad);
        let mode = if max { PoolMode::Max } else { PoolMode::Average };
        check_pool_backward([m, h, w, n_c], PoolParams { f, stride, pad }, mode, seed)?;
    }
}
