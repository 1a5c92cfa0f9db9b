//! Optimizers over a list of named parameters: the state they keep and one `step()`.

mod adam;
mod sgd;

pub use adam::Adam;
pub use autograd::optim::{AdamConfig, SgdConfig};
pub use sgd::Sgd;

use autograd::{Result, Tensor};

/// The optimizers the trainer offers; enum dispatch, no trait objects.
pub enum Optimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl Optimizer {
    /// Applies one update to every parameter that has a gradient.
    pub fn step(&mut self) -> Result<()> {
        match self {
            Optimizer::Adam(adam) => adam.step(),
            Optimizer::Sgd(sgd) => sgd.step(),
        }
    }

    /// Forgets all gradients before the next backward pass.
    pub fn zero_grad(&self) {
        for (_, param) in self.parameters() {
            param.zero_grad();
        }
    }

    pub fn parameters(&self) -> &[(String, Tensor)] {
        match self {
            Optimizer::Adam(adam) => &adam.params,
            Optimizer::Sgd(sgd) => &sgd.params,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam(_) => "adam",
            Optimizer::Sgd(_) => "sgd",
        }
    }

    /// The step counter and every state tensor, named `<kind>.<parameter name>`, for checkpoints.
    pub fn state(&self) -> (u64, Vec<(String, Tensor)>) {
        match self {
            Optimizer::Adam(adam) => adam.state(),
            Optimizer::Sgd(sgd) => sgd.state(),
        }
    }

    /// Restores what `state` returned (shapes are checked by the caller's loader).
    pub fn load_state(&mut self, step: u64, tensors: &[(String, Tensor)]) -> Result<()> {
        match self {
            Optimizer::Adam(adam) => adam.load_state(step, tensors),
            Optimizer::Sgd(sgd) => sgd.load_state(step, tensors),
        }
    }
}

/// Finds `name` among saved state tensors, or says which one is missing.
fn find<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            autograd::Error::invalid(
                "optimizer",
                format!("saved state has no tensor named {name}"),
            )
        })
}
