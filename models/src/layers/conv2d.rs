use autograd::{Result, Tensor};

use super::{LayerKind, Module, ParamInit, StateEntry};

/// 2-D convolution with square kernel, stride and padding, like `torch.nn.Conv2d`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// A convolution with bias and PyTorch's default initialisation.
    pub fn new(
        init: &mut ParamInit,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Conv2d> {
        let fan_in = in_channels * kernel_size * kernel_size;
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let weight = init.uniform(
            &[out_channels, in_channels, kernel_size, kernel_size],
            bound,
        )?;
        let bias = Some(init.uniform(&[out_channels], bound)?);
        Ok(Conv2d {
            weight,
            bias,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.stride; 2],
            [self.padding; 2],
        )
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        visit("weight", StateEntry::Parameter(&self.weight));
        if let Some(bias) = &self.bias {
            visit("bias", StateEntry::Parameter(bias));
        }
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Conv2d {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            kernel_size: self.kernel_size,
            stride: self.stride,
            padding: self.padding,
            bias: self.bias.is_some(),
        }
    }
}
