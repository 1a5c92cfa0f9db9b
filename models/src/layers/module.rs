//! What every layer provides.

use autograd::{Result, Tensor};

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

    /// One line describing the layer, like PyTorch's `repr`: `Conv2d(3, 64, kernel_size=(3, 3), ...)`.
    fn describe(&self) -> String;

    /// For containers: runs the layer and records each child's output; leaves record nothing.
    fn forward_traced(
        &mut self,
        _input: &Tensor,
        _trace: &mut Vec<crate::layers::LayerTrace>,
        _prefix: &str,
    ) -> Result<Option<Tensor>> {
        Ok(None)
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
