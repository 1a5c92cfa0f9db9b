use autograd::{profile, Result, Tensor};

use super::module::join;
use super::trace::{run_leaf, LayerKind, LayerTrace};
use super::{Module, StateEntry};

/// Layers applied in order, like `torch.nn.Sequential`: children are named `0`, `1`, ...
/// (`new`) or given names (`named`, PyTorch's `Sequential(OrderedDict(...))`).
///
/// Each child runs inside a [`profile::scope`] of its name, so a profiled step attributes
/// every op to the layer that ran it (`layer3.2`).
pub struct Sequential {
    pub layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// Children named by their position.
    pub fn new(layers: Vec<Box<dyn Module>>) -> Sequential {
        Sequential {
            layers: layers
                .into_iter()
                .enumerate()
                .map(|(index, layer)| (index.to_string(), layer))
                .collect(),
        }
    }

    /// Children with their own names.
    pub fn named(layers: Vec<(&str, Box<dyn Module>)>) -> Sequential {
        Sequential {
            layers: layers
                .into_iter()
                .map(|(name, layer)| (name.to_string(), layer))
                .collect(),
        }
    }
}

impl Module for Sequential {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for (name, layer) in &mut self.layers {
            let _scope = profile::scope(name);
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        for (prefix, layer) in &mut self.layers {
            let prefix: &str = prefix;
            layer.visit_state(&mut |name, entry| visit(&join(prefix, name), entry));
        }
    }

    fn set_training(&mut self, training: bool) {
        for (_, layer) in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Container { name: "Sequential" }
    }

    fn forward_traced(
        &mut self,
        input: &Tensor,
        trace: &mut Vec<LayerTrace>,
        prefix: &str,
    ) -> Result<Option<Tensor>> {
        let mut x = input.clone();
        for (name, layer) in &mut self.layers {
            let name = join(prefix, name);
            x = match layer.forward_traced(&x, trace, &name)? {
                Some(output) => output,
                None => {
                    let (output, row) = run_leaf(layer.as_mut(), name, &x)?;
                    trace.push(row);
                    output
                }
            };
        }
        Ok(Some(x))
    }
}
