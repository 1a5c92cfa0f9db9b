use half::bf16;
use proptest::prelude::*;

use super::*;
use crate::bf16_values::narrow;
use crate::reference::{pool_backward, pool_forward, Array4, PoolMode, PoolParams};
use crate::test_util::assert_close_rel;
use crate::{CpuStorage, Error};

const MAX: PoolKind = PoolKind::Max;
const AVG: PoolKind = PoolKind::Avg {
    count_include_pad: true,
};
const AVG_NO_PAD: PoolKind = PoolKind::Avg {
    count_include_pad: false,
};

fn geometry(kind: PoolKind, input: [usize; 4], k: usize, s: usize, p: usize) -> Pool2dGeometry {
    Pool2dGeometry::new(kind, &input, [k, k], [s, s], [p, p]).unwrap()
}

fn f64s(s: Storage) -> Vec<f64> {
    s.to_vec_f64().unwrap()
}

/// Output and input gradient of the argmax-keeping path.
fn via_argmax(x: &Storage, dy: &Storage, g: &Pool2dGeometry) -> (Storage, Storage) {
    let (y, argmax) = max_forward_keeping_argmax(x, g).unwrap();
    let argmax = argmax.expect("a host max pool keeps its argmax");
    (y, max_backward_from_argmax(&argmax, dy).unwrap())
}

/// 1..=16 in a 4x4 plane.
fn ramp_4x4() -> Vec<f64> {
    (1..=16).map(f64::from).collect()
}

#[test]
fn max_2x2_stride_2_takes_each_block_maximum() {
    let g = geometry(MAX, [1, 1, 4, 4], 2, 2, 0);
    assert_eq!(g.output_shape(), [1, 1, 2, 2]);
    // Blocks {1,2,5,6}, {3,4,7,8}, {9,10,13,14}, {11,12,15,16}.
    let y = forward(
        &Storage::f32(ramp_4x4().iter().map(|&v| v as f32).collect()),
        &g,
    )
    .unwrap();
    assert_eq!(y, Storage::f32(vec![6.0, 8.0, 14.0, 16.0]));
}

#[test]
fn max_backward_routes_each_gradient_to_its_maximum() {
    let g = geometry(MAX, [1, 1, 4, 4], 2, 2, 0);
    let dx = backward(
        &Storage::f64(ramp_4x4()),
        &Storage::f64(vec![1.0, 2.0, 3.0, 4.0]),
        &g,
    )
    .unwrap();
    // The maxima 6, 8, 14, 16 sit at flat indices 5, 7, 13, 15.
    let mut expected = vec![0.0; 16];
    expected[5] = 1.0;
    expected[7] = 2.0;
    expected[13] = 3.0;
    expected[15] = 4.0;
    assert_eq!(f64s(dx), expected);
}

