use autograd::optim::{sgd_update, SgdConfig};
use autograd::{Error, Result, Tensor};

use super::{find, find_counter, OptimizerState};

/// `torch.optim.SGD`: momentum, dampening, Nesterov and L2 weight decay, with parameter
/// groups (each its own hyper-parameters) and a learning-rate factor.
///
/// As in PyTorch, a parameter without a gradient at a step is skipped entirely: no decay,
/// no momentum update (that is how frozen parameters, and parameters whose
/// `requires_grad` was switched off during training, stay put).
///
/// The factor plays `torch.optim.lr_scheduler.LambdaLR`'s part: each group steps with its
/// own `lr` times the factor last set ([`Sgd::set_lr_factor`], initially 1), while its
/// weight decay stays as configured, as LambdaLR changes only `lr`.
pub struct Sgd {
    /// Every group's parameters, group by group.
    pub params: Vec<(String, Tensor)>,
    groups: Vec<SgdConfig>,
    /// The group of each parameter.
    group_of: Vec<usize>,
    lr_factor: f64,
    momentum_buffers: Vec<Option<Tensor>>,
    step: u64,
}

/// One parameter group: its parameters and hyper-parameters (PyTorch's
/// `dict(params=..., lr=..., weight_decay=...)`).
pub struct ParamGroup {
    pub params: Vec<(String, Tensor)>,
    pub config: SgdConfig,
}

impl Sgd {
    /// One group of all `params`.
    pub fn new(params: Vec<(String, Tensor)>, config: SgdConfig) -> Result<Sgd> {
        Sgd::with_groups(vec![ParamGroup { params, config }])
    }

    /// PyTorch's `SGD([group, ...])`. A parameter may belong to one group only.
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Sgd> {
        let mut params: Vec<(String, Tensor)> = Vec::new();
        let mut group_of = Vec::new();
        let mut configs = Vec::new();
        for (index, group) in groups.into_iter().enumerate() {
            group.config.validate()?;
            for (name, param) in group.params {
                if params.iter().any(|(n, _)| *n == name) {
                    return Err(Error::invalid(
                        "sgd",
                        format!("parameter {name} appears in more than one group"),
                    ));
                }
                params.push((name, param));
                group_of.push(index);
            }
            configs.push(group.config);
        }
        let momentum_buffers = params.iter().map(|_| None).collect();
        Ok(Sgd {
            params,
            groups: configs,
            group_of,
            lr_factor: 1.0,
            momentum_buffers,
            step: 0,
        })
    }

    /// Each group's hyper-parameters as configured (base learning rates).
    pub fn groups(&self) -> &[SgdConfig] {
        &self.groups
    }

    /// Scales every group's learning rate by `factor` from the next step on (LambdaLR's
    /// `lr = base_lr * lambda(step)`).
    pub fn set_lr_factor(&mut self, factor: f64) -> Result<()> {
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(Error::invalid(
                "sgd",
                format!("invalid learning-rate factor {factor}: must be a finite number >= 0"),
            ));
        }
        self.lr_factor = factor;
        Ok(())
    }

    pub fn lr_factor(&self) -> f64 {
        self.lr_factor
    }

    /// Group `group`'s learning rate at the next step.
    pub fn lr(&self, group: usize) -> Option<f64> {
        self.groups.get(group).map(|g| g.lr * self.lr_factor)
    }

    /// Steps taken (PyTorch keeps no such count for SGD; checkpoints and schedules do).
    pub fn steps(&self) -> u64 {
        self.step
    }

    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        let configs: Vec<SgdConfig> = self
            .groups
            .iter()
            .map(|g| SgdConfig {
                lr: g.lr * self.lr_factor,
                ..*g
            })
            .collect();
        let state = self.momentum_buffers.iter_mut().zip(&self.group_of);
        for ((_, param), (buffer, &group)) in self.params.iter().zip(state) {
            sgd_update(param, buffer, &configs[group])?;
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
