use autograd::{Result, Tensor};

use super::{LayerKind, Module};

/// Multiplies its input by a constant: airbench's `Mul(scale)` module, which scales the
/// logits by 1/9.
pub struct Mul {
    pub scale: f64,
}

impl Mul {
    pub fn new(scale: f64) -> Mul {
        Mul { scale }
    }
}

impl Module for Mul {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.scale(self.scale)
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Mul { scale: self.scale }
    }
}
