//! Conversion to another element type, differentiable like PyTorch's `tensor.to(dtype)`.

use kernels::{DType, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct CastBackward {
    /// The input's element type: its gradient is returned in it (bf16 for a bf16 input,
    /// as every gradient has its tensor's dtype).
    input_dtype: DType,
}

impl BackwardOp for CastBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(grad_out.to_dtype(self.input_dtype)?)])
    }
}

impl Tensor {
    /// A copy with another element type (rounded to nearest even when narrowing). The
    /// gradient flows back converted to the input's type.
    ///
    /// ```
    /// use autograd::{DType, Device, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.5], &[2], Device::Cpu)?.requires_grad_();
    /// let y = x.to_dtype(DType::F64)?;
    /// y.sum()?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec_f32()?, vec![1.0, 1.0]);
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        let output = self.storage().to_dtype(dtype)?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            CastBackward {
                input_dtype: self.dtype(),
            },
        ))
    }
}
