use autograd::optim::{adam_update, AdamConfig};
use autograd::{Result, Tensor};

use super::find;

/// `torch.optim.Adam`: per-parameter first and second moment estimates, bias-corrected.
pub struct Adam {
    pub params: Vec<(String, Tensor)>,
    pub config: AdamConfig,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: u64,
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
        Ok(Adam {
            params,
            config,
            exp_avg,
            exp_avg_sq,
            step: 0,
        })
    }

    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        for (((_, param), m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            adam_update(param, m, v, self.step, &self.config)?;
        }
        Ok(())
    }

    pub fn state(&self) -> (u64, Vec<(String, Tensor)>) {
        let mut tensors = Vec::new();
        for (((name, _), m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            tensors.push((format!("exp_avg.{name}"), m.clone()));
            tensors.push((format!("exp_avg_sq.{name}"), v.clone()));
        }
        (self.step, tensors)
    }

    pub fn load_state(&mut self, step: u64, tensors: &[(String, Tensor)]) -> Result<()> {
        for (((name, _), m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            m.assign(find(tensors, &format!("exp_avg.{name}"))?)?;
            v.assign(find(tensors, &format!("exp_avg_sq.{name}"))?)?;
        }
        self.step = step;
        Ok(())
    }
}
