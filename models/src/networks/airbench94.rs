//! airbench94's network (K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
//! arXiv 2404.00498), layer for layer as `make_net` in scripts/airbench94_pytorch.py builds
//! it.

use autograd::{Device, Result, Tensor};

use crate::layers::{
    BatchNorm2d, BatchNormConfig, Conv2d, Flatten, LayerKind, LayerTrace, Linear, MaxPool2d,
    Module, Mul, ParamInit, Sequential, StateEntry, GELU,
};
use crate::model::Model;
use crate::whitening::{patch_moments, PatchWhitening};

/// Output widths of the three convolution groups.
pub const WIDTHS: [usize; 3] = [64, 256, 256];
/// Side of the whitening convolution's patches.
pub const WHITEN_KERNEL: usize = 2;
/// Its filters: each eigenvector of the 12-dimensional patch covariance and its negative.
pub const WHITEN_WIDTH: usize = 2 * 3 * WHITEN_KERNEL * WHITEN_KERNEL;
/// airbench's `eps` in `1 / sqrt(eigenvalue + eps)`.
pub const WHITEN_EPS: f64 = 5e-4;
/// airbench's `batchnorm_momentum` 0.6 is the running statistics' decay: PyTorch's
/// `momentum = 1 - 0.6`.
pub const BATCH_NORM_MOMENTUM: f64 = 1.0 - 0.6;
pub const BATCH_NORM_EPS: f64 = 1e-12;
/// The logits' scale.
pub const SCALING_FACTOR: f64 = 1.0 / 9.0;

/// airbench94's network:
///
/// ```text
/// 0  Conv(3, 24, 2x2, no padding, bias)    weight frozen at the patch whitening
/// 1  GELU
/// 2  ConvGroup(24, 64)     conv1 (3x3, no bias) > MaxPool 2 > norm1 > GELU > conv2 > norm2 > GELU
/// 3  ConvGroup(64, 256)
/// 4  ConvGroup(256, 256)
/// 5  MaxPool 3
/// 6  Flatten
/// 7  Linear(256, 10, no bias)
/// 8  Mul(1/9)
/// ```
///
/// 1,972,792 parameters as PyTorch counts them (frozen ones included), named as PyTorch
/// names that `nn.Sequential`: `0.weight`, `0.bias`, `2.conv1.weight`, `2.norm1.weight`,
/// ..., `7.weight`. Batch norms have eps 1e-12, momentum 0.4 and a weight frozen at 1.
/// Convolutions start from PyTorch's default initialisation with their first `C_in`
/// filters set to the identity (`dirac_`), and zero biases.
///
/// The whitening layer's weight starts as that initialisation too (airbench's lookahead
/// copies it before the whitening): [`Airbench94::init_whitening`] sets it from data.
pub struct Airbench94 {
    body: Sequential,
    /// Clones of the whitening convolution's weight and bias (they share storage).
    whiten_weight: Tensor,
    whiten_bias: Tensor,
}

/// airbench's `Conv`: PyTorch's default initialisation, zero bias, dirac on the first
/// `C_in` filters; padding 1 ("same") for 3x3.
fn conv(
    init: &mut ParamInit,
    cin: usize,
    cout: usize,
    kernel: usize,
    padding: usize,
    bias: bool,
) -> Result<Conv2d> {
    let conv = Conv2d::with_bias(init, cin, cout, kernel, 1, padding, bias)?;
    conv.zero_bias()?;
    conv.dirac_first_filters()?;
    Ok(conv)
}

fn batch_norm(init: &mut ParamInit, channels: usize) -> Result<BatchNorm2d> {
    BatchNorm2d::with_config(
        init,
        channels,
        BatchNormConfig {
            momentum: BATCH_NORM_MOMENTUM,
            eps: BATCH_NORM_EPS,
            train_weight: false,
            train_bias: true,
        },
    )
}

/// airbench's `ConvGroup`. Its `activ` runs twice; it has no state, so the names stay
/// PyTorch's.
fn conv_group(init: &mut ParamInit, cin: usize, cout: usize) -> Result<Sequential> {
    Ok(Sequential::named(vec![
        ("conv1", Box::new(conv(init, cin, cout, 3, 1, false)?)),
        ("pool", Box::new(MaxPool2d::new(2, 2, 0))),
        ("norm1", Box::new(batch_norm(init, cout)?)),
        ("activ", Box::new(GELU)),
        ("conv2", Box::new(conv(init, cout, cout, 3, 1, false)?)),
        ("norm2", Box::new(batch_norm(init, cout)?)),
        ("activ", Box::new(GELU)),
    ]))
}

impl Airbench94 {
    /// The name it is registered under in [`crate::networks`].
    pub const NAME: &'static str = "airbench94";

    /// The network with its initial weights drawn from `seed`, on `device`.
    pub fn new(seed: u64, device: Device) -> Result<Airbench94> {
        let mut init = ParamInit::new(seed, device);
        let init = &mut init;
        let whiten = conv(init, 3, WHITEN_WIDTH, WHITEN_KERNEL, 0, true)?;
        whiten.weight.set_requires_grad(false)?;
        let whiten_weight = whiten.weight.clone();
        let whiten_bias = whiten.bias.clone().expect("built with a bias");
        let [w1, w2, w3] = WIDTHS;
        let body = Sequential::new(vec![
            Box::new(whiten),
            Box::new(GELU),
            Box::new(conv_group(init, WHITEN_WIDTH, w1)?),
            Box::new(conv_group(init, w1, w2)?),
            Box::new(conv_group(init, w2, w3)?),
            Box::new(MaxPool2d::new(3, 3, 0)),
            Box::new(Flatten),
            Box::new(Linear::with_bias(init, w3, 10, false)?),
            Box::new(Mul::new(SCALING_FACTOR)),
        ]);
        Ok(Airbench94 {
            body,
            whiten_weight,
            whiten_bias,
        })
    }

    /// Sets the whitening layer's filters from the 2x2 patches of `images` (normalised
    /// NCHW, shape `[n, 3, h, w]`; airbench uses the first 5,000 training images).
    pub fn init_whitening(&self, images: &[f32], shape: [usize; 4]) -> Result<PatchWhitening> {
        let whitening = PatchWhitening::of(&patch_moments(images, shape, WHITEN_KERNEL)?)?;
        let filters = Tensor::from_vec(
            whitening.filters(WHITEN_EPS),
            &whitening.filter_shape(),
            Device::Cpu,
        )?;
        self.whiten_weight.assign(&filters)?;
        Ok(whitening)
    }

    /// The whitening layer's bias (`0.bias`): airbench trains it for the first 3 epochs
    /// only, switching its `requires_grad` off after.
    pub fn whitening_bias(&self) -> &Tensor {
        &self.whiten_bias
    }

    /// The whitening layer's frozen weight (`0.weight`).
    pub fn whitening_weight(&self) -> &Tensor {
        &self.whiten_weight
    }
}

impl Module for Airbench94 {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        self.body.forward(input)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        self.body.visit_state(visit)
    }

    fn set_training(&mut self, training: bool) {
        self.body.set_training(training)
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Container { name: "Airbench94" }
    }

    fn forward_traced(
        &mut self,
        input: &Tensor,
        trace: &mut Vec<LayerTrace>,
        prefix: &str,
    ) -> Result<Option<Tensor>> {
        self.body.forward_traced(input, trace, prefix)
    }
}

impl Model for Airbench94 {
    fn name(&self) -> &'static str {
        Airbench94::NAME
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }

    fn num_classes(&self) -> usize {
        10
    }
}
