//! The notebook's network (section 3.1), layer for layer.

use autograd::{Device, Result, Tensor};

use crate::layers::module::join;
use crate::layers::{
    count_parameters, BatchNorm2d, Conv2d, Dropout, LayerTrace, Linear, MaxPool2d, Module,
    ParamInit, ReLU, Sequential, StateEntry,
};

/// The CIFAR-10 CNN of the course notebook: five convolution blocks (including its 1x1
/// convolutions with padding 1 and max pools with padding 1), then 8192 -> 1024 -> 128 -> 10.
/// 10,899,914 trainable parameters, as PyTorch counts the same module.
pub struct Net {
    /// `layer1` ... `layer5`, then `layer_fc`, in the notebook's order and names.
    pub blocks: Vec<(&'static str, Sequential)>,
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
    /// The network with PyTorch's default initialisation drawn from `seed`, on `device`.
    pub fn new(seed: u64, device: Device) -> Result<Net> {
        let mut init = ParamInit::new(seed, device);
        let init = &mut init;
        let block = |convs: Vec<Box<dyn Module>>, tail: Vec<Box<dyn Module>>| {
            Sequential::new(convs.into_iter().chain(tail).collect())
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
            blocks: vec![
                ("layer1", layer1),
                ("layer2", layer2),
                ("layer3", layer3),
                ("layer4", layer4),
                ("layer5", layer5),
                ("layer_fc", layer_fc),
            ],
        })
    }

    /// Trainable parameters in `state_dict` order.
    pub fn parameters(&mut self) -> Vec<(String, Tensor)> {
        let mut params = Vec::new();
        self.visit_state(&mut |name, entry| {
            if let StateEntry::Parameter(t) = entry {
                params.push((name.to_string(), t.clone()));
            }
        });
        params
    }

    /// Number of trainable elements.
    pub fn num_parameters(&mut self) -> usize {
        count_parameters(self)
    }

    /// Runs the network layer by layer on `input`, recording each layer's output shape
    /// and parameter count (the `summary` command's table).
    pub fn trace(&mut self, input: &Tensor) -> Result<Vec<LayerTrace>> {
        let mut trace = Vec::new();
        self.forward_traced(input, &mut trace, "")?;
        Ok(trace)
    }
}

impl Module for Net {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for (name, block) in &mut self.blocks {
            if *name == "layer_fc" {
                // The notebook's `x.view(-1, 512*4*4)`.
                x = x.flatten()?;
            }
            x = block.forward(&x)?;
        }
        Ok(x)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        for (prefix, block) in &mut self.blocks {
            let prefix: &str = prefix;
            block.visit_state(&mut |name, entry| visit(&join(prefix, name), entry));
        }
    }

    fn set_training(&mut self, training: bool) {
        for (_, block) in &mut self.blocks {
            block.set_training(training);
        }
    }

    fn describe(&self) -> String {
        "Net".to_string()
    }

    fn forward_traced(
        &mut self,
        input: &Tensor,
        trace: &mut Vec<LayerTrace>,
        prefix: &str,
    ) -> Result<Option<Tensor>> {
        let mut x = input.clone();
        for (name, block) in &mut self.blocks {
            if *name == "layer_fc" {
                x = x.flatten()?;
                trace.push(LayerTrace {
                    name: join(prefix, "view"),
                    description: "view(-1, 8192)".to_string(),
                    output_shape: x.shape().to_vec(),
                    parameters: 0,
                });
            }
            if let Some(output) = block.forward_traced(&x, trace, &join(prefix, name))? {
                x = output;
            }
        }
        Ok(Some(x))
    }
}
