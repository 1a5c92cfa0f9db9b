//! 2-D convolution.

use kernels::conv2d::{self, Conv2dGeometry};
use kernels::{DType, Result, Storage};

use crate::autocast::{precision_for, Precision};
use crate::graph::BackwardOp;
use crate::Tensor;

struct Conv2dBackward {
    geometry: Conv2dGeometry,
    /// The forward's precision: its backward multiplies the same way.
    precision: Precision,
}

impl BackwardOp for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let (input, weight) = (&inputs[0], &inputs[1]);
        let has_bias = inputs.len() == 3;
        if !input.requires_grad() && !weight.requires_grad() {
            // A frozen layer on data (airbench94's whitening convolution): only the bias, if
            // anything, learns, and its gradient is a sum of `grad_out`.
            let mut out = vec![None, None];
            if has_bias {
                out.push(Some(conv2d::bias_grad(grad_out, &self.geometry)?));
            }
            return Ok(out);
        }
        let backward = match self.precision {
            Precision::F32 => conv2d::backward,
            Precision::Bf16 => conv2d::backward_bf16,
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

impl Tensor {
    /// Convolves an NCHW input with `weight` ([out, in, kh, kw]) plus an optional `bias`
    /// ([out]), with a (height, width) stride and zero padding, like `torch.nn.functional.conv2d`.
    /// Under [`autocast(Precision::Bf16)`](crate::autocast) a CPU convolution multiplies
    /// bf16-rounded operands, sums in f32 and returns the sums rounded to bf16.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let geometry = Conv2dGeometry::new(self.shape(), weight.shape(), stride, padding)?;
        let precision = precision_for(self);
        let output = {
            let (input, weight) = (self.storage(), weight.storage());
            let bias = bias.map(|b| b.storage());
            match precision {
                Precision::F32 => conv2d::forward(&input, &weight, bias.as_deref(), &geometry)?,
                // Like PyTorch's autocast, the output is rounded to bf16: the layers up to
                // the next convolution read and write half the bytes.
                Precision::Bf16 => {
                    conv2d::forward_bf16(&input, &weight, bias.as_deref(), &geometry, DType::BF16)?
                }
            }
        };
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(Tensor::from_op(
            output,
            geometry.output_shape().to_vec(),
            &inputs,
            Conv2dBackward {
                geometry,
                precision,
            },
        ))
    }
}