#[test]
fn max_padding_acts_as_minus_infinity() {
    // All-negative 3x3 input, kernel 2, stride 2, padding 1 (the notebook's later pools):
    // out = (3 + 2 - 2) / 2 + 1 = 2. Windows in input coordinates, padding clipped:
    // (0,0): {-1}; (0,1): {-2,-3}; (1,0): {-4,-7}; (1,1): {-5,-6,-8,-9}.
    // Zero padding would wrongly give 0 everywhere.
    let x: Vec<f64> = (1..=9).map(|v| -f64::from(v)).collect();
    let g = geometry(MAX, [1, 1, 3, 3], 2, 2, 1);
    assert_eq!(g.output_shape(), [1, 1, 2, 2]);
    assert_eq!(
        f64s(forward(&Storage::f64(x.clone()), &g).unwrap()),
        [-1.0, -2.0, -4.0, -5.0]
    );
    let dx = backward(
        &Storage::f64(x),
        &Storage::f64(vec![1.0, 2.0, 3.0, 4.0]),
        &g,
    )
    .unwrap();
    // -1 at 0, -2 at 1, -4 at 3, -5 at 4.
    assert_eq!(f64s(dx), [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_ties_go_to_the_first_maximum_in_row_major_order() {
    let g = geometry(MAX, [1, 1, 2, 2], 2, 2, 0);
    for (x, first) in [
        (vec![3.0, 3.0, 3.0, 1.0], 0),
        (vec![1.0, 5.0, 5.0, 5.0], 1),
        (vec![0.0, 2.0, 7.0, 7.0], 2),
    ] {
        let dx = backward(&Storage::f64(x.clone()), &Storage::f64(vec![1.0]), &g).unwrap();
        let mut expected = vec![0.0; 4];
        expected[first] = 1.0;
        assert_eq!(f64s(dx), expected, "input {x:?}");
    }
}

#[test]
fn overlapping_max_windows_accumulate_gradient() {
    // Kernel 1x3, stride 1 over the row [1, 9, 2, 3]: both windows pick the 9.
    let g = Pool2dGeometry::new(MAX, &[1, 1, 1, 4], [1, 3], [1, 1], [0, 0]).unwrap();
    let x = Storage::f64(vec![1.0, 9.0, 2.0, 3.0]);
    assert_eq!(f64s(forward(&x, &g).unwrap()), [9.0, 9.0]);
    let dx = backward(&x, &Storage::f64(vec![1.0, 10.0]), &g).unwrap();
    assert_eq!(f64s(dx), [0.0, 11.0, 0.0, 0.0]);
}

#[test]
fn max_propagates_nan_and_routes_its_gradient_there() {
    let g = geometry(MAX, [1, 1, 2, 2], 2, 2, 0);
    let x = Storage::f64(vec![1.0, f64::NAN, 5.0, 2.0]);
    assert!(f64s(forward(&x, &g).unwrap())[0].is_nan());
    assert_eq!(
        f64s(backward(&x, &Storage::f64(vec![1.0]), &g).unwrap()),
        [0.0, 1.0, 0.0, 0.0]
    );
}

/// 3x3 input 1..=9, kernel 3, stride 1, padding 1: out 3x3, each window is the 3x3
/// neighbourhood clipped to the input. Window sums, worked by hand:
/// (0,0) 1+2+4+5 = 12, (0,1) 1+..+6 = 21, (0,2) 2+3+5+6 = 16,
/// (1,0) 1+2+4+5+7+8 = 27, (1,1) 45, (1,2) 2+3+5+6+8+9 = 33,
/// (2,0) 4+5+7+8 = 24, (2,1) 4+..+9 = 39, (2,2) 5+6+8+9 = 28;
/// in-bounds cell counts 4 6 4 / 6 9 6 / 4 6 4.
const SUMS: [f64; 9] = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
const COUNTS: [f64; 9] = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0];

fn ramp_3x3() -> Storage {
    Storage::f64((1..=9).map(f64::from).collect())
}

#[test]
fn avg_counts_padding_in_the_divisor_by_default() {
    let g = geometry(AVG, [1, 1, 3, 3], 3, 1, 1);
    let expected: Vec<f64> = SUMS.iter().map(|s| s / 9.0).collect();
    assert_close_rel(&f64s(forward(&ramp_3x3(), &g).unwrap()), &expected, 1e-15);
}

#[test]
fn avg_without_count_include_pad_divides_by_in_bounds_cells() {
    let g = geometry(AVG_NO_PAD, [1, 1, 3, 3], 3, 1, 1);
    // 12/4, 21/6, 16/4, 27/6, 45/9, 33/6, 24/4, 39/6, 28/4.
    let expected = [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0];
    assert_close_rel(&f64s(forward(&ramp_3x3(), &g).unwrap()), &expected, 1e-15);
}

#[test]
fn avg_backward_spreads_gradient_by_the_same_divisor() {
    let ones = Storage::f64(vec![1.0; 9]);
    // Input cell (i, j) lies in the windows of the outputs next to it: 4 for a corner,
    // 6 for an edge, 9 for the centre.
    let g = geometry(AVG, [1, 1, 3, 3], 3, 1, 1);
    let expected: Vec<f64> = COUNTS.iter().map(|c| c / 9.0).collect();
    assert_close_rel(
        &f64s(backward(&ramp_3x3(), &ones, &g).unwrap()),
        &expected,
        1e-15,
    );

    // Without padding in the divisor each window hands out 1/count of its own:
    // corner (0,0) is in windows (0,0) [4], (0,1) [6], (1,0) [6], (1,1) [9];
    // edge (0,1) in (0,0),(0,2) [4 each], (0,1),(1,0),(1,2) [6 each], (1,1) [9];
    // centre in all nine.
    let g = geometry(AVG_NO_PAD, [1, 1, 3, 3], 3, 1, 1);
    let corner = 1.0 / 4.0 + 2.0 / 6.0 + 1.0 / 9.0;
    let edge = 2.0 / 4.0 + 3.0 / 6.0 + 1.0 / 9.0;
    let centre = 4.0 / 4.0 + 4.0 / 6.0 + 1.0 / 9.0;
    let expected = [
        corner, edge, corner, edge, centre, edge, corner, edge, corner,
    ];
    assert_close_rel(
        &f64s(backward(&ramp_3x3(), &ones, &g).unwrap()),
        &expected,
        1e-15,
    );
}

#[test]
fn planes_are_pooled_independently() {
    // Two batches x two channels of 2x2, kernel 2: each plane reduces to its own max / mean.
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let g = geometry(MAX, [2, 2, 2, 2], 2, 2, 0);
    assert_eq!(
        forward(&Storage::f32(x.clone()), &g).unwrap(),
        Storage::f32(vec![3.0, 7.0, 11.0, 15.0])
    );
    let g = geometry(AVG, [2, 2, 2, 2], 2, 2, 0);
    assert_eq!(
        forward(&Storage::f32(x), &g).unwrap(),
        Storage::f32(vec![1.5, 5.5, 9.5, 13.5])
    );
}

#[test]
fn geometry_rounds_the_output_size_down() {
    // (7 + 2 - 3) / 2 + 1 = 4 rows, (6 + 0 - 2) / 3 + 1 = 2 columns.
    let g = Pool2dGeometry::new(MAX, &[3, 5, 7, 6], [3, 2], [2, 3], [1, 0]).unwrap();
    assert_eq!(g.output_shape(), [3, 5, 4, 2]);
}

#[test]
fn empty_batch_gives_empty_output() {
    let g = geometry(MAX, [0, 3, 4, 4], 2, 2, 0);
    assert_eq!(
        forward(&Storage::f32(vec![]), &g).unwrap(),
        Storage::f32(vec![])
    );
    assert_eq!(
        backward(&Storage::f32(vec![]), &Storage::f32(vec![]), &g).unwrap(),
        Storage::f32(vec![])
    );
}

fn shape_error(
    kind: PoolKind,
    input: &[usize],
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
) -> String {
    let err = Pool2dGeometry::new(kind, input, k, s, p).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(kind.op_name()), "{text}");
    text
}

#[test]
fn geometry_refuses_bad_shapes_and_hyper_parameters() {
    let text = shape_error(MAX, &[2, 3, 4], [2, 2], [2, 2], [0, 0]);
    assert!(text.contains("[2, 3, 4]"), "{text}");
    let text = shape_error(AVG, &[1, 1, 4, 4], [2, 2], [2, 2], [2, 0]);
    assert!(
        text.starts_with("avg_pool2d")
            && text.contains("padding 2x0")
            && text.contains("[1, 1, 4, 4]"),
        "{text}"
    );
    let text = shape_error(MAX, &[1, 1, 4, 4], [3, 3], [1, 1], [2, 2]);
    assert!(text.contains("half the kernel 3x3"), "{text}");
    let text = shape_error(MAX, &[1, 1, 2, 2], [5, 5], [1, 1], [1, 1]);
    assert!(
        text.contains("kernel 5x5") && text.contains("padded input 4x4"),
        "{text}"
    );
    let text = shape_error(MAX, &[1, 1, 4, 4], [2, 2], [0, 1], [0, 0]);
    assert!(text.contains("stride 0x1"), "{text}");
    shape_error(MAX, &[1, 1, 4, 4], [0, 2], [1, 1], [0, 0]);
    shape_error(MAX, &[1, 0, 4, 4], [2, 2], [1, 1], [0, 0]);
    shape_error(MAX, &[1, 1, 0, 4], [1, 1], [1, 1], [0, 0]);
    shape_error(MAX, &[usize::MAX, 1, 2, 2], [2, 2], [1, 1], [1, 1]);
    shape_error(MAX, &[1, 1, usize::MAX, 1], [2, 2], [1, 1], [1, 1]);
}

#[test]
fn forward_and_backward_refuse_wrong_buffers() {
    let g = geometry(MAX, [1, 1, 4, 4], 2, 2, 0);
    let err = forward(&Storage::f32(vec![0.0; 15]), &g).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "max_pool2d",
                ..
            }
        ),
        "{err}"
    );
    let err = backward(
        &Storage::f32(vec![0.0; 16]),
        &Storage::f32(vec![0.0; 3]),
        &g,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                op: "max_pool2d",
                ..
            }
        ),
        "{err}"
    );
    let err = backward(
        &Storage::f32(vec![0.0; 16]),
        &Storage::f64(vec![0.0; 4]),
        &g,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "max_pool2d",
                ..
            }
        ),
        "{err}"
    );

    // A hand-built geometry whose fields disagree must not index out of bounds.
    let bad = Pool2dGeometry { out_h: 3, ..g };
    let err = forward(&Storage::f32(vec![0.0; 16]), &bad).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                op: "max_pool2d",
                ..
            }
        ),
        "{err}"
    );
    let bad = Pool2dGeometry {
        padding: [3, 3],
        ..g
    };
    assert!(backward(
        &Storage::f32(vec![0.0; 16]),
        &Storage::f32(vec![0.0; 4]),
        &bad
    )
    .is_err());
}

