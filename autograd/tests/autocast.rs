//! `autocast(Precision::Bf16)`: conv2d and linear through the autograd, forward and every
//! gradient, against f64 sums of the same bf16-rounded operands.
//!
//! The oracle is the f64 CPU kernel (itself checked against finite differences in
//! `gradcheck.rs`) run on the operands rounded to bf16 by the `half` crate: it gives the
//! exact sums, and the same kernel on the absolute values gives each sum's magnitude
//! `sum |a b|`. Products of two bf16 values are exact in f32 (8 + 8 significant bits), so
//! the only error left is the f32 summation: `terms` additions, each rounding a partial sum
//! no larger than the magnitude to half an ulp, err by at most `terms * 2^-24 * magnitude`;
//! the bound checked is twice that (as in `kernels/src/bf16/tests.rs`). Products of the
//! unrounded f32 operands differ from the rounded ones by up to `2^-8` relative, which this
//! bound does not allow for the sizes here: a layer that ignored the guard would fail.

mod common;

use autograd::{autocast, current_precision, DType, Device, Precision, Tensor};
use common::Lcg;

fn bf16(x: f64) -> f64 {
    half::bf16::from_f64(x).to_f64()
}

/// f32 values in [-1, 1) (their f64 images, which are exact).
fn values(rng: &mut Lcg, len: usize) -> Vec<f64> {
    rng.values(len)
        .into_iter()
        .map(|v| v as f32 as f64)
        .collect()
}

fn f32_leaf(values: &[f64], shape: &[usize]) -> Tensor {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu)
        .unwrap()
        .requires_grad_()
}

