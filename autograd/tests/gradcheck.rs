//! Every differentiable op: analytic gradients against central finite differences in f64,
//! on random shapes (batch 1 and more, odd sizes, stride > 1, padding > 0, 1x1 kernels,
//! kernels as large as the padded input), for inputs and for parameters.

mod common;

use autograd::ops::batch_norm::BatchNormParams;
use autograd::{CrossEntropy, Reduction, Tensor};
use common::{check_gradients, constant, leaf, Lcg};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config(cases: u32) -> ProptestConfig {
    // A fixed seed keeps CI reproducible; the cases still cover the shape space broadly.
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0a11_cafe),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[derive(Debug, Clone)]
struct ConvCase {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    bias: bool,
}

fn conv_cases() -> impl Strategy<Value = ConvCase> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=6,
        1usize..=6,
        (0usize..=2, 0usize..=2),
        (1usize..=3, 1usize..=3),
        any::<bool>(),
    )
        .prop_flat_map(|(batch, cin, cout, h, w, (ph, pw), stride, bias)| {
            (1..=(h + 2 * ph).min(5), 1..=(w + 2 * pw).min(5)).prop_map(move |(kh, kw)| ConvCase {
                batch,
                in_channels: cin,
                out_channels: cout,
                height: h,
                width: w,
                kernel: [kh, kw],
                stride: [stride.0, stride.1],
                padding: [ph, pw],
                bias,
            })
        })
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn conv2d_gradients(case in conv_cases(), seed in any::<u64>()) {
        let mut rng = Lcg::new(seed);
        let c = &case;
        let x = leaf(rng.values(c.batch * c.in_channels * c.height * c.width), &[c.batch, c.in_channels, c.height, c.width]);
        let w = leaf(rng.values(c.out_channels * c.in_channels * c.kernel[0] * c.kernel[1]), &[c.out_channels, c.in_channels, c.kernel[0], c.kernel[1]]);
        let mut inputs = vec![x, w];
        if c.bias {
            inputs.push(leaf(rng.values(c.out_channels), &[c.out_channels]));
        }
        let (stride, padding) = (c.stride, c.padding);
        let result = check_gradients(&inputs, seed, |t| t[0].conv2d(&t[1], t.get(2), stride, padding));
        prop_assert!(result.is_ok(), "{case:?}: {}", result.unwrap_err());
    }

    #[test]
    fn pool2d_gradients(
        (batch, channels, h, w) in (1usize..=2, 1usize..=3, 1usize..=7, 1usize..=7),
        (kh, kw) in (1usize..=4, 1usize..=4),
        (sh, sw) in (1usize..=3, 1usize..=3),
        (ph, pw) in (0usize..=2, 0usize..=2),
        max in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // PyTorch's constraints: padding at most half the kernel, window fits the padded input.
        prop_assume!(ph <= kh / 2 && pw <= kw / 2);
        prop_assume!(kh <= h + 2 * ph && kw <= w + 2 * pw);
        let mut rng = Lcg::new(seed);
        let x = leaf(rng.distinct_values(batch * channels * h * w, 0.01), &[batch, channels, h, w]);
        let result = check_gradients(&[x], seed, |t| {
            if max {
                t[0].max_pool2d([kh, kw], [sh, sw], [ph, pw])
            } else {
                t[0].avg_pool2d([kh, kw], [sh, sw], [ph, pw])
            }
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn batch_norm_gradients(
        (batch, channels, h, w) in (1usize..=3, 1usize..=3, 1usize..=4, 1usize..=4),
        training in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(!training || batch * h * w > 1);
        let mut rng = Lcg::new(seed);
        let x = leaf(rng.values(batch * channels * h * w), &[batch, channels, h, w]);
        let gamma = leaf(rng.values(channels), &[channels]);
        let beta = leaf(rng.values(channels), &[channels]);
        let running_mean = constant(rng.values(channels), &[channels]);
        let running_var = constant(rng.values(channels).iter().map(|v| 0.5 + v.abs()).collect(), &[channels]);
        let result = check_gradients(&[x, gamma, beta], seed, |t| {
            let params = BatchNormParams {
                weight: &t[1],
                bias: &t[2],
                running_mean: &running_mean,
                running_var: &running_var,
                momentum: 0.1,
                eps: 1e-5,
            };
            t[0].batch_norm2d(&params, training)
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn linear_gradients(
        (batch, inputs, outputs) in (1usize..=4, 1usize..=6, 1usize..=5),
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Lcg::new(seed);
        let mut leaves = vec![
            leaf(rng.values(batch * inputs), &[batch, inputs]),
            leaf(rng.values(outputs * inputs), &[outputs, inputs]),
        ];
        if bias {
            leaves.push(leaf(rng.values(outputs), &[outputs]));
        }
        let result = check_gradients(&leaves, seed, |t| t[0].linear(&t[1], t.get(2)));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn matmul_gradients((m, k, n) in (1usize..=5, 1usize..=5, 1usize..=5), seed in any::<u64>()) {
        let mut rng = Lcg::new(seed);
        let a = leaf(rng.values(m * k), &[m, k]);
        let b = leaf(rng.values(k * n), &[k, n]);
        let result = check_gradients(&[a, b], seed, |t| t[0].matmul(&t[1]));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn relu_gradients(len in 1usize..=40, seed in any::<u64>()) {
        let x = leaf(Lcg::new(seed).away_from_zero(len, 1e-3), &[len]);
        let result = check_gradients(&[x], seed, |t| t[0].relu());
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn gelu_gradients(len in 1usize..=40, scale in 0.1f64..8.0, seed in any::<u64>()) {
        let x = leaf(Lcg::new(seed).values(len).iter().map(|v| v * scale).collect(), &[len]);
        let result = check_gradients(&[x], seed, |t| t[0].gelu());
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn dropout_gradients(len in 1usize..=60, p in 0.0f64..0.9, mask_seed in any::<u64>(), seed in any::<u64>()) {
        let x = leaf(Lcg::new(seed).values(len), &[len]);
        let result = check_gradients(&[x], seed, |t| t[0].dropout(p, true, mask_seed));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn arithmetic_and_reduction_gradients(len in 1usize..=30, factor in -3.0f64..3.0, seed in any::<u64>()) {
        let mut rng = Lcg::new(seed);
        let a = leaf(rng.values(len), &[len]);
        let b = leaf(rng.values(len), &[len]);
        let result = check_gradients(&[a, b], seed, |t| {
            // (a + b) * a * factor, summed and averaged: add, mul, scale, sum and mean together.
            let product = t[0].add(&t[1])?.mul(&t[0])?.scale(factor)?;
            product.sum()?.add(&product.mean()?)
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn log_softmax_and_cross_entropy_gradients(
        (rows, cols) in (1usize..=5, 1usize..=6),
        scale in 0.1f64..20.0,
        seed in any::<u64>(),
    ) {
        let mut rng = Lcg::new(seed);
        let logits = leaf(rng.values(rows * cols).iter().map(|v| v * scale).collect(), &[rows, cols]);
        let labels: Vec<u32> = (0..rows).map(|_| ((rng.uniform() + 1.0) / 2.0 * cols as f64) as u32 % cols as u32).collect();
        let result = check_gradients(std::slice::from_ref(&logits), seed, |t| t[0].log_softmax());
        prop_assert!(result.is_ok(), "log_softmax: {}", result.unwrap_err());
        let logits = logits.detach().requires_grad_();
        let result = check_gradients(std::slice::from_ref(&logits), seed, |t| t[0].cross_entropy(&labels));
        prop_assert!(result.is_ok(), "cross_entropy: {}", result.unwrap_err());
        // airbench94's loss: label smoothing 0.2, summed over the rows.
        let airbench = CrossEntropy { label_smoothing: 0.2, reduction: Reduction::Sum };
        let logits = logits.detach().requires_grad_();
        let result = check_gradients(&[logits], seed, |t| t[0].cross_entropy_with(&labels, airbench));
        prop_assert!(result.is_ok(), "smoothed cross_entropy: {}", result.unwrap_err());
    }
}

/// The notebook's block structure end to end at toy size: conv, 1x1 conv with padding,
/// max pool with padding, batch norm, ReLU, flatten, linear, dropout, cross-entropy.
#[test]
fn small_network_gradients() {
    let mut rng = Lcg::new(7);
    let x = constant(rng.values(2 * 2 * 5 * 5), &[2, 2, 5, 5]);
    let params = vec![
        leaf(rng.values(3 * 2 * 3 * 3), &[3, 2, 3, 3]),
        leaf(rng.values(3), &[3]),
        leaf(rng.values(3 * 3), &[3, 3, 1, 1]),
        leaf(rng.values(3), &[3]),
        leaf(rng.values(3).iter().map(|v| 1.0 + 0.5 * v).collect(), &[3]),
        leaf(rng.values(3), &[3]),
        leaf(rng.values(4 * 48), &[4, 48]),
        leaf(rng.values(4), &[4]),
    ];
    let running_mean = Tensor::zeros(&[3], autograd::DType::F64, autograd::Device::Cpu).unwrap();
    let running_var = Tensor::full(&[3], 1.0, autograd::DType::F64, autograd::Device::Cpu).unwrap();
    let labels = [1u32, 3];
    let result = check_gradients(&params, 11, |p| {
        let h = x.conv2d(&p[0], Some(&p[1]), [1, 1], [1, 1])?;
        let h = h.conv2d(&p[2], Some(&p[3]), [1, 1], [1, 1])?; // 7x7
        let h = h.max_pool2d([2, 2], [2, 2], [1, 1])?; // 4x4
        let bn = BatchNormParams {
            weight: &p[4],
            bias: &p[5],
            running_mean: &running_mean,
            running_var: &running_var,
            momentum: 0.1,
            eps: 1e-5,
        };
        let h = h.batch_norm2d(&bn, true)?.relu()?.flatten()?;
        let logits = h.linear(&p[6], Some(&p[7]))?.dropout(0.25, true, 99)?;
        logits.cross_entropy(&labels)?.reshape(&[1])
    });
    assert!(result.is_ok(), "{}", result.unwrap_err());
}