/// A random pooling problem the reference accepts: square window and stride, padding at
/// most half the window, window no larger than the padded input.
fn case() -> impl Strategy<Value = ([usize; 4], usize, usize, usize, Vec<f64>, Vec<f64>)> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=9,
        1usize..=9,
        1usize..=4,
        1usize..=3,
    )
        .prop_flat_map(|(n, c, h, w, f, stride)| {
            let pad_max = f / 2;
            (Just((n, c, h, w, f, stride)), 0..=pad_max)
        })
        .prop_filter(
            "window fits the padded input",
            |&((_, _, h, w, f, _), pad)| f <= h.min(w) + 2 * pad,
        )
        .prop_flat_map(|((n, c, h, w, f, stride), pad)| {
            let out_h = (h + 2 * pad - f) / stride + 1;
            let out_w = (w + 2 * pad - f) / stride + 1;
            (
                Just(([n, c, h, w], f, stride, pad)),
                prop::collection::vec(-4.0f64..4.0, n * c * h * w),
                prop::collection::vec(-1.0f64..1.0, n * c * out_h * out_w),
            )
        })
        .prop_map(|((shape, f, stride, pad), x, dy)| (shape, f, stride, pad, x, dy))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_the_reference((shape, f, stride, pad, x, dy) in case()) {
        let [n, c, h, w] = shape;
        let hp = PoolParams { f, stride, pad };
        let x_ref = Array4::from_nchw(shape, &x);
        for (kind, mode) in [(MAX, PoolMode::Max), (AVG, PoolMode::Average)] {
            let g = geometry(kind, shape, f, stride, pad);
            let [_, _, out_h, out_w] = g.output_shape();

            let y_ref = pool_forward(&x_ref, hp, mode);
            prop_assert_eq!(y_ref.shape, [n, out_h, out_w, c]);
            let y = f64s(forward(&Storage::f64(x.clone()), &g).unwrap());
            assert_close_rel(&y, &y_ref.to_nchw(), 1e-12);

            let dy_ref = Array4::from_nchw(g.output_shape(), &dy);
            let dx_ref = pool_backward(&dy_ref, &x_ref, hp, mode);
            let dx = f64s(backward(&Storage::f64(x.clone()), &Storage::f64(dy.clone()), &g).unwrap());
            assert_close_rel(&dx, &dx_ref.to_nchw(), 1e-12);
            prop_assert_eq!(dx.len(), n * c * h * w);
            if kind == MAX {
                let (y, dx) = via_argmax(&Storage::f64(x.clone()), &Storage::f64(dy.clone()), &g);
                prop_assert_eq!(f64s(y), y_ref.to_nchw());
                assert_close_rel(&f64s(dx), &dx_ref.to_nchw(), 1e-12);
            }

            // The f32 path runs the same code: it agrees to f32 rounding.
            let y32 = forward(&Storage::f64(x.clone()).to_dtype(crate::DType::F32).unwrap(), &g).unwrap();
            assert_close_rel(&f64s(y32), &y_ref.to_nchw(), 1e-5);
        }
    }
}

