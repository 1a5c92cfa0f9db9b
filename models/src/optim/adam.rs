use autograd::optim::{adam_update, AdamConfig};
use autograd::{Result, Tensor};

use super::{find, find_counter, OptimizerState};

/// `torch.optim.Adam`: per-parameter first and second moment estimates, bias-corrected
/// with each parameter's own step count.
///
/// As in PyTorch, a parameter's step counts the updates it received: a step that finds no
/// gradient on it leaves the parameter, its moments and its count alone, and its next update
/// is bias-corrected as its first.
pub struct Adam {
    pub params: Vec<(String, Tensor)>,
    pub config: AdamConfig,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// PyTorch's `state[p]["step"]`, one per parameter.
    steps: Vec<u64>,
}

impl Adam {
    /// Validates the hyper-parameters and allocates zeroed moments beside each parameter.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamConfig) -> Result<Adam> {
        config.validate()?;
        let zeros = |t: &Tensor| Tensor::zeros(t.shape(), t.dtype(), t.device());
        let exp_avg = params
            .iter()
            .map(|(_, t)| zeros(t))
            .collect::<Result<_>>()?;
        let exp_avg_sq = params
            .iter()
            .map(|(_, t)| zeros(t))
            .collect::<Result<_>>()?;
        let steps = vec![0; params.len()];
        Ok(Adam {
            params,
            config,
            exp_avg,
            exp_avg_sq,
            steps,
        })
    }

    /// Updates every parameter that has a gradient.
    pub fn step(&mut self) -> Result<()> {
        let state = self
            .exp_avg
            .iter()
            .zip(&self.exp_avg_sq)
            .zip(&mut self.steps);
        for ((_, param), ((m, v), step)) in self.params.iter().zip(state) {
            if adam_update(param, m, v, *step + 1, &self.config)? {
                *step += 1;
            }
        }
        Ok(())
    }

    /// Each parameter's step count, in parameter order.
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    /// `step.<name>` counters and `exp_avg.<name>`, `exp_avg_sq.<name>` tensors.
    pub fn state(&self) -> OptimizerState {
        let mut state = OptimizerState::default();
        let moments = self.exp_avg.iter().zip(&self.exp_avg_sq).zip(&self.steps);
        for ((name, _), ((m, v), &step)) in self.params.iter().zip(moments) {
            state.counters.push((format!("step.{name}"), step));
            state.tensors.push((format!("exp_avg.{name}"), m.clone()));
            state
                .tensors
                .push((format!("exp_avg_sq.{name}"), v.clone()));
        }
        state
    }

    /// Restores what [`Adam::state`] returned. State saved before steps were kept per
    /// parameter holds one `step` for all: every parameter had taken every step then, so
    /// it is each one's count.
    pub fn load_state(&mut self, saved: &OptimizerState) -> Result<()> {
        let legacy_step = find_counter(saved, "step").ok();
        let moments = self
            .exp_avg
            .iter()
            .zip(&self.exp_avg_sq)
            .zip(&mut self.steps);
        for ((name, _), ((m, v), step)) in self.params.iter().zip(moments) {
            m.assign(find(saved, &format!("exp_avg.{name}"))?)?;
            v.assign(find(saved, &format!("exp_avg_sq.{name}"))?)?;
            *step = match (find_counter(saved, &format!("step.{name}")), legacy_step) {
                (Ok(own), _) => own,
                (Err(_), Some(shared)) => shared,
                (Err(e), None) => return Err(e),
            };
        }
        Ok(())
    }
}
