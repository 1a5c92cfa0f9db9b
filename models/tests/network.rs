//! The notebook's network: its size, its shapes, its layers' PyTorch conventions.

use models::layers::{Conv2d, LayerKind, Module, ParamInit};
use models::{networks, no_grad, DType, Device, Model, Net, Tensor};

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
    assert_eq!(conv.num_parameters(), 1300);
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
    let names = net.state_dict_names();
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
    // The flatten step has no state: layer_fc keeps PyTorch's numbering.
    let fc: Vec<&str> = names
        .iter()
        .filter(|n| n.starts_with("layer_fc"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        fc,
        [
            "layer_fc.0.weight",
            "layer_fc.0.bias",
            "layer_fc.3.weight",
            "layer_fc.3.bias",
            "layer_fc.6.weight",
            "layer_fc.6.bias",
        ]
    );
    // 11 convolutions and 3 linears with weight and bias, 5 batch norms with five entries.
    assert_eq!(names.len(), 14 * 2 + 5 * 5);
    // Parameters are the trainable subset, in the same order.
    let params: Vec<String> = net.parameters().into_iter().map(|(n, _)| n).collect();
    let trainable: Vec<String> = names
        .iter()
        .filter(|n| n.ends_with("weight") || n.ends_with("bias"))
        .cloned()
        .collect();
    assert_eq!(params, trainable);
}

#[test]
fn the_trace_lists_every_layer_with_its_kind_shapes_and_parameters() {
    let mut net = Net::new(0, Device::Cpu).unwrap();
    let trace = net.layers_at(4).unwrap();
    // 11 convs, 5 x (pool, batch norm, ReLU), the flatten, then linear, ReLU, dropout x 2 + linear.
    assert_eq!(trace.len(), 11 + 15 + 1 + 7);
    let names: Vec<&str> = trace.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(
        &names[..7],
        ["layer1.0", "layer1.1", "layer1.2", "layer1.3", "layer1.4", "layer2.0", "layer2.1"]
    );
    assert_eq!(
        &names[26..],
        [
            "view",
            "layer_fc.0",
            "layer_fc.1",
            "layer_fc.2",
            "layer_fc.3",
            "layer_fc.4",
            "layer_fc.5",
            "layer_fc.6"
        ]
    );
    let row = |name: &str| trace.iter().find(|row| row.name == name).unwrap();
    // Each layer's input is the previous layer's output.
    for pair in trace.windows(2) {
        assert_eq!(
            pair[1].input_shape, pair[0].output_shape,
            "{}",
            pair[1].name
        );
    }
    assert_eq!(trace[0].input_shape, vec![4, 3, 32, 32]);
    let conv = row("layer3.2");
    assert_eq!(
        conv.kind,
        LayerKind::Conv2d {
            in_channels: 128,
            out_channels: 128,
            kernel_size: 1,
            stride: 1,
            padding: 1,
            bias: true
        }
    );
    assert_eq!(
        (conv.input_shape.as_slice(), conv.output_shape.as_slice()),
        ([4, 128, 9, 9].as_slice(), [4, 128, 11, 11].as_slice())
    );
    assert_eq!(conv.parameters, 128 * 128 + 128);
    assert_eq!(
        row("layer2.2").kind,
        LayerKind::MaxPool2d {
            kernel_size: 2,
            stride: 2,
            padding: 1
        }
    );
    assert_eq!(row("layer2.3").parameters, 2 * 128);
    assert_eq!(row("view").kind, LayerKind::Flatten);
    assert_eq!(row("view").output_shape, vec![4, 8192]);
    assert_eq!(row("layer_fc.2").kind, LayerKind::Dropout { p: 0.5 });
    assert_eq!(
        row("layer_fc.0").description,
        "Linear(in_features=8192, out_features=1024, bias=True)"
    );
    let total: usize = trace.iter().map(|row| row.parameters).sum();
    assert_eq!(total, 10_899_914);
}

#[test]
fn the_registry_builds_every_network_by_name() {
    assert!(networks::names().contains(&"net"));
    for name in networks::names() {
        let mut model = networks::by_name(name, 0, Device::Cpu).unwrap();
        assert_eq!(model.name(), name);
        let trace = model.layers_at(2).unwrap();
        let [c, h, w] = model.input_shape();
        assert_eq!(trace[0].input_shape, vec![2, c, h, w], "{name}");
        let logits = &trace.last().unwrap().output_shape;
        assert_eq!(logits, &vec![2, model.num_classes()], "{name}");
        let traced: usize = trace.iter().map(|row| row.parameters).sum();
        assert_eq!(traced, model.num_parameters(), "{name}");
    }
    let mut net = networks::by_name("net", 0, Device::Cpu).unwrap();
    assert_eq!(net.num_parameters(), 10_899_914);
    let err = networks::by_name("resnet", 0, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unknown model \"resnet\"") && err.contains("net"),
        "{err}"
    );
}

#[test]
fn a_registered_network_trains_through_the_model_trait() {
    let mut model = networks::by_name("net", 1, Device::Cpu).unwrap();
    model.set_training(true);
    let adam = models::optim::Adam::new(model.parameters(), Default::default()).unwrap();
    let mut optimizer = models::optim::Optimizer::Adam(adam);
    let batch = models::data::Batch {
        images: vec![0.5; 2 * 3 * 32 * 32],
        labels: vec![3, 7],
    };
    let before = model.parameters()[0].1.to_vec_f32().unwrap();
    models::train::train_step(model.as_mut(), &mut optimizer, &batch, Device::Cpu).unwrap();
    assert_ne!(model.parameters()[0].1.to_vec_f32().unwrap(), before);
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