/// The 2x2, stride-2 max pool (the network's) runs its own path: check it on larger
/// planes with padding 0 and 1, odd and even sizes, and many ties (values from a small set).
fn max_2x2_case() -> impl Strategy<Value = ([usize; 4], usize, Vec<f64>, Vec<f64>)> {
    (1usize..=2, 1usize..=3, 1usize..=13, 1usize..=13, 0usize..=1)
        .prop_filter("window fits the padded input", |&(_, _, h, w, pad)| {
            2 <= h.min(w) + 2 * pad
        })
        .prop_flat_map(|(n, c, h, w, pad)| {
            let (out_h, out_w) = ((h + 2 * pad) / 2, (w + 2 * pad) / 2);
            (
                Just(([n, c, h, w], pad)),
                prop::collection::vec((-2i32..=2).prop_map(f64::from), n * c * h * w),
                prop::collection::vec(-1.0f64..1.0, n * c * out_h * out_w),
            )
        })
        .prop_map(|((shape, pad), x, dy)| (shape, pad, x, dy))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn max_2x2_stride_2_matches_the_reference((shape, pad, x, dy) in max_2x2_case()) {
        let hp = PoolParams { f: 2, stride: 2, pad };
        let g = geometry(MAX, shape, 2, 2, pad);
        let x_ref = Array4::from_nchw(shape, &x);
        let y_ref = pool_forward(&x_ref, hp, PoolMode::Max).to_nchw();
        let dy_ref = Array4::from_nchw(g.output_shape(), &dy);
        let dx_ref = pool_backward(&dy_ref, &x_ref, hp, PoolMode::Max).to_nchw();
        for dtype in [crate::DType::F64, crate::DType::F32] {
            let x = Storage::f64(x.clone()).to_dtype(dtype).unwrap();
            let dy = Storage::f64(dy.clone()).to_dtype(dtype).unwrap();
            // Inputs are small integers: the max is exact in both types.
            prop_assert_eq!(f64s(forward(&x, &g).unwrap()), y_ref.clone());
            assert_close_rel(&f64s(backward(&x, &dy, &g).unwrap()), &dx_ref, 1e-6);
            // The argmax-keeping path: runs of cells without padding, the general loop
            // with it; small integers make ties common.
            let (y, dx) = via_argmax(&x, &dy, &g);
            prop_assert_eq!(f64s(y), y_ref.clone());
            assert_close_rel(&f64s(dx), &dx_ref, 1e-6);
        }
    }
}

