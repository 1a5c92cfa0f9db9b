use autograd::optim::{sgd_update, SgdConfig};
use autograd::{Result, Tensor};

use super::{find, find_counter, OptimizerState};

/// `torch.optim.SGD`: momentum, dampening, Nesterov and L2 weight decay.
pub struct Sgd {
    pub params: Vec<(String, Tensor)>,
    pub config: SgdConfig,
    momentum_buffers: Vec<Option<Tensor>>,
    step: u64,
}

impl Sgd {
    pub fn new(params: Vec<(String, Tensor)>, config: SgdConfig) -> Result<Sgd> {
        config.validate()?;
        let momentum_buffers = params.iter().map(|_| None).collect();
        Ok(Sgd {
            params,
            config,
            momentum_buffers,
            step: 0,
        })
    }

    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        for ((_, param), buffer) in self.params.iter().zip(&mut self.momentum_buffers) {
            sgd_update(param, buffer, &self.config)?;
        }
        Ok(())
    }

    /// A `step` counter (updates applied) and the `momentum_buffer.<name>` tensors.
    pub fn state(&self) -> OptimizerState {
        let tensors = self
            .params
            .iter()
            .zip(&self.momentum_buffers)
            .filter_map(|((name, _), buffer)| {
                buffer
                    .as_ref()
                    .map(|b| (format!("momentum_buffer.{name}"), b.clone()))
            })
            .collect();
        OptimizerState {
            counters: vec![("step".to_string(), self.step)],
            tensors,
        }
    }

    /// Restores what [`Sgd::state`] returned.
    pub fn load_state(&mut self, saved: &OptimizerState) -> Result<()> {
        for ((name, param), buffer) in self.params.iter().zip(&mut self.momentum_buffers) {
            // A buffer exists only once momentum has been used; its absence is not an error.
            *buffer = match find(saved, &format!("momentum_buffer.{name}")) {
                Ok(saved) => {
                    let b = Tensor::zeros(param.shape(), param.dtype(), param.device())?;
                    b.assign(saved)?;
                    Some(b)
                }
                Err(_) => None,
            };
        }
        self.step = find_counter(saved, "step")?;
        Ok(())
    }
}
