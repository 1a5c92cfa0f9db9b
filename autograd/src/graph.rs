//! The recorded graph and the reverse pass over it.

use std::collections::{HashMap, HashSet};

use kernels::{elementwise, Error, Result, Storage};

use crate::tensor::{lock, Tensor};

/// The backward rule of one op: maps the gradient of its output to gradients of its inputs.
pub(crate) trait BackwardOp: Send + Sync {
    /// The op's name, used in error messages.
    fn name(&self) -> &'static str;

    /// One entry per input, in the order the inputs were recorded; `None` where an input
    /// needs no gradient (the rule may skip computing it).
    fn backward(&self, inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>>;
}

/// A recorded op: its rule and the tensors it read.
pub(crate) struct Node {
    pub(crate) op: Box<dyn BackwardOp>,
    pub(crate) inputs: Vec<Tensor>,
}

/// Nodes reachable from `root`, ordered so that every tensor comes after all tensors that
/// consume it (reverse topological order of the forward pass). Iterative: deep graphs must
/// not overflow the stack.
fn reverse_topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // (tensor, children already pushed)
    let mut stack = vec![(root.clone(), false)];
    while let Some((tensor, expanded)) = stack.pop() {
        if expanded {
            order.push(tensor);
            continue;
        }
        if !visited.insert(tensor.id()) {
            continue;
        }
        stack.push((tensor.clone(), true));
        if let Some(node) = lock(&tensor.0.node).as_ref() {
            for input in &node.inputs {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order.reverse();
    order
}

fn accumulate(slot: &mut Option<Storage>, grad: Storage) -> Result<()> {
    match slot {
        Some(existing) => elementwise::add_assign(existing, &grad),
        None => {
            *slot = Some(grad);
            Ok(())
        }
    }
}

impl Tensor {
    /// Computes the gradient of this one-element tensor with respect to every leaf that
    /// requires one, adding it to that leaf's `.grad()`.
    ///
    /// The graph is consumed: saved activations are released as soon as they have been
    /// used, so a second `backward()` through the same graph is an error.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "can only start from a one-element tensor (a loss), got shape {:?}",
                    self.shape()
                ),
            ));
        }
        if !self.requires_grad() {
            return Err(Error::invalid(
                "backward",
                "the tensor does not require a gradient: no input was marked with requires_grad(), or it was computed under no_grad()",
            ));
        }
        let seed = Storage::full(1, 1.0, self.dtype(), self.device())?;
        let mut pending: HashMap<u64, Storage> = HashMap::new();
        pending.insert(self.id(), seed);

        for tensor in reverse_topological_order(self) {
            let Some(grad) = pending.remove(&tensor.id()) else {
                continue;
            };
            if tensor.is_leaf() {
                accumulate(&mut lock(&tensor.0.grad), grad)?;
                continue;
            }
            let node = lock(&tensor.0.node).take().ok_or_else(|| {
                Error::invalid(
                    "backward",
                    "this graph was already consumed by an earlier backward(); run the forward pass again",
                )
            })?;
            let started = crate::profile::backward_started();
            let input_grads = node.op.backward(&node.inputs, &grad).map_err(|e| {
                // Keep the kernel's message but say which op's backward failed.
                match e {
                    Error::Cuda(message) => {
                        Error::Cuda(format!("{} backward: {message}", node.op.name()))
                    }
                    other => other,
                }
            })?;
            crate::profile::backward_finished(tensor.id(), started);
            for (input, input_grad) in node.inputs.iter().zip(input_grads) {
                let Some(input_grad) = input_grad else {
                    continue;
                };
                if !input.requires_grad() {
                    continue;
                }
                let mut slot = pending.remove(&input.id());
                accumulate(&mut slot, input_grad)?;
                if let Some(g) = slot {
                    pending.insert(input.id(), g);
                }
            }
        }
        Ok(())
    }
}
