//! The notebook's network: its size, its shapes, its layers' PyTorch conventions.

use models::layers::{count_parameters, Conv2d, Module, ParamInit, StateEntry};
use models::{no_grad, DType, Device, Net, Tensor};

#[test]
fn the_notebook_network_has_10_899_914_parameters_as_pytorch_counts() {
    // Worked out by hand from the notebook's layers (weights + biases, BN weight + bias):
    // layer1 38,848; layer2 221,696; layer3 311,936; layer4 361,472; layer5 1,443,840;
    // layer_fc 8,522,122.
    let mut net = Net::new(0, Device::Cpu).unwrap();
    assert_eq!(net.num_parameters(), 10_899_914);
}

#[test]
fn theory_question_2_fifty_5x5_filters_on_a_grey_image_have_1300_parameters() {
    let mut init = ParamInit::new(0, Device::Cpu);
    let mut conv = Conv2d::new(&mut init, 1, 50, 5, 1, 0).unwrap();
    assert_eq!(count_parameters(&mut conv), 1300);
    // And the layer works on the question's 100x100 image.
    let image = Tensor::zeros(&[1, 1, 100, 100], DType::F32, Device::Cpu).unwrap();
    assert_eq!(conv.forward(&image).unwrap().shape(), &[1, 50, 96, 96]);
}

#[test]
fn layer_output_shapes_follow_the_notebook() {
    let mut net = Net::new(0, Device::Cpu).unwrap();
    net.set_training(false);
    let _guard = no_grad();
    let input = Tensor::zeros(&[2, 3, 32, 32], DType::F32, Device::Cpu).unwrap();
    let trace = net.trace(&input).unwrap();
    let shape_of = |name: &str| {
        trace
            .iter()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no layer {name}"))
            .output_shape
            .clone()
    };
    assert_eq!(shape_of("layer1.2"), vec![2, 64, 16, 16]);
    assert_eq!(shape_of("layer2.2"), vec![2, 128, 9, 9]);
    assert_eq!(shape_of("layer3.2"), vec![2, 128, 11, 11]); // 1x1 conv with padding 1 grows
    assert_eq!(shape_of("layer3.3"), vec![2, 128, 6, 6]);
    assert_eq!(shape_of("layer4.3"), vec![2, 256, 5, 5]);
    assert_eq!(shape_of("layer5.4"), vec![2, 512, 4, 4]);
    assert_eq!(shape_of("view"), vec![2, 8192]);
    assert_eq!(shape_of("layer_fc.6"), vec![2, 10]);
    let total: usize = trace.iter().map(|row| row.parameters).sum();
    assert_eq!(total, 10_899_914);
}

#[test]
fn state_dict_names_match_pytorch() {
    let mut net = Net::new(0, Device::Cpu).unwrap();
    let mut names = Vec::new();
    net.visit_state(&mut |name, entry| {
        if !matches!(entry, StateEntry::RngCounter(_)) {
            names.push(name.to_string());
        }
    });
    // The first block as `Net().state_dict().keys()` lists it in PyTorch.
    assert_eq!(
        &names[..8],
        &[
            "layer1.0.weight",
            "layer1.0.bias",
            "layer1.1.weight",
            "layer1.1.bias",
            "layer1.3.weight",
            "layer1.3.bias",
            "layer1.3.running_mean",
            "layer1.3.running_var",
        ]
    );
    assert_eq!(names[8], "layer1.3.num_batches_tracked");
    assert_eq!(names.last().unwrap(), "layer_fc.6.bias");
    // 11 convolutions and 3 linears with weight and bias, 5 batch norms with five entries.
    assert_eq!(names.len(), 14 * 2 + 5 * 5);
}

#[test]
fn default_initialisation_stays_within_pytorchs_bounds() {
    let mut net = Net::new(3, Device::Cpu).unwrap();
    for (name, tensor) in net.parameters() {
        let values = tensor.to_vec_f32().unwrap();
        if name.starts_with("layer1.3") {
            continue; // batch norm: ones and zeros
        }
        let fan_in: usize = match name.as_str() {
            "layer1.0.weight" | "layer1.0.bias" => 27,
            "layer_fc.0.weight" | "layer_fc.0.bias" => 8192,
            _ => continue,
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        assert!(values.iter().all(|v| v.abs() <= bound), "{name}");
        // Uniform: the spread fills most of the interval.
        let max = values.iter().cloned().fold(0.0f32, f32::max);
        assert!(max > 0.8 * bound, "{name}: max {max} of bound {bound}");
    }
}

#[test]
fn the_same_seed_builds_the_same_network() {
    let mut a = Net::new(42, Device::Cpu).unwrap();
    let mut b = Net::new(42, Device::Cpu).unwrap();
    let mut c = Net::new(43, Device::Cpu).unwrap();
    let first = |net: &mut Net| net.parameters()[0].1.to_vec_f32().unwrap();
    assert_eq!(first(&mut a), first(&mut b));
    assert_ne!(first(&mut a), first(&mut c));
}
