//! GELU, exact (erf) form: PyTorch's `nn.GELU()`.

use kernels::{gelu, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct GeluBackward;

impl BackwardOp for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(gelu::backward(&inputs[0].storage(), grad_out)?)])
    }
}

impl Tensor {
    /// `x Φ(x)` element-wise, Φ the standard normal cdf (PyTorch's `F.gelu(x)`).
    pub fn gelu(&self) -> Result<Tensor> {
        let output = gelu::forward(&self.storage())?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            GeluBackward,
        ))
    }
}
