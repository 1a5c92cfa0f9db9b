//! airbench's lookahead: an exponential moving average of the whole model state that the
//! weights are pulled back to every few steps.
//!
//! ```text
//! every k steps:   average = decay * average + (1 - decay) * weights;   weights = average
//! ```
//!
//! It covers every floating-point entry of the `state_dict` — parameters, frozen or not,
//! and batch norm's running statistics — as airbench's `LookaheadState` does; integer
//! counters (`num_batches_tracked`) are left alone. The average starts as a copy of the
//! state when the lookahead is created.

use autograd::{Error, Result, Tensor};

use super::OptimizerState;
use crate::layers::{Module, StateEntry};

/// The averaged copy of a model's floating-point state; see the module documentation.
pub struct Lookahead {
    /// `(name, average, the model's live tensor)`, in `state_dict` order.
    entries: Vec<(String, Tensor, Tensor)>,
}

/// airbench94's decay at step `step` of `total_steps`: `0.95^5 * (step / total_steps)^3`,
/// applied every 5 steps (so 0.95 per step at the end of training, nearly 0 at the start).
///
/// ```
/// use models::optim::lookahead_decay;
/// assert_eq!(lookahead_decay(0, 476), 0.0);
/// assert!((lookahead_decay(476, 476) - 0.773_780_937_5).abs() < 1e-15);
/// ```
pub fn lookahead_decay(step: u64, total_steps: u64) -> f64 {
    let frac = step as f64 / total_steps.max(1) as f64;
    0.95f64.powi(5) * frac.powi(3)
}

impl Lookahead {
    /// Starts the average as a copy of `model`'s current floating-point state.
    pub fn new(model: &mut dyn Module) -> Result<Lookahead> {
        let mut live = Vec::new();
        model.visit_state(&mut |name, entry| match entry {
            StateEntry::Parameter(t) | StateEntry::Buffer(t) => {
                live.push((name.to_string(), t.clone()));
            }
            StateEntry::Counter(_) | StateEntry::RngCounter(_) => {}
        });
        let entries = live
            .into_iter()
            .map(|(name, t)| {
                let average = Tensor::zeros(t.shape(), t.dtype(), t.device())?;
                average.assign(&t)?;
                Ok((name, average, t))
            })
            .collect::<Result<_>>()?;
        Ok(Lookahead { entries })
    }

    /// `average = decay * average + (1 - decay) * weights`, then `weights = average`, for
    /// every entry. `decay` 1 sets the weights to the average as it stands (airbench's
    /// final `update(decay=1.0)`).
    pub fn update(&mut self, decay: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::invalid(
                "lookahead",
                format!("decay {decay} is not in [0, 1]"),
            ));
        }
        let _scope = autograd::profile::scope("lookahead");
        for (_, average, live) in &self.entries {
            average.lerp_(live, 1.0 - decay)?;
            live.assign(average)?;
        }
        Ok(())
    }

    /// The averaged tensors, `lookahead.<name>`, for checkpoints.
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            counters: Vec::new(),
            tensors: self
                .entries
                .iter()
                .map(|(name, average, _)| (format!("lookahead.{name}"), average.clone()))
                .collect(),
        }
    }

    /// Restores what [`Lookahead::state`] returned.
    pub fn load_state(&mut self, saved: &OptimizerState) -> Result<()> {
        for (name, average, _) in &self.entries {
            average.assign(super::find(saved, &format!("lookahead.{name}"))?)?;
        }
        Ok(())
    }
}
