//! Max and average pooling.

use kernels::pool2d::{self, Argmax, Pool2dGeometry};
use kernels::{Result, Storage};

pub use kernels::pool2d::PoolKind;

use crate::graph::BackwardOp;
use crate::{is_grad_enabled, Tensor};

struct Pool2dBackward {
    geometry: Pool2dGeometry,
    /// Max pooling's winning cells, where the forward could keep them (on the host);
    /// otherwise the backward finds them again in the input.
    argmax: Option<Argmax>,
}

impl BackwardOp for Pool2dBackward {
    fn name(&self) -> &'static str {
        match self.geometry.kind {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg { .. } => "avg_pool2d",
        }
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let grad_in = match &self.argmax {
            Some(argmax) => pool2d::max_backward_from_argmax(argmax, grad_out)?,
            None => pool2d::backward(&inputs[0].storage(), grad_out, &self.geometry)?,
        };
        Ok(vec![Some(grad_in)])
    }
}

impl Tensor {
    /// Pools an NCHW tensor with PyTorch's semantics (`ceil_mode=False`).
    pub fn pool2d(
        &self,
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let geometry = Pool2dGeometry::new(kind, self.shape(), kernel, stride, padding)?;
        // A backward will follow: keep max pooling's argmax rather than read the input again.
        let (output, argmax) = if kind == PoolKind::Max && is_grad_enabled() && self.requires_grad()
        {
            pool2d::max_forward_keeping_argmax(&self.storage(), &geometry)?
        } else {
            (pool2d::forward(&self.storage(), &geometry)?, None)
        };
        Ok(Tensor::from_op(
            output,
            geometry.output_shape().to_vec(),
            &[self],
            Pool2dBackward { geometry, argmax },
        ))
    }

    /// Max pooling; padding counts as -infinity, like `torch.nn.MaxPool2d`.
    pub fn max_pool2d(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        self.pool2d(PoolKind::Max, kernel, stride, padding)
    }

    /// Average pooling; padded zeros count in the divisor, like `torch.nn.AvgPool2d`'s default.
    pub fn avg_pool2d(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        self.pool2d(
            PoolKind::Avg {
                count_include_pad: true,
            },
            kernel,
            stride,
            padding,
        )
    }
}
