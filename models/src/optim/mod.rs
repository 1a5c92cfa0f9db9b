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
        let _scope = autograd::profile::scope("optimizer");
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

    /// Everything the optimizer keeps between steps, for checkpoints.
    pub fn state(&self) -> OptimizerState {
        match self {
            Optimizer::Adam(adam) => adam.state(),
            Optimizer::Sgd(sgd) => sgd.state(),
        }
    }

    /// Restores what `state` returned (shapes are checked by the caller's loader).
    pub fn load_state(&mut self, saved: &OptimizerState) -> Result<()> {
        match self {
            Optimizer::Adam(adam) => adam.load_state(saved),
            Optimizer::Sgd(sgd) => sgd.load_state(saved),
        }
    }
}

/// What an optimizer keeps between steps: integer counters (Adam's per-parameter `step`)
/// and tensors (moments, momentum buffers), each named `<kind>.<parameter name>`, or
/// `<kind>` alone for a value of the whole optimizer.
#[derive(Debug, Clone, Default)]
pub struct OptimizerState {
    pub counters: Vec<(String, u64)>,
    pub tensors: Vec<(String, Tensor)>,
}

fn missing(what: &str, name: &str) -> autograd::Error {
    autograd::Error::invalid(
        "optimizer",
        format!("saved state has no {what} named {name}"),
    )
}

/// Finds the tensor `name` in saved state, or says which one is missing.
fn find<'a>(saved: &'a OptimizerState, name: &str) -> Result<&'a Tensor> {
    saved
        .tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| missing("tensor", name))
}

/// Finds the counter `name` in saved state, or says which one is missing.
fn find_counter(saved: &OptimizerState, name: &str) -> Result<u64> {
    saved
        .counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| missing("counter", name))
}
