//! What every network provides beyond being a module: a name, the shape of its input and
//! its classes, so the trainer, the command line and the benches can take any of them.

use autograd::{no_grad, DType, Device, Result, Tensor};

use crate::layers::{LayerTrace, Module};

/// A whole network, registered by name in [`crate::networks`].
///
/// Everything else comes from [`Module`]: `forward`, `set_training` (train/eval),
/// `parameters`, `state_dict_names`, `visit_state` (checkpoints) and `trace`.
///
/// ```
/// use models::{networks, Device, Model};
/// let mut net = networks::by_name("net", 0, Device::Cpu)?;
/// assert_eq!(net.num_parameters(), 10_899_914);
/// let layers = net.layers_at(2)?;
/// assert_eq!(layers[0].name, "layer1.0");
/// assert_eq!(layers.last().unwrap().output_shape, vec![2, 10]);
/// # Ok::<(), models::Error>(())
/// ```
pub trait Model: Module {
    /// The name it is registered under: `net`.
    fn name(&self) -> &'static str;

    /// One input example's shape, `[channels, height, width]`.
    fn input_shape(&self) -> [usize; 3];

    /// The number of classes: the width of the logits.
    fn num_classes(&self) -> usize;

    /// Every leaf layer with its shapes at `batch`, from a batch of zeros run through the
    /// network in evaluation mode without recording a graph: it trains nothing, but leaves
    /// the model in evaluation mode (call `set_training(true)` before training).
    fn layers_at(&mut self, batch: usize) -> Result<Vec<LayerTrace>> {
        let device = self
            .parameters()
            .first()
            .map_or(Device::Cpu, |(_, p)| p.device());
        let [c, h, w] = self.input_shape();
        let input = Tensor::zeros(&[batch, c, h, w], DType::F32, device)?;
        self.set_training(false);
        let _guard = no_grad();
        self.trace(&input)
    }
}
