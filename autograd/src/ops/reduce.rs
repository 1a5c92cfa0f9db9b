//! Reductions to a scalar.

use kernels::{reduce, Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct SumBackward {
    len: usize,
    factor: f64,
}

impl BackwardOp for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(reduce::broadcast_scalar(
            grad_out,
            self.len,
            self.factor,
        )?)])
    }
}

impl Tensor {
    /// The sum of all elements, as a tensor of shape [].
    pub fn sum(&self) -> Result<Tensor> {
        let output = reduce::sum(&self.storage())?;
        Ok(Tensor::from_op(
            output,
            vec![],
            &[self],
            SumBackward {
                len: self.numel(),
                factor: 1.0,
            },
        ))
    }

    /// The mean of all elements, as a tensor of shape [].
    pub fn mean(&self) -> Result<Tensor> {
        let len = self.numel();
        if len == 0 {
            return Err(Error::shape(
                "mean",
                "the mean of an empty tensor is undefined",
            ));
        }
        let factor = 1.0 / len as f64;
        let sum = reduce::sum(&self.storage())?;
        let output = kernels::elementwise::scale(&sum, factor)?;
        Ok(Tensor::from_op(
            output,
            vec![],
            &[self],
            SumBackward { len, factor },
        ))
    }
}
