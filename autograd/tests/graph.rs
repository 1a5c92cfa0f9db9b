//! How the tape behaves: accumulation, reuse, no_grad, freeing, and clear errors.

mod common;

use autograd::{no_grad, DType, Device, Error, Tensor};
use common::{constant, leaf};

#[test]
fn a_tensor_used_twice_gets_both_contributions() {
    // d/dx (x*x + x) = 2x + 1
    let x = leaf(vec![3.0, -1.0], &[2]);
    x.mul(&x)
        .unwrap()
        .add(&x)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![7.0, -1.0]);
}

#[test]
fn gradients_accumulate_across_backward_calls_until_zeroed() {
    let x = leaf(vec![2.0], &[1]);
    for _ in 0..2 {
        x.scale(3.0).unwrap().sum().unwrap().backward().unwrap();
    }
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn constants_get_no_gradient() {
    let x = leaf(vec![1.0, 2.0], &[2]);
    let c = constant(vec![5.0, 7.0], &[2]);
    x.mul(&c).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![5.0, 7.0]);
    assert!(c.grad().is_none());
}

#[test]
fn a_frozen_leaf_gets_no_gradient_and_every_clone_sees_the_freeze() {
    let w = leaf(vec![2.0, 3.0], &[2]);
    let b = leaf(vec![1.0], &[1]);
    let optimizers_copy = w.clone();
    w.set_requires_grad(false).unwrap();
    assert!(!optimizers_copy.requires_grad());
    let x = constant(vec![5.0, 7.0], &[2]);
    // loss = sum(w * x) + b: only b can get a gradient now.
    x.mul(&w)
        .unwrap()
        .sum()
        .unwrap()
        .add(&b.sum().unwrap())
        .unwrap()
        .backward()
        .unwrap();
    assert!(optimizers_copy.grad().is_none());
    assert_eq!(b.grad().unwrap().to_vec_f64().unwrap(), vec![1.0]);
    // Unfrozen, it learns again; with everything frozen nothing is recorded at all.
    w.set_requires_grad(true).unwrap();
    x.mul(&w).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec_f64().unwrap(), vec![5.0, 7.0]);
    w.set_requires_grad(false).unwrap();
    assert!(!x.mul(&w).unwrap().requires_grad());
}

#[test]
fn only_leaves_can_be_frozen() {
    let x = leaf(vec![1.0], &[1]);
    let y = x.scale(2.0).unwrap();
    let err = y.set_requires_grad(false).unwrap_err();
    assert!(
        err.to_string()
            .contains("only leaves (data, parameters) can be frozen"),
        "{err}"
    );
}

#[test]
fn lerp_moves_towards_the_end_without_recording() {
    let average = leaf(vec![0.0, 10.0], &[2]);
    let end = leaf(vec![4.0, 2.0], &[2]);
    average.lerp_(&end, 0.25).unwrap();
    assert_eq!(average.to_vec_f64().unwrap(), vec![1.0, 8.0]);
    // Towards itself: unchanged (and no deadlock on the shared storage).
    average.lerp_(&average.clone(), 0.5).unwrap();
    assert_eq!(average.to_vec_f64().unwrap(), vec![1.0, 8.0]);
    let err = average.lerp_(&leaf(vec![1.0], &[1]), 0.5).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "lerp", .. }), "{err}");
}

#[test]
fn no_grad_records_nothing() {
    let x = leaf(vec![1.0], &[1]);
    let y = {
        let _guard = no_grad();
        x.scale(2.0).unwrap().sum().unwrap()
    };
    assert!(!y.requires_grad());
    let err = y.backward().unwrap_err();
    assert!(
        err.to_string().contains("does not require a gradient"),
        "{err}"
    );
}

#[test]
fn backward_needs_a_scalar_and_names_the_shape() {
    let x = leaf(vec![1.0, 2.0], &[2]);
    let err = x.scale(2.0).unwrap().backward().unwrap_err();
    assert!(matches!(err, Error::Shape { op: "backward", .. }));
    assert!(err.to_string().contains("[2]"), "{err}");
}

#[test]
fn the_graph_is_freed_by_backward_and_a_second_pass_is_refused() {
    let x = leaf(vec![1.0, 2.0], &[2]);
    let loss = x.mul(&x).unwrap().sum().unwrap();
    loss.backward().unwrap();
    let err = loss.backward().unwrap_err();
    assert!(err.to_string().contains("already consumed"), "{err}");
}

