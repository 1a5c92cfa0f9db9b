//! Conversion to another element type, differentiable like PyTorch's `tensor.to(dtype)`.

use kernels::{DType, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct CastBackward {
    /// The input's element type: its gradient is returned in it, except that a bf16
    /// activation's gradient is f32, as everywhere under autocast.
    input_dtype: DType,
}

impl BackwardOp for CastBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let dtype = match self.input_dtype {
            DType::BF16 => DType::F32,
            other => other,
        };
        Ok(vec![Some(grad_out.to_dtype(dtype)?)])
    }
}

impl Tensor {
    /// A copy with another element type (rounded to nearest even when narrowing). The
    /// gradient flows back converted to the input's type (f32 for a bf16 input).
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