#[test]
fn max_2x2_full_windows_route_to_the_last_nan() {
    // One full 2x2 window (padding 0), then the same cells inside a padded 2x2 input,
    // where the window (1, 1) of the 2x2 output holds only the bottom-right cell.
    let g = geometry(MAX, [1, 1, 2, 2], 2, 2, 0);
    let x = Storage::f64(vec![f64::NAN, 1.0, f64::NAN, 2.0]);
    assert!(f64s(forward(&x, &g).unwrap())[0].is_nan());
    assert_eq!(
        f64s(backward(&x, &Storage::f64(vec![1.0]), &g).unwrap()),
        [0.0, 0.0, 1.0, 0.0]
    );
    let g = geometry(MAX, [1, 1, 2, 2], 2, 2, 1);
    let dx = backward(&x, &Storage::f64(vec![1.0, 2.0, 3.0, 4.0]), &g).unwrap();
    assert_eq!(f64s(dx), [1.0, 2.0, 3.0, 4.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_kept_argmax_routes_nan_and_infinities_like_the_recomputed_one(
        (shape, pad, x, dy) in max_2x2_case(),
        specials in prop::collection::vec((0usize..4, 0usize..200), 0..12),
    ) {
        // Some cells replaced by NaN or an infinity: the recomputing backward (tested
        // above against PyTorch's rules) is the oracle, in f32, both paths.
        let mut x = x;
        for (which, at) in specials {
            let len = x.len();
            x[at % len] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0][which];
        }
        for k in [2, 3] {
            let g = Pool2dGeometry::new(MAX, &shape, [k, k], [k, k], [pad.min(k / 2); 2]);
            let Ok(g) = g else { continue };
            let x = Storage::f64(x.clone()).to_dtype(crate::DType::F32).unwrap();
            let dy = Storage::f64(vec![0.5; g.output_shape().iter().product()]).to_dtype(crate::DType::F32).unwrap();
            let (y, dx) = via_argmax(&x, &dy, &g);
            let want_y = forward(&x, &g).unwrap().to_vec_f32().unwrap();
            let got_y = y.to_vec_f32().unwrap();
            // Equal values (a tie of 0 and -0 may return either zero: the recomputing
            // forward reduces rows first, this path takes the first cell in row-major order,
            // PyTorch's argmax).
            for (got, want) in got_y.iter().zip(&want_y) {
                prop_assert!(got == want || (got.is_nan() && want.is_nan()), "{got} vs {want}");
            }
            prop_assert_eq!(dx.to_vec_f32().unwrap(), backward(&x, &dy, &g).unwrap().to_vec_f32().unwrap());
        }
        let _ = dy;
    }
}

#[test]
fn keeping_an_argmax_is_for_max_pooling_and_its_own_output_size() {
    let g = geometry(AVG, [1, 1, 4, 4], 2, 2, 0);
    let err = max_forward_keeping_argmax(&Storage::f32(vec![0.0; 16]), &g).unwrap_err();
    let expected = "avg_pool2d: only max pooling has an argmax to keep; use pool2d::forward";
    assert_eq!(err.to_string(), expected);
    let g = geometry(MAX, [1, 1, 4, 4], 2, 2, 0);
    let x: Vec<f32> = ramp_4x4().iter().map(|&v| v as f32).collect();
    let argmax = max_forward_keeping_argmax(&Storage::f32(x), &g)
        .unwrap()
        .1
        .unwrap();
    for err in [
        max_backward_from_argmax(&argmax, &Storage::f32(vec![1.0; 3])).unwrap_err(),
        max_forward_keeping_argmax(&Storage::f32(vec![0.0; 15]), &g).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::Shape {
                    op: "max_pool2d",
                    ..
                }
            ),
            "{err}"
        );
    }
}

