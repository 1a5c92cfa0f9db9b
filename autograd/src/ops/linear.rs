//! Fully connected layers and plain matrix products.

use kernels::linear::{self, LinearGeometry};
use kernels::matmul::{self, MatmulGeometry};
use kernels::{Result, Storage};

use crate::autocast::{precision_for, Precision};
use crate::graph::BackwardOp;
use crate::Tensor;

struct LinearBackward {
    geometry: LinearGeometry,
    /// The forward's precision: its backward multiplies the same way.
    precision: Precision,
}

impl BackwardOp for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let (input, weight) = (&inputs[0], &inputs[1]);
        let has_bias = inputs.len() == 3;
        let backward = match self.precision {
            Precision::F32 => linear::backward,
            Precision::Bf16 => linear::backward_bf16,
        };
        let grads = backward(
            &input.storage(),
            &weight.storage(),
            grad_out,
            &self.geometry,
            has_bias,
            input.requires_grad(),
        )?;
        let mut out = vec![grads.input, Some(grads.weight)];
        if has_bias {
            out.push(grads.bias);
        }
        Ok(out)
    }
}

struct MatmulBackward {
    geometry: MatmulGeometry,
}

impl BackwardOp for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let (grad_a, grad_b) = matmul::backward(
            &inputs[0].storage(),
            &inputs[1].storage(),
            grad_out,
            &self.geometry,
        )?;
        Ok(vec![Some(grad_a), Some(grad_b)])
    }
}

impl Tensor {
    /// `self @ weight.T + bias` for `self` of shape [batch, in] and `weight` [out, in],
    /// like `torch.nn.functional.linear`. Under [`autocast(Precision::Bf16)`](crate::autocast)
    /// an f32 CPU layer multiplies bf16-rounded operands and sums in f32.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let geometry = LinearGeometry::new(self.shape(), weight.shape())?;
        let precision = precision_for(self);
        let forward = match precision {
            Precision::F32 => linear::forward,
            Precision::Bf16 => linear::forward_bf16,
        };
        let output = {
            let bias_storage = bias.map(|b| b.storage());
            forward(
                &self.storage(),
                &weight.storage(),
                bias_storage.as_deref(),
                &geometry,
            )?
        };
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(Tensor::from_op(
            output,
            vec![geometry.batch, geometry.out_features],
            &inputs,
            LinearBackward {
                geometry,
                precision,
            },
        ))
    }

    /// The matrix product of two 2-D tensors.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let geometry = MatmulGeometry::new(self.shape(), other.shape())?;
        let output = matmul::forward(&self.storage(), &other.storage(), &geometry)?;
        Ok(Tensor::from_op(
            output,
            vec![geometry.m, geometry.n],
            &[self, other],
            MatmulBackward { geometry },
        ))
    }
}
