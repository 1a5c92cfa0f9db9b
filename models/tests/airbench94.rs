//! airbench94's network: PyTorch's names and count, its initialisation, its frozen
//! parameters, its shapes, and the whitening initialisation in place.

use models::layers::{BatchNorm2d, Module, ParamInit};
use models::networks::{self, Airbench94};
use models::optim::Lookahead;
use models::whitening::{patch_moments, PatchWhitening};
use models::{Device, Model, Tensor};

fn net() -> Airbench94 {
    Airbench94::new(0, Device::Cpu).unwrap()
}

fn param(model: &mut dyn Module, name: &str) -> Tensor {
    model
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
}

#[test]
fn it_has_1_972_792_parameters_named_as_pytorch_names_them() {
    // By hand: whitening 24*3*2*2 + 24 = 312; group 1: 24*64*9 + 64*64*9 + 2 * (64 + 64)
    // = 50,944; group 2: 64*256*9 + 256*256*9 + 2 * 512 = 738,304; group 3: 2 * 256*256*9
    // + 2 * 512 = 1,180,672; linear 2,560.
    let mut model = net();
    assert_eq!(model.num_parameters(), 1_972_792);
    let mut expected = vec!["0.weight".to_string(), "0.bias".to_string()];
    for group in 2..=4 {
        for (conv, norm) in [("conv1", "norm1"), ("conv2", "norm2")] {
            expected.push(format!("{group}.{conv}.weight"));
            for entry in [
                "weight",
                "bias",
                "running_mean",
                "running_var",
                "num_batches_tracked",
            ] {
                expected.push(format!("{group}.{norm}.{entry}"));
            }
        }
    }
    expected.push("7.weight".to_string());
    // `model.state_dict().keys()` of the port's make_net(), in order.
    assert_eq!(model.state_dict_names(), expected);
    // Registered under its name.
    let mut built = networks::by_name("airbench94", 0, Device::Cpu).unwrap();
    assert_eq!(built.num_parameters(), 1_972_792);
    assert_eq!(built.name(), "airbench94");
}

#[test]
fn the_whitening_weight_and_batch_norm_weights_are_frozen() {
    let mut model = net();
    let frozen: Vec<String> = model
        .parameters()
        .into_iter()
        .filter(|(_, p)| !p.requires_grad())
        .map(|(n, _)| n)
        .collect();
    let mut expected = vec!["0.weight".to_string()];
    for group in 2..=4 {
        expected.push(format!("{group}.norm1.weight"));
        expected.push(format!("{group}.norm2.weight"));
    }
    assert_eq!(frozen, expected);
    let trainable: usize = model
        .parameters()
        .iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(_, p)| p.numel())
        .sum();
    assert_eq!(trainable, 1_972_792 - 288 - 2 * (64 + 256 + 256));

    // A backward pass gives the frozen ones no gradient, the trainable ones one.
    model.set_training(true);
    let x = Tensor::from_vec(
        (0..4 * 3 * 32 * 32)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect::<Vec<_>>(),
        &[4, 3, 32, 32],
        Device::Cpu,
    )
    .unwrap();
    model
        .forward(&x)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    for (name, p) in model.parameters() {
        assert_eq!(p.grad().is_some(), p.requires_grad(), "{name}");
    }
    // The whitening bias frozen (as after airbench's third epoch) gets none either.
    for (_, p) in model.parameters() {
        p.zero_grad();
    }
    model.whitening_bias().set_requires_grad(false).unwrap();
    model
        .forward(&x)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert!(param(&mut model, "0.bias").grad().is_none());
    assert!(param(&mut model, "2.conv1.weight").grad().is_some());
}

#[test]
fn layers_have_airbenchs_shapes_and_settings() {
    let mut model = net();
    let trace = model.layers_at(2).unwrap();
    let row = |name: &str| {
        trace
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no layer {name}"))
    };
    assert_eq!(row("0").output_shape, [2, 24, 31, 31]);
    assert_eq!(row("2.pool").output_shape, [2, 64, 15, 15]);
    assert_eq!(row("3.pool").output_shape, [2, 256, 7, 7]);
    assert_eq!(row("4.norm2").output_shape, [2, 256, 3, 3]);
    assert_eq!(row("5").output_shape, [2, 256, 1, 1]);
    assert_eq!(row("6").output_shape, [2, 256]);
    assert_eq!(row("8").output_shape, [2, 10]);
    assert_eq!(
        row("2.norm1").description,
        "BatchNorm2d(64, eps=1e-12, momentum=0.4, affine=True, track_running_stats=True)"
    );
    assert_eq!(
        row("2.conv1").description,
        "Conv2d(24, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"
    );
    assert_eq!(row("1").description, "GELU(approximate='none')");
    assert_eq!(
        row("7").description,
        "Linear(in_features=256, out_features=10, bias=False)"
    );
    assert_eq!(
        row("5").description,
        "MaxPool2d(kernel_size=3, stride=3, padding=0, dilation=1, ceil_mode=False)"
    );
    // Each group's GELU runs twice, under the one name PyTorch gives it.
    assert_eq!(trace.iter().filter(|r| r.name == "3.activ").count(), 2);
}

