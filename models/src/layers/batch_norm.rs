use autograd::ops::batch_norm::BatchNormParams;
use autograd::{Result, Tensor};

use super::{LayerKind, Module, ParamInit, StateEntry};

/// Batch normalization over channels, like `torch.nn.BatchNorm2d` (affine, tracking running
/// statistics; by default momentum 0.1, eps 1e-5, weight and bias trained).
///
/// A frozen weight or bias ([`BatchNormConfig`]) is still a parameter (it is counted, saved
/// and loaded under its name) but is a leaf without `requires_grad`: it gets no gradient,
/// so an optimizer leaves it alone, as PyTorch does with `weight.requires_grad = False`.
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

/// The options of a [`BatchNorm2d`]; the default is PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// PyTorch's meaning: `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f64,
    pub eps: f64,
    /// Whether the weight (gamma, initially 1) trains.
    pub train_weight: bool,
    /// Whether the bias (beta, initially 0) trains.
    pub train_bias: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            momentum: 0.1,
            eps: 1e-5,
            train_weight: true,
            train_bias: true,
        }
    }
}

impl BatchNorm2d {
    /// `torch.nn.BatchNorm2d(num_features)`.
    pub fn new(init: &mut ParamInit, num_features: usize) -> Result<BatchNorm2d> {
        BatchNorm2d::with_config(init, num_features, BatchNormConfig::default())
    }

    /// `torch.nn.BatchNorm2d(num_features, eps, momentum)` with the weight and bias frozen
    /// or not as `config` says.
    pub fn with_config(
        init: &mut ParamInit,
        num_features: usize,
        config: BatchNormConfig,
    ) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            weight: init.constant(&[num_features], 1.0, config.train_weight)?,
            bias: init.constant(&[num_features], 0.0, config.train_bias)?,
            running_mean: init.constant(&[num_features], 0.0, false)?,
            running_var: init.constant(&[num_features], 1.0, false)?,
            num_batches_tracked: 0,
            num_features,
            momentum: config.momentum,
            eps: config.eps,
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
