use autograd::{Result, Tensor};

use super::{LayerKind, Module, ParamInit, StateEntry};

/// A fully connected layer, `y = x W^T + b`, like `torch.nn.Linear`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// A layer with bias and PyTorch's default initialisation.
    pub fn new(init: &mut ParamInit, in_features: usize, out_features: usize) -> Result<Linear> {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        Ok(Linear {
            weight: init.uniform(&[out_features, in_features], bound)?,
            bias: Some(init.uniform(&[out_features], bound)?),
            in_features,
            out_features,
        })
    }
}

impl Module for Linear {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.linear(&self.weight, self.bias.as_ref())
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        visit("weight", StateEntry::Parameter(&self.weight));
        if let Some(bias) = &self.bias {
            visit("bias", StateEntry::Parameter(bias));
        }
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Linear {
            in_features: self.in_features,
            out_features: self.out_features,
            bias: self.bias.is_some(),
        }
    }
}
