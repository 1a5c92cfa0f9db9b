use autograd::{Result, Tensor};

use super::Module;

/// Flattens everything but the batch dimension, like `x.view(-1, C*H*W)`.
pub struct Flatten;

impl Module for Flatten {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.flatten()
    }

    fn describe(&self) -> String {
        "Flatten(start_dim=1, end_dim=-1)".to_string()
    }
}
