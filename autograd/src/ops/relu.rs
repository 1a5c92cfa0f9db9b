//! ReLU.

use kernels::{relu, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct ReluBackward;

impl BackwardOp for ReluBackward {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        // The input is positive exactly where the output is, so the saved input serves as
        // the mask and the output need not be kept alive.
        Ok(vec![Some(relu::backward(&inputs[0].storage(), grad_out)?)])
    }
}

impl Tensor {
    /// `max(x, 0)` element-wise.
    pub fn relu(&self) -> Result<Tensor> {
        let output = relu::forward(&self.storage())?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            ReluBackward,
        ))
    }
}