fn f64_leaf(values: impl IntoIterator<Item = f64>, shape: &[usize]) -> Tensor {
    let v: Vec<f64> = values.into_iter().collect();
    Tensor::from_vec(v, shape, Device::Cpu)
        .unwrap()
        .requires_grad_()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// `got` (f32 results) against `exact`, element by element, at `terms` f32 additions
/// followed, where `rounded_to_bf16`, by one rounding to bf16: 8 significant bits, so
/// at most half a unit in the 8th bit, 2^-8 of the rounded value.
fn assert_within(
    what: &str,
    got: &[f32],
    exact: &[f64],
    magnitude: &[f64],
    terms: usize,
    rounded_to_bf16: bool,
) {
    assert_eq!(got.len(), exact.len(), "{what}: lengths");
    for i in 0..got.len() {
        let mut bound = terms as f64 * f32::EPSILON as f64 * magnitude[i];
        if rounded_to_bf16 {
            bound += 2f64.powi(-8) * (got[i] as f64).abs();
        }
        let err = (got[i] as f64 - exact[i]).abs();
        assert!(
            err <= bound,
            "{what}[{i}]: got {}, exact {}, error {err:e} > bound {bound:e} ({terms} terms)",
            got[i],
            exact[i]
        );
    }
}

/// What a layer under test computes, given its operands.
type Layer = dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor;

/// Runs `layer` on f32 operands under bf16 autocast (backward after the guard is gone, so
/// the node must have recorded its precision) and checks the output, of `output_dtype`,
/// and the three gradients. `terms` = [output, input gradient, weight gradient, bias
/// gradient] sums.
fn check_layer(
    layer: &Layer,
    shapes: [&[usize]; 3],
    (out_shape, output_dtype): (&[usize], DType),
    terms: [usize; 4],
    seed: u64,
) {
    let mut rng = Lcg::new(seed);
    let [xs, ws, bs] = shapes;
    let count = |s: &[usize]| s.iter().product::<usize>();
    let (x, w, b) = (
        values(&mut rng, count(xs)),
        values(&mut rng, count(ws)),
        values(&mut rng, count(bs)),
    );
    let r = values(&mut rng, count(out_shape));

    let (xt, wt, bt) = (f32_leaf(&x, xs), f32_leaf(&w, ws), f32_leaf(&b, bs));
    let y = {
        let _bf16 = autocast(Precision::Bf16);
        layer(&xt, &wt, &bt)
    };
    assert_eq!(current_precision(), Precision::F32);
    assert_eq!(
        y.dtype(),
        output_dtype,
        "the layer's output type under autocast"
    );
    let rt = Tensor::from_vec(
        r.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
        out_shape,
        Device::Cpu,
    )
    .unwrap();
    let y = y.to_dtype(DType::F32).unwrap();
    y.mul(&rt).unwrap().sum().unwrap().backward().unwrap();

    // Exact sums and magnitudes in f64 on the rounded operands; dL/dy = r rounded for the
    // products. The bias gradient is an f32 sum of dL/dy as it arrives: r rounded to bf16
    // behind a bf16 output (a gradient has its tensor's dtype), r itself behind an f32 one.
    let bias_grad_r = |v: f64| {
        if output_dtype == DType::BF16 {
            bf16(v)
        } else {
            v
        }
    };
    let exact = |abs: bool| {
        let m = |v: f64| if abs { v.abs() } else { v };
        let xe = f64_leaf(x.iter().map(|&v| m(bf16(v))), xs);
        let we = f64_leaf(w.iter().map(|&v| m(bf16(v))), ws);
        let be = f64_leaf(b.iter().map(|&v| m(v)), bs);
        let ye = layer(&xe, &we, &be);
        let re = f64_leaf(r.iter().map(|&v| m(bf16(v))), out_shape);
        ye.mul(&re).unwrap().sum().unwrap().backward().unwrap();
        let bias_grad_re = f64_leaf(r.iter().map(|&v| m(bias_grad_r(v))), out_shape);
        let be2 = f64_leaf(b.iter().map(|&v| m(v)), bs);
        let ye2 = layer(&xe.detach(), &we.detach(), &be2);
        ye2.mul(&bias_grad_re)
            .unwrap()
            .sum()
            .unwrap()
            .backward()
            .unwrap();
        [
            f64s(&ye),
            f64s(&xe.grad().unwrap()),
            f64s(&we.grad().unwrap()),
            f64s(&be2.grad().unwrap()),
        ]
    };
    let (sums, magnitudes) = (exact(false), exact(true));
    let got = [
        y.to_vec_f32().unwrap(),
        xt.grad().unwrap().to_vec_f32().unwrap(),
        wt.grad().unwrap().to_vec_f32().unwrap(),
        bt.grad().unwrap().to_vec_f32().unwrap(),
    ];
    for (i, what) in ["output", "input grad", "weight grad", "bias grad"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            [xt.grad().unwrap().dtype(), wt.grad().unwrap().dtype()],
            [DType::F32; 2],
            "master gradients stay f32"
        );
        let rounded = i == 0 && output_dtype == DType::BF16;
        assert_within(what, &got[i], &sums[i], &magnitudes[i], terms[i], rounded);
    }
}

fn bf16_or_skip() -> bool {
    match Precision::Bf16.check(Device::Cpu) {
        Ok(()) => true,
        Err(e) => {
            println!("SKIPPED: {e}");
            false
        }
    }
}

#[test]
fn autocast_conv2d_matches_f64_sums_of_rounded_operands() {
    if !bf16_or_skip() {
        return;
    }
    // (input, c_out, kernel, stride, padding): a 3x3 layer, a strided one, a 1x1 one.
    let cases: [([usize; 4], usize, usize, usize, usize); 3] = [
        ([2, 5, 7, 6], 4, 3, 1, 1),
        ([3, 4, 9, 8], 6, 3, 2, 0),
        ([2, 33, 5, 5], 7, 1, 1, 1),
    ];
    for (seed, (xs, c_out, k, stride, pad)) in cases.into_iter().enumerate() {
        let [n, c_in, h, w] = xs;
        let (oh, ow) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let conv = move |x: &Tensor, w: &Tensor, b: &Tensor| {
            x.conv2d(w, Some(b), [stride; 2], [pad; 2]).unwrap()
        };
        check_layer(
            &conv,
            [&xs, &[c_out, c_in, k, k], &[c_out]],
            (&[n, c_out, oh, ow], DType::BF16),
            [c_in * k * k + 1, c_out * k * k, n * oh * ow, n * oh * ow],
            seed as u64,
        );
    }
}