#[test]
fn convolutions_start_dirac_in_their_first_filters_and_default_elsewhere() {
    let mut model = net();
    for (name, cin, cout) in [
        ("2.conv1.weight", 24, 64),
        ("2.conv2.weight", 64, 64),
        ("3.conv1.weight", 64, 256),
        ("4.conv2.weight", 256, 256),
    ] {
        let w = param(&mut model, name).to_vec_f32().unwrap();
        let filter = cin * 9;
        for o in 0..cin {
            for (i, &v) in w[o * filter..(o + 1) * filter].iter().enumerate() {
                let identity = i == o * 9 + 4;
                assert_eq!(v, if identity { 1.0 } else { 0.0 }, "{name}[{o}] at {i}");
            }
        }
        // The rest: PyTorch's kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(fan_in).
        let bound = 1.0 / (filter as f32).sqrt();
        let rest = &w[cin * filter..];
        assert_eq!(rest.len(), (cout - cin) * filter);
        assert!(rest.iter().all(|v| v.abs() <= bound), "{name}");
        if !rest.is_empty() {
            let max = rest.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                max > 0.9 * bound,
                "{name}: spread over the bound, max {max}"
            );
        }
    }
    assert!(param(&mut model, "0.bias")
        .to_vec_f32()
        .unwrap()
        .iter()
        .all(|&b| b == 0.0));
    let linear = param(&mut model, "7.weight").to_vec_f32().unwrap();
    assert!(linear.iter().all(|v| v.abs() <= 1.0 / 16.0));
}

#[test]
fn whitening_sets_the_frozen_weight_to_the_filters() {
    let model = net();
    let shape = [6, 3, 32, 32];
    let images: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| (((i * 7919) % 257) as f32 / 64.0 - 2.0) * if i % 3 == 0 { 0.5 } else { 1.0 })
        .collect();
    let whitening = model.init_whitening(&images, shape).unwrap();
    let expected = PatchWhitening::of(&patch_moments(&images, shape, 2).unwrap()).unwrap();
    assert_eq!(whitening, expected);
    assert_eq!(
        model.whitening_weight().to_vec_f32().unwrap(),
        expected.filters(5e-4)
    );
    assert!(!model.whitening_weight().requires_grad());
    assert_eq!(model.whitening_weight().shape(), [24, 3, 2, 2]);
}

#[test]
fn lookahead_averages_every_float_entry_including_running_statistics() {
    // One batch norm: weight, bias, running_mean, running_var, num_batches_tracked.
    let mut bn = BatchNorm2d::new(&mut ParamInit::new(0, Device::Cpu), 1).unwrap();
    let mut lookahead = Lookahead::new(&mut bn).unwrap();
    // A training forward moves the running statistics: x = (1, 3) has mean 2 and unbiased
    // variance 2, so with momentum 0.1: running_mean 0.2, running_var 0.9 + 0.2 = 1.1.
    let x = Tensor::from_vec(vec![1.0f32, 3.0], &[2, 1, 1, 1], Device::Cpu).unwrap();
    bn.forward(&x).unwrap();
    bn.bias
        .assign(&Tensor::from_vec(vec![1.0f32], &[1], Device::Cpu).unwrap())
        .unwrap();
    // decay 0.75: average = 0.75 * start + 0.25 * live, and the live values become it.
    lookahead.update(0.75).unwrap();
    let value = |t: &Tensor| t.to_vec_f64().unwrap()[0];
    assert!((value(&bn.running_mean) - 0.05).abs() < 1e-7);
    assert!((value(&bn.running_var) - 1.025).abs() < 1e-7);
    assert!((value(&bn.bias) - 0.25).abs() < 1e-7);
    assert_eq!(value(&bn.weight), 1.0);
    assert_eq!(
        bn.num_batches_tracked, 1,
        "integer counters are not averaged"
    );
    // decay 1: the weights become the average as it stands.
    bn.bias
        .assign(&Tensor::from_vec(vec![9.0f32], &[1], Device::Cpu).unwrap())
        .unwrap();
    lookahead.update(1.0).unwrap();
    assert!((value(&bn.bias) - 0.25).abs() < 1e-7);
    assert!(lookahead.update(1.5).is_err());
    let names: Vec<String> = lookahead
        .state()
        .tensors
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "lookahead.weight",
            "lookahead.bias",
            "lookahead.running_mean",
            "lookahead.running_var"
        ]
    );
}
