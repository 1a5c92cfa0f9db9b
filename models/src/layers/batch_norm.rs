use autograd::ops::batch_norm::BatchNormParams;
use autograd::{Result, Tensor};

use super::{LayerKind, Module, ParamInit, StateEntry};

/// Batch normalization over channels, like `torch.nn.BatchNorm2d` (affine, tracking running
/// statistics, momentum 0.1, eps 1e-5).
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: u64,
    pub num_features: usize,
    pub momentum: f64,
    pub eps: f64,
    training: bool,
}

impl BatchNorm2d {
    pub fn new(init: &mut ParamInit, num_features: usize) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            weight: init.constant(&[num_features], 1.0, true)?,
            bias: init.constant(&[num_features], 0.0, true)?,
            running_mean: init.constant(&[num_features], 0.0, false)?,
            running_var: init.constant(&[num_features], 1.0, false)?,
            num_batches_tracked: 0,
            num_features,
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        })
    }
}

impl Module for BatchNorm2d {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        let params = BatchNormParams {
            weight: &self.weight,
            bias: &self.bias,
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            momentum: self.momentum,
            eps: self.eps,
        };
        let output = input.batch_norm2d(&params, self.training)?;
        if self.training {
            self.num_batches_tracked += 1;
        }
        Ok(output)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        visit("weight", StateEntry::Parameter(&self.weight));
        visit("bias", StateEntry::Parameter(&self.bias));
        visit("running_mean", StateEntry::Buffer(&self.running_mean));
        visit("running_var", StateEntry::Buffer(&self.running_var));
        visit(
            "num_batches_tracked",
            StateEntry::Counter(&mut self.num_batches_tracked),
        );
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn kind(&self) -> LayerKind {
        LayerKind::BatchNorm2d {
            num_features: self.num_features,
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}
