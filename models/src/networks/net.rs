//! The notebook's network (section 3.1), layer for layer.

use autograd::{Device, Result, Tensor};

use crate::layers::{
    BatchNorm2d, Conv2d, Dropout, Flatten, LayerKind, LayerTrace, Linear, MaxPool2d, Module,
    ParamInit, ReLU, Sequential, StateEntry,
};
use crate::model::Model;

/// The CIFAR-10 CNN of the course notebook: five convolution blocks (including its 1x1
/// convolutions with padding 1 and max pools with padding 1), then 8192 -> 1024 -> 128 -> 10.
/// 10,899,914 trainable parameters, as PyTorch counts the same module.
///
/// Its children are `layer1` ... `layer5`, `view` (the notebook's `x.view(-1, 512*4*4)` in
/// `forward`, here a [`Flatten`] step with no state) and `layer_fc`, so the `state_dict`
/// names are PyTorch's exactly: `layer1.0.weight` ... `layer_fc.6.bias`.
pub struct Net {
    body: Sequential,
}

fn conv(
    init: &mut ParamInit,
    cin: usize,
    cout: usize,
    k: usize,
    pad: usize,
) -> Result<Box<dyn Module>> {
    Ok(Box::new(Conv2d::new(init, cin, cout, k, 1, pad)?))
}

fn pool_bn_relu(
    init: &mut ParamInit,
    pool_padding: usize,
    channels: usize,
) -> Result<Vec<Box<dyn Module>>> {
    Ok(vec![
        Box::new(MaxPool2d::new(2, 2, pool_padding)),
        Box::new(BatchNorm2d::new(init, channels)?),
        Box::new(ReLU),
    ])
}

impl Net {
    /// The name it is registered under in [`crate::networks`].
    pub const NAME: &'static str = "net";

    /// The network with PyTorch's default initialisation drawn from `seed`, on `device`.
    pub fn new(seed: u64, device: Device) -> Result<Net> {
        let mut init = ParamInit::new(seed, device);
        let init = &mut init;
        let block = |convs: Vec<Box<dyn Module>>, tail: Vec<Box<dyn Module>>| -> Box<dyn Module> {
            Box::new(Sequential::new(convs.into_iter().chain(tail).collect()))
        };
        let layer1 = block(
            vec![conv(init, 3, 64, 3, 1)?, conv(init, 64, 64, 3, 1)?],
            pool_bn_relu(init, 0, 64)?,
        );
        let layer2 = block(
            vec![conv(init, 64, 128, 3, 1)?, conv(init, 128, 128, 3, 1)?],
            pool_bn_relu(init, 1, 128)?,
        );
        let layer3 = block(
            vec![
                conv(init, 128, 128, 3, 1)?,
                conv(init, 128, 128, 3, 1)?,
                conv(init, 128, 128, 1, 1)?,
            ],
            pool_bn_relu(init, 1, 128)?,
        );
        let layer4 = block(
            vec![conv(init, 128, 256, 3, 1)?, conv(init, 256, 256, 1, 1)?],
            pool_bn_relu(init, 1, 256)?,
        );
        let layer5 = block(
            vec![conv(init, 256, 512, 3, 1)?, conv(init, 512, 512, 1, 1)?],
            pool_bn_relu(init, 1, 512)?,
        );
        let layer_fc = Sequential::new(vec![
            Box::new(Linear::new(init, 512 * 4 * 4, 1024)?),
            Box::new(ReLU),
            Box::new(Dropout::new(0.5, init.next_seed())),
            Box::new(Linear::new(init, 1024, 128)?),
            Box::new(ReLU),
            Box::new(Dropout::new(0.5, init.next_seed())),
            Box::new(Linear::new(init, 128, 10)?),
        ]);
        Ok(Net {
            body: Sequential::named(vec![
                ("layer1", layer1),
                ("layer2", layer2),
                ("layer3", layer3),
                ("layer4", layer4),
                ("layer5", layer5),
                ("view", Box::new(Flatten)),
                ("layer_fc", Box::new(layer_fc)),
            ]),
        })
    }
}

impl Module for Net {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        self.body.forward(input)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        self.body.visit_state(visit)
    }

    fn set_training(&mut self, training: bool) {
        self.body.set_training(training)
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Container { name: "Net" }
    }

    fn forward_traced(
        &mut self,
        input: &Tensor,
        trace: &mut Vec<LayerTrace>,
        prefix: &str,
    ) -> Result<Option<Tensor>> {
        self.body.forward_traced(input, trace, prefix)
    }
}

impl Model for Net {
    fn name(&self) -> &'static str {
        Net::NAME
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }

    fn num_classes(&self) -> usize {
        10
    }
}