#[test]
fn autocast_linear_matches_f64_sums_of_rounded_operands() {
    if !bf16_or_skip() {
        return;
    }
    for (seed, (batch, inputs, outputs)) in [(3, 37, 5), (17, 130, 33)].into_iter().enumerate() {
        let linear = |x: &Tensor, w: &Tensor, b: &Tensor| x.linear(w, Some(b)).unwrap();
        check_layer(
            &linear,
            [&[batch, inputs], &[outputs, inputs], &[outputs]],
            (&[batch, outputs], DType::F32),
            [inputs + 1, outputs, batch, batch],
            10 + seed as u64,
        );
    }
}

#[test]
fn autocast_leaves_f64_tensors_and_other_ops_in_their_own_precision() {
    // As in PyTorch, autocast only lowers f32: an f64 layer gives the f64 result exactly.
    let mut rng = Lcg::new(7);
    let x = Tensor::from_vec(rng.values(6), &[2, 3], Device::Cpu).unwrap();
    let w = Tensor::from_vec(rng.values(12), &[4, 3], Device::Cpu).unwrap();
    let plain = f64s(&x.linear(&w, None).unwrap());
    let _bf16 = autocast(Precision::Bf16);
    assert_eq!(f64s(&x.linear(&w, None).unwrap()), plain);
}

/// `t`'s values rounded to bf16 and back: what an op under autocast must return, given
/// that it computes in f32 and rounds its output once.
fn rounded_f32(t: &Tensor) -> Vec<f32> {
    t.to_vec_f32()
        .unwrap()
        .into_iter()
        .map(|v| half::bf16::from_f32(v).to_f32())
        .collect()
}

#[test]
fn autocast_keeps_activations_between_convolutions_in_bf16_and_parameter_gradients_in_f32() {
    if !bf16_or_skip() {
        return;
    }
    use autograd::ops::batch_norm::BatchNormParams;
    let mut rng = Lcg::new(21);
    let x = f32_leaf(&values(&mut rng, 2 * 3 * 10 * 10), &[2, 3, 10, 10]);
    let w1 = f32_leaf(&values(&mut rng, 8 * 3 * 3 * 3), &[8, 3, 3, 3]);
    let w2 = f32_leaf(&values(&mut rng, 8 * 8 * 3 * 3), &[8, 8, 3, 3]);
    let w3 = f32_leaf(&values(&mut rng, 5 * 8 * 2 * 2), &[5, 8 * 2 * 2]);
    let gamma = f32_leaf(&values(&mut rng, 8), &[8]);
    let beta = f32_leaf(&values(&mut rng, 8), &[8]);
    let zeros = || Tensor::zeros(&[8], DType::F32, Device::Cpu).unwrap();
    let (running_mean, running_var) = (zeros(), zeros());
    let params = BatchNormParams {
        weight: &gamma,
        bias: &beta,
        running_mean: &running_mean,
        running_var: &running_var,
        momentum: 0.1,
        eps: 1e-5,
    };

    // airbench94's block, then its head: conv, pool, batch norm, GELU, conv, ReLU, pool,
    // flatten, linear.
    let bf16_guard = autocast(Precision::Bf16);
    let conv1 = x.conv2d(&w1, None, [1, 1], [1, 1]).unwrap();
    let pooled = conv1.max_pool2d([2, 2], [2, 2], [0, 0]).unwrap();
    let normed = pooled.batch_norm2d(&params, true).unwrap();
    let activated = normed.gelu().unwrap();
    let conv2 = activated.conv2d(&w2, None, [1, 1], [1, 1]).unwrap();
    let rectified = conv2.relu().unwrap();
    let flat = rectified
        .max_pool2d([2, 2], [2, 2], [0, 0])
        .unwrap()
        .flatten()
        .unwrap();
    let logits = flat.linear(&w3, None).unwrap();
    drop(bf16_guard);

    let between = [
        &conv1, &pooled, &normed, &activated, &conv2, &rectified, &flat,
    ];
    for t in between {
        assert_eq!(
            t.dtype(),
            DType::BF16,
            "activation of shape {:?}",
            t.shape()
        );
    }
    assert_eq!(logits.dtype(), DType::F32, "linear returns f32");

    // Each layer between the convolutions is its f32 op on the widened input, rounded once.
    let widened = |t: &Tensor| t.to_dtype(DType::F32).unwrap().detach();
    let f32_stats = (zeros(), zeros());
    let f32_params = BatchNormParams {
        running_mean: &f32_stats.0,
        running_var: &f32_stats.1,
        ..params
    };
    let expected = [
        (&pooled, widened(&conv1).max_pool2d([2, 2], [2, 2], [0, 0])),
        (&normed, widened(&pooled).batch_norm2d(&f32_params, true)),
        (&activated, widened(&normed).gelu()),
        (&rectified, widened(&conv2).relu()),
    ];
    for (got, want) in expected {
        assert_eq!(got.to_vec_f32().unwrap(), rounded_f32(&want.unwrap()));
    }
    assert_eq!(
        running_mean.to_vec_f32().unwrap(),
        f32_stats.0.to_vec_f32().unwrap(),
        "running statistics are f32 sums of the widened input"
    );

    logits.sum().unwrap().backward().unwrap();
    for (name, t) in [
        ("x", &x),
        ("w1", &w1),
        ("w2", &w2),
        ("w3", &w3),
        ("gamma", &gamma),
        ("beta", &beta),
    ] {
        let grad = t.grad().unwrap_or_else(|| panic!("{name} has no gradient"));
        assert_eq!(grad.dtype(), DType::F32, "{name}'s gradient");
        assert!(grad.to_vec_f32().unwrap().iter().all(|v| v.is_finite()));
    }
}

