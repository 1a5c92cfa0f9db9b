//! Batch normalization over the channels of an NCHW (or [N, C]) tensor.

use std::sync::Arc;

use kernels::batch_norm::{self, BatchNormGeometry, BatchStats};
use kernels::{Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

/// Training: the batch statistics are functions of the input and are differentiated.
struct BatchNormTrainBackward {
    geometry: BatchNormGeometry,
    stats: BatchStats,
}

impl BackwardOp for BatchNormTrainBackward {
    fn name(&self) -> &'static str {
        "batch_norm2d"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let grads = batch_norm::backward_train(
            &inputs[0].storage(),
            &inputs[1].storage(),
            &self.stats,
            grad_out,
            &self.geometry,
        )?;
        Ok(vec![Some(grads.input), Some(grads.gamma), Some(grads.beta)])
    }
}

/// Evaluation: the running statistics are constants (copied, since training may move them).
struct BatchNormEvalBackward {
    geometry: BatchNormGeometry,
    running_mean: Storage,
    running_var: Storage,
    eps: f64,
}

impl BackwardOp for BatchNormEvalBackward {
    fn name(&self) -> &'static str {
        "batch_norm2d"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let grads = batch_norm::backward_eval(
            &inputs[0].storage(),
            &inputs[1].storage(),
            &self.running_mean,
            &self.running_var,
            self.eps,
            grad_out,
            &self.geometry,
        )?;
        Ok(vec![Some(grads.input), Some(grads.gamma), Some(grads.beta)])
    }
}

/// The parameters and buffers of a batch-norm layer, as `torch.nn.BatchNorm2d` holds them.
pub struct BatchNormParams<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub running_mean: &'a Tensor,
    pub running_var: &'a Tensor,
    pub momentum: f64,
    pub eps: f64,
}

impl Tensor {
    /// Normalizes each channel. In `training`, with the batch's statistics (biased variance),
    /// and updates the running statistics in place (unbiased variance, `momentum`); in
    /// evaluation, with the running statistics.
    pub fn batch_norm2d(&self, params: &BatchNormParams<'_>, training: bool) -> Result<Tensor> {
        let channels = params.weight.numel();
        let geometry = BatchNormGeometry::new(self.shape(), channels)?;
        for (name, t) in [
            ("bias", params.bias),
            ("running_mean", params.running_mean),
            ("running_var", params.running_var),
        ] {
            if t.numel() != channels {
                return Err(Error::shape(
                    "batch_norm2d",
                    format!(
                        "{name} has shape {:?}, expected [{channels}] like the weight",
                        t.shape()
                    ),
                ));
            }
        }
        let inputs = [self, params.weight, params.bias];
        for buffer in [params.running_mean, params.running_var] {
            if inputs
                .iter()
                .any(|t| Arc::ptr_eq(&t.0.storage, &buffer.0.storage))
            {
                return Err(Error::invalid(
                    "batch_norm2d",
                    "the running statistics must be separate tensors from the input and affine parameters",
                ));
            }
        }

        if training {
            let (output, stats) = batch_norm::forward_train(
                &self.storage(),
                &params.weight.storage(),
                &params.bias.storage(),
                &mut params.running_mean.storage_mut(),
                &mut params.running_var.storage_mut(),
                params.momentum,
                params.eps,
                &geometry,
            )?;
            Ok(Tensor::from_op(
                output,
                self.shape().to_vec(),
                &inputs,
                BatchNormTrainBackward { geometry, stats },
            ))
        } else {
            let running_mean = params.running_mean.storage().clone();
            let running_var = params.running_var.storage().clone();
            let output = batch_norm::forward_eval(
                &self.storage(),
                &params.weight.storage(),
                &params.bias.storage(),
                &running_mean,
                &running_var,
                params.eps,
                &geometry,
            )?;
            Ok(Tensor::from_op(
                output,
                self.shape().to_vec(),
                &inputs,
                BatchNormEvalBackward {
                    geometry,
                    running_mean,
                    running_var,
                    eps: params.eps,
                },
            ))
        }
    }
}
