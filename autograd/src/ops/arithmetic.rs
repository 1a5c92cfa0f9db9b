//! Element-wise arithmetic between tensors of the same shape.

use kernels::{elementwise, Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!(
                "operands must have the same shape, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        ))
    }
}

struct AddBackward;

impl BackwardOp for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let pass = |t: &Tensor| t.requires_grad().then(|| grad_out.clone());
        Ok(vec![pass(&inputs[0]), pass(&inputs[1])])
    }
}

struct MulBackward;

impl BackwardOp for MulBackward {
    fn name(&self) -> &'static str {
        "mul"
    }

    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let grad_a = if a.requires_grad() {
            Some(elementwise::mul(grad_out, &b.storage())?)
        } else {
            None
        };
        let grad_b = if b.requires_grad() {
            Some(elementwise::mul(grad_out, &a.storage())?)
        } else {
            None
        };
        Ok(vec![grad_a, grad_b])
    }
}

struct ScaleBackward {
    factor: f64,
}

impl BackwardOp for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(elementwise::scale(grad_out, self.factor)?)])
    }
}

impl Tensor {
    /// Element-wise sum of two tensors of the same shape.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        same_shape("add", self, other)?;
        let output = elementwise::add(&self.storage(), &other.storage())?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self, other],
            AddBackward,
        ))
    }

    /// Element-wise product of two tensors of the same shape.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        same_shape("mul", self, other)?;
        let output = elementwise::mul(&self.storage(), &other.storage())?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self, other],
            MulBackward,
        ))
    }

    /// Multiplies every element by `factor`.
    pub fn scale(&self, factor: f64) -> Result<Tensor> {
        let output = elementwise::scale(&self.storage(), factor)?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            ScaleBackward { factor },
        ))
    }
}