#[test]
fn reshape_shares_data_and_checks_element_count() {
    let x = constant(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = x.reshape(&[3, 2]).unwrap();
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(y.to_vec_f64().unwrap(), x.to_vec_f64().unwrap());
    let err = x.reshape(&[4, 2]).unwrap_err();
    assert!(
        err.to_string().contains("reshape")
            && err.to_string().contains("[2, 3]")
            && err.to_string().contains("[4, 2]"),
        "{err}"
    );
}

#[test]
fn shape_errors_name_the_op_and_both_shapes() {
    let a = constant(vec![0.0; 6], &[2, 3]);
    let b = constant(vec![0.0; 6], &[3, 2]);
    let err = a.add(&b).unwrap_err().to_string();
    assert!(
        err.starts_with("add:") && err.contains("[2, 3]") && err.contains("[3, 2]"),
        "{err}"
    );

    let x = constant(vec![0.0; 2 * 3 * 4 * 4], &[2, 3, 4, 4]);
    let w = constant(vec![0.0; 8 * 5 * 3 * 3], &[8, 5, 3, 3]);
    let err = x.conv2d(&w, None, [1, 1], [1, 1]).unwrap_err().to_string();
    assert!(
        err.starts_with("conv2d:") && err.contains("[2, 3, 4, 4]") && err.contains("[8, 5, 3, 3]"),
        "{err}"
    );

    let w = constant(vec![0.0; 8 * 3 * 7 * 7], &[8, 3, 7, 7]);
    let err = x.conv2d(&w, None, [1, 1], [1, 1]).unwrap_err().to_string();
    assert!(err.starts_with("conv2d:"), "{err}");

    let w = constant(vec![0.0; 8 * 3 * 3 * 3], &[8, 3, 3, 3]);
    let err = x.conv2d(&w, None, [0, 1], [1, 1]).unwrap_err().to_string();
    assert!(
        err.starts_with("conv2d:") && err.contains("stride"),
        "{err}"
    );

    let err = a.linear(&b, None).unwrap_err().to_string();
    assert!(err.starts_with("linear:"), "{err}");
}

#[test]
fn mixed_dtypes_are_reported_not_panicked() {
    let a = Tensor::zeros(&[2], DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(&[2], DType::F64, Device::Cpu).unwrap();
    let err = a.add(&b).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
}

#[test]
fn f32_and_f64_run_the_same_ops() {
    let values = vec![0.5, -1.5, 2.0, 4.0];
    let a32 = Tensor::from_vec(
        values.iter().map(|&v| v as f32).collect(),
        &[2, 2],
        Device::Cpu,
    )
    .unwrap();
    let a64 = Tensor::from_vec(values.clone(), &[2, 2], Device::Cpu).unwrap();
    let l32 = a32
        .relu()
        .unwrap()
        .matmul(&a32)
        .unwrap()
        .sum()
        .unwrap()
        .item()
        .unwrap();
    let l64 = a64
        .relu()
        .unwrap()
        .matmul(&a64)
        .unwrap()
        .sum()
        .unwrap()
        .item()
        .unwrap();
    assert_eq!(l32, l64); // exactly representable
}

#[test]
fn a_frozen_convolution_on_data_gives_its_bias_the_sum_of_the_output_gradient() {
    // airbench94's whitening layer: data in, frozen weight, trained bias. Only the bias
    // gradient is computed; it is each channel's sum of dL/dy, here the weights `r` of
    // loss = sum(conv(x) * r), summed by hand.
    let (n, c_in, c_out, side) = (2, 3, 4, 5);
    let x = constant(
        (0..n * c_in * side * side)
            .map(|i| (i % 7) as f64 - 3.0)
            .collect(),
        &[n, c_in, side, side],
    );
    let w = leaf(
        (0..c_out * c_in * 4)
            .map(|i| (i % 5) as f64 * 0.5)
            .collect(),
        &[c_out, c_in, 2, 2],
    );
    let b = leaf(vec![0.0; c_out], &[c_out]);
    let out_side = side - 1;
    let r_values: Vec<f64> = (0..n * c_out * out_side * out_side)
        .map(|i| ((i * 37) % 11) as f64 - 5.0)
        .collect();
    let r = constant(r_values.clone(), &[n, c_out, out_side, out_side]);
    let mut want = vec![0.0; c_out];
    for (i, v) in r_values.iter().enumerate() {
        want[(i / (out_side * out_side)) % c_out] += v;
    }
    let loss = |x: &Tensor| {
        x.conv2d(&w, Some(&b), [1, 1], [0, 0])
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum()
            .unwrap()
    };
    w.set_requires_grad(false).unwrap();
    loss(&x).backward().unwrap();
    assert!(w.grad().is_none());
    assert_eq!(b.grad().unwrap().to_vec_f64().unwrap(), want);
    // The same bias gradient as the whole backward pass gives with the weight learning.
    b.zero_grad();
    w.set_requires_grad(true).unwrap();
    loss(&x).backward().unwrap();
    assert!(w.grad().is_some());
    assert_eq!(b.grad().unwrap().to_vec_f64().unwrap(), want);
}
