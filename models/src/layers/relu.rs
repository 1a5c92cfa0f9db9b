use autograd::{Result, Tensor};

use super::{LayerKind, Module};

/// `max(x, 0)`, like `torch.nn.ReLU`.
pub struct ReLU;

impl Module for ReLU {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.relu()
    }

    fn kind(&self) -> LayerKind {
        LayerKind::ReLU
    }
}
