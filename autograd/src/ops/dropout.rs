//! Inverted dropout with a seeded, stateless mask.

use kernels::{dropout, Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

struct DropoutBackward {
    p: f64,
    seed: u64,
}

impl BackwardOp for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        // The mask is a pure function of (seed, index): regenerated, never stored.
        Ok(vec![Some(dropout::backward(grad_out, self.p, self.seed)?)])
    }
}

impl Tensor {
    /// Zeroes each element with probability `p` and scales the rest by `1/(1-p)` when
    /// `training`; the identity in evaluation. The same `seed` always drops the same elements.
    pub fn dropout(&self, p: f64, training: bool, seed: u64) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability must be between 0 and 1, got {p}"),
            ));
        }
        if !training || p == 0.0 {
            return self.reshape(self.shape());
        }
        let output = dropout::forward(&self.storage(), p, seed)?;
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            DropoutBackward { p, seed },
        ))
    }
}
