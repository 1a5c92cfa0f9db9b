//! What every layer provides.

use autograd::{Result, Tensor};

use super::trace::{run_leaf, LayerKind, LayerTrace};

/// One named piece of a layer's state, as it appears in a PyTorch `state_dict`.
pub enum StateEntry<'a> {
    /// Trained by the optimizer (`weight`, `bias`).
    Parameter(&'a Tensor),
    /// Saved but not trained (`running_mean`, `running_var`).
    Buffer(&'a Tensor),
    /// An integer counter (`num_batches_tracked`, an int64 scalar in PyTorch).
    Counter(&'a mut u64),
    /// A random-stream position (dropout's call count): not part of the model's
    /// `state_dict`, but saved with the training state so a resumed run draws the same masks.
    RngCounter(&'a mut u64),
}

/// A layer or a container of layers.
pub trait Module: Send {
    /// Runs the layer. `&mut self` because some layers keep state across calls
    /// (batch norm's running statistics, dropout's mask counter).
    fn forward(&mut self, input: &Tensor) -> Result<Tensor>;

    /// Visits the layer's state in `state_dict` order; names are relative to this layer.
    fn visit_state(&mut self, _visit: &mut dyn FnMut(&str, StateEntry<'_>)) {}

    /// Switches between training and evaluation behaviour (batch norm, dropout).
    fn set_training(&mut self, _training: bool) {}

    /// What the layer computes, with its hyper-parameters; its `Display` is PyTorch's
    /// `repr`: `Conv2d(3, 64, kernel_size=(3, 3), ...)`.
    fn kind(&self) -> LayerKind;

    /// For containers: runs the layer, appending one row per leaf it runs (names prefixed
    /// with `prefix`), and returns the output. Leaves return `None` and are recorded by
    /// their container.
    fn forward_traced(
        &mut self,
        _input: &Tensor,
        _trace: &mut Vec<LayerTrace>,
        _prefix: &str,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Runs `input` through the module (in its current training mode, recording a graph if
    /// grad mode is on) and lists every leaf layer it ran, in order, with its shapes.
    fn trace(&mut self, input: &Tensor) -> Result<Vec<LayerTrace>> {
        let mut trace = Vec::new();
        if self.forward_traced(input, &mut trace, "")?.is_none() {
            trace.push(run_leaf(self, String::new(), input)?.1);
        }
        Ok(trace)
    }

    /// Trainable parameters with their `state_dict` names, in `state_dict` order, like
    /// PyTorch's `named_parameters()`.
    fn parameters(&mut self) -> Vec<(String, Tensor)> {
        let mut params = Vec::new();
        self.visit_state(&mut |name, entry| {
            if let StateEntry::Parameter(t) = entry {
                params.push((name.to_string(), t.clone()));
            }
        });
        params
    }

    /// Number of trainable elements.
    fn num_parameters(&mut self) -> usize {
        let mut count = 0;
        self.visit_state(&mut |_, entry| {
            if let StateEntry::Parameter(t) = entry {
                count += t.numel();
            }
        });
        count
    }

    /// The keys of PyTorch's `state_dict()`: parameters, buffers and counters, in order.
    fn state_dict_names(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        self.visit_state(&mut |name, entry| {
            if !matches!(entry, StateEntry::RngCounter(_)) {
                names.push(name.to_string());
            }
        });
        names
    }
}

/// Joins a container's prefix and a child's name with a dot, as PyTorch does.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
