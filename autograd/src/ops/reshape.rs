//! Shape changes that keep the data as it is (row-major views).

use kernels::{Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct ReshapeBackward;

impl BackwardOp for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        // Same elements in the same order: the gradient is the output gradient as it is.
        Ok(vec![Some(grad_out.clone())])
    }
}

impl Tensor {
    /// The same elements under another shape with the same number of elements; shares the data.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view a tensor of shape {:?} ({} elements) as {shape:?} ({numel} elements)",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        Ok(Tensor::view_from_op(
            self.0.storage.clone(),
            shape.to_vec(),
            self,
            ReshapeBackward,
        ))
    }

    /// Keeps the first dimension and flattens the rest: [N, C, H, W] -> [N, C*H*W].
    pub fn flatten(&self) -> Result<Tensor> {
        match self.shape() {
            [] => Err(Error::shape(
                "flatten",
                "cannot flatten a tensor with no dimensions",
            )),
            [first, rest @ ..] => {
                let rest: usize = rest.iter().product();
                self.reshape(&[*first, rest])
            }
        }
    }
}