/// The values of bf16 activations: `x` rounded to bf16, and cells `at` (modulo the length)
/// replaced by `which` of NaNs with distinct payloads (so which one wins shows), the
/// infinities and both zeros (a tie of which the first cell wins).
fn bf16_input(x: &[f64], specials: &[(usize, usize)]) -> Vec<bf16> {
    let special = [0x7fc1, 0xffc5, 0x7f80, 0xff80, 0x8000, 0x0000].map(bf16::from_bits);
    let mut x: Vec<bf16> = x.iter().map(|&v| bf16::from_f64(v)).collect();
    for &(which, at) in specials {
        let len = x.len();
        x[at % len] = special[which % special.len()];
    }
    x
}

fn bf16_bits(s: Storage) -> Vec<u16> {
    match s {
        Storage::Cpu(CpuStorage::BF16(v)) => v.iter().map(|v| v.to_bits()).collect(),
        other => panic!("expected a bf16 output, got {}", other.dtype()),
    }
}

/// The bf16 max pool against the f32 one on the widened input: the output is the f32
/// output narrowed (the same bits: the values are bf16 already, and NaNs quiet), the kept
/// cells are the same, and the bf16 gradient is the f32 one on the widened gradients,
/// narrowed (overlapping windows add several gradients in a cell).
fn assert_bf16_max_pool_is_the_f32_one(x: &[bf16], dy: &[f64], g: &Pool2dGeometry) {
    let narrowed = |s: Storage| -> Vec<u16> {
        let v = s.to_vec_f32().unwrap();
        v.into_iter().map(|v| narrow(v).to_bits()).collect()
    };
    let wide = Storage::bf16(x.to_vec()).to_dtype(DType::F32).unwrap();
    let x = Storage::bf16(x.to_vec());
    let dy: Vec<bf16> = dy.iter().map(|&v| bf16::from_f64(v)).collect();
    let wide_dy = Storage::bf16(dy.clone()).to_dtype(DType::F32).unwrap();
    let dy = Storage::bf16(dy);
    assert_eq!(
        bf16_bits(forward(&x, g).unwrap()),
        narrowed(forward(&wide, g).unwrap())
    );
    let (y, argmax) = max_forward_keeping_argmax(&x, g).unwrap();
    let (y32, argmax32) = max_forward_keeping_argmax(&wide, g).unwrap();
    let (argmax, argmax32) = (argmax.unwrap(), argmax32.unwrap());
    assert_eq!(bf16_bits(y), narrowed(y32));
    assert_eq!(argmax.cells, argmax32.cells);
    assert_eq!(
        bf16_bits(max_backward_from_argmax(&argmax, &dy).unwrap()),
        narrowed(max_backward_from_argmax(&argmax32, &wide_dy).unwrap())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bf16_max_pooling_picks_the_cells_and_values_of_the_f32_kernel(
        (shape, f, stride, pad, x, dy) in case(),
        specials in prop::collection::vec((0usize..6, 0usize..400), 0..8),
    ) {
        // Any window, stride and padding (the general loops; rounding to bf16 makes ties).
        let g = geometry(MAX, shape, f, stride, pad);
        assert_bf16_max_pool_is_the_f32_one(&bf16_input(&x, &specials), &dy, &g);
    }

    #[test]
    fn bf16_2x2_max_pooling_picks_the_cells_and_values_of_the_f32_kernel(
        (shape, pad, x, dy) in max_2x2_case(),
        specials in prop::collection::vec((0usize..6, 0usize..400), 0..8),
    ) {
        // The network's pool: its own paths, with and without padding; small integers
        // make ties common.
        let g = geometry(MAX, shape, 2, 2, pad);
        assert_bf16_max_pool_is_the_f32_one(&bf16_input(&x, &specials), &dy, &g);
    }
}

#[test]
fn bf16_max_pooling_matches_the_reference_exactly() {
    // 2x2 windows with stride 2 do not overlap: the max is one of the inputs and each
    // input cell receives at most one gradient, so the f64 reference on the same (widened)
    // values and the same (bf16) gradients is matched exactly: the tolerance is zero.
    let shape = [2, 3, 9, 10];
    let len = shape.iter().product();
    let x = bf16_input(&crate::test_util::pseudo_random(len, 3), &[]);
    let x64: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    for pad in [0, 1] {
        let g = geometry(MAX, shape, 2, 2, pad);
        let dy: Vec<bf16> = crate::test_util::values(g.output_len(), 5)
            .iter()
            .map(|&v| bf16::from_f64(v))
            .collect();
        let hp = PoolParams {
            f: 2,
            stride: 2,
            pad,
        };
        let x_ref = Array4::from_nchw(shape, &x64);
        let y_ref = pool_forward(&x_ref, hp, PoolMode::Max).to_nchw();
        let dy64: Vec<f64> = dy.iter().map(|&v| v.to_f64()).collect();
        let dy_ref = Array4::from_nchw(g.output_shape(), &dy64);
        let dx_ref = pool_backward(&dy_ref, &x_ref, hp, PoolMode::Max).to_nchw();
        let (y, argmax) = max_forward_keeping_argmax(&Storage::bf16(x.clone()), &g).unwrap();
        assert_eq!(f64s(y), y_ref);
        let dx = max_backward_from_argmax(&argmax.unwrap(), &Storage::bf16(dy)).unwrap();
        assert_eq!(f64s(dx), dx_ref);
        assert_eq!(f64s(forward(&Storage::bf16(x.clone()), &g).unwrap()), y_ref);
    }
}

#[test]
fn bf16_ties_and_nans_go_where_the_f32_kernel_sends_them() {
    // By hand: the first of equal values, -0 before +0 (a tie), the later of two NaNs.
    let g = geometry(MAX, [1, 3, 2, 2], 2, 2, 0);
    let nan = |bits| bf16::from_bits(bits);
    let x = vec![
        bf16::ONE,
        bf16::from_f32(3.0),
        bf16::from_f32(3.0),
        bf16::ONE,
        bf16::NEG_ZERO,
        bf16::ZERO,
        bf16::NEG_ONE,
        bf16::NEG_ZERO,
        nan(0x7fc1),
        bf16::ONE,
        nan(0xffc5),
        bf16::INFINITY,
    ];
    let (y, argmax) = max_forward_keeping_argmax(&Storage::bf16(x), &g).unwrap();
    assert_eq!(bf16_bits(y), [0x4040, 0x8000, 0xffc5]);
    let dy = [1.0, 2.0, 3.0].map(bf16::from_f32).to_vec();
    let dx = max_backward_from_argmax(&argmax.unwrap(), &Storage::bf16(dy)).unwrap();
    assert_eq!(dx.dtype(), DType::BF16);
    let expected = [0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0];
    assert_eq!(dx.to_vec_f32().unwrap(), expected);
}

#[test]
fn bf16_pooling_without_a_kernel_says_so_and_gradients_must_be_bf16() {
    let x = Storage::bf16(vec![bf16::ONE; 16]);
    let unsupported = |op| Error::Unsupported {
        op,
        dtype: DType::BF16,
        device: Device::Cpu,
    };
    // Average pooling, and the backward that recomputes the argmax from a bf16 input.
    let avg = geometry(AVG, [1, 1, 4, 4], 2, 2, 0);
    assert_eq!(forward(&x, &avg).unwrap_err(), unsupported("avg_pool2d"));
    let max = geometry(MAX, [1, 1, 4, 4], 2, 2, 0);
    let dy = Storage::f32(vec![1.0; 4]);
    assert_eq!(
        backward(&x, &dy, &max).unwrap_err(),
        unsupported("max_pool2d")
    );

    // The kept argmax of a bf16 input takes bf16 gradients only; that of an f64 input, f64.
    let argmax = max_forward_keeping_argmax(&x, &max).unwrap().1.unwrap();
    for (grad_out, dtype) in [
        (Storage::f32(vec![1.0; 4]), "f32"),
        (Storage::f64(vec![1.0; 4]), "f64"),
    ] {
        let err = max_backward_from_argmax(&argmax, &grad_out).unwrap_err();
        let message = format!(
            "max_pool2d: operands disagree: grad_out is {dtype} on cpu, expected bf16 on cpu \
             (the gradient of the pooled input)"
        );
        assert_eq!(err.to_string(), message);
    }
    let argmax = max_forward_keeping_argmax(&Storage::f64(vec![1.0; 16]), &max)
        .unwrap()
        .1
        .unwrap();
    let err = max_backward_from_argmax(&argmax, &dy).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                op: "max_pool2d",
                ..
            }
        ),
        "{err}"
    );
}
