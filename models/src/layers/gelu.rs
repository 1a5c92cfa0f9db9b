use autograd::{Result, Tensor};

use super::{LayerKind, Module};

/// `x Φ(x)` with the exact normal cdf, like `torch.nn.GELU()` (`approximate='none'`).
pub struct GELU;

impl Module for GELU {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.gelu()
    }

    fn kind(&self) -> LayerKind {
        LayerKind::GELU
    }
}
