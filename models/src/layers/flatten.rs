use autograd::{Result, Tensor};

use super::{LayerKind, Module};

/// Flattens everything but the batch dimension, like `torch.nn.Flatten()` or the notebook's
/// `x.view(-1, C*H*W)`: a view, no copy.
pub struct Flatten;

impl Module for Flatten {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.flatten()
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Flatten
    }
}
