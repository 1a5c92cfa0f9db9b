//! Max and average pooling.

use kernels::pool2d::{self, Pool2dGeometry};
use kernels::{Result, Storage};

pub use kernels::pool2d::PoolKind;

use crate::graph::BackwardOp;
use crate::Tensor;

struct Pool2dBackward {
    geometry: Pool2dGeometry,
}

impl BackwardOp for Pool2dBackward {
    fn name(&self) -> &'static str {
        match self.geometry.kind {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg { .. } => "avg_pool2d",
        }
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(pool2d::backward(
            &inputs[0].storage(),
            grad_out,
            &self.geometry,
        )?)])
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
        let output = pool2d::forward(&self.storage(), &geometry)?;
        Ok(Tensor::from_op(
            output,
            geometry.output_shape().to_vec(),
            &[self],
            Pool2dBackward { geometry },
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
