use autograd::{Result, Tensor};

use super::module::join;
use super::{Module, StateEntry};

/// Layers applied in order; children are named `0`, `1`, ... as in `torch.nn.Sequential`.
pub struct Sequential {
    pub layers: Vec<Box<dyn Module>>,
}

/// One row of a model summary: a leaf layer, its output shape and parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    pub name: String,
    pub description: String,
    pub output_shape: Vec<usize>,
    pub parameters: usize,
}

impl Sequential {
    pub fn new(layers: Vec<Box<dyn Module>>) -> Sequential {
        Sequential { layers }
    }
}

/// Number of trainable elements of a module.
pub fn count_parameters(module: &mut dyn Module) -> usize {
    let mut count = 0;
    module.visit_state(&mut |_, entry| {
        if let StateEntry::Parameter(t) = entry {
            count += t.numel();
        }
    });
    count
}

impl Module for Sequential {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for layer in &mut self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let prefix = index.to_string();
            layer.visit_state(&mut |name, entry| visit(&join(&prefix, name), entry));
        }
    }

    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn describe(&self) -> String {
        "Sequential".to_string()
    }

    fn forward_traced(
        &mut self,
        input: &Tensor,
        trace: &mut Vec<LayerTrace>,
        prefix: &str,
    ) -> Result<Option<Tensor>> {
        let mut x = input.clone();
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let name = join(prefix, &index.to_string());
            match layer.forward_traced(&x, trace, &name)? {
                Some(output) => x = output,
                None => {
                    x = layer.forward(&x)?;
                    trace.push(LayerTrace {
                        name,
                        description: layer.describe(),
                        output_shape: x.shape().to_vec(),
                        parameters: count_parameters(layer.as_mut()),
                    });
                }
            }
        }
        Ok(Some(x))
    }
}