/// The gradient a bf16 activation `h` receives from `head(h).sum()`, for a fresh leaf.
fn bf16_leaf_gradient(h: &Tensor, head: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
    let leaf = h.detach().requires_grad_();
    head(&leaf).sum().unwrap().backward().unwrap();
    leaf.grad().unwrap()
}

#[test]
fn a_bf16_activation_gets_a_bf16_gradient_and_two_add_in_f32_rounded_once() {
    if !bf16_or_skip() {
        return;
    }
    let mut rng = Lcg::new(5);
    let x = f32_leaf(&values(&mut rng, 2 * 3 * 6 * 6), &[2, 3, 6, 6]);
    let w = f32_leaf(&values(&mut rng, 4 * 3 * 3 * 3), &[4, 3, 3, 3]);
    let w_head = f32_leaf(&values(&mut rng, 5 * 4 * 6 * 6), &[5, 4 * 6 * 6]);
    let _bf16 = autocast(Precision::Bf16);
    let h = x.conv2d(&w, None, [1, 1], [1, 1]).unwrap();
    assert_eq!(h.dtype(), DType::BF16);
    let through_gelu = |t: &Tensor| {
        let flat = t.gelu().unwrap().flatten().unwrap();
        flat.linear(&w_head, None).unwrap()
    };
    let through_relu = |t: &Tensor| {
        let flat = t.relu().unwrap().flatten().unwrap();
        flat.linear(&w_head, None).unwrap()
    };
    let g1 = bf16_leaf_gradient(&h, &through_gelu);
    let g2 = bf16_leaf_gradient(&h, &through_relu);
    let both = bf16_leaf_gradient(&h, &|t| through_gelu(t).add(&through_relu(t)).unwrap());
    for g in [&g1, &g2, &both] {
        assert_eq!(g.dtype(), DType::BF16, "the gradient of a bf16 activation");
    }
    let (g1, g2) = (g1.to_vec_f32().unwrap(), g2.to_vec_f32().unwrap());
    let sum: Vec<f32> = g1
        .iter()
        .zip(&g2)
        .map(|(a, b)| half::bf16::from_f32(a + b).to_f32())
        .collect();
    assert_eq!(both.to_vec_f32().unwrap(), sum);
    // The cast's backward also returns the input's dtype.
    let cast = bf16_leaf_gradient(&h, &|t| t.to_dtype(DType::F32).unwrap());
    assert_eq!(cast.dtype(), DType::BF16);
    assert!(cast.to_vec_f32().unwrap().iter().all(|&v| v == 1.0));
}
