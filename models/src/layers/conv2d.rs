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
        Conv2d::with_bias(
            init,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            true,
        )
    }

    /// A convolution with PyTorch's default initialisation, with a bias only when `bias`
    /// (`torch.nn.Conv2d(..., bias=False)` otherwise).
    pub fn with_bias(
        init: &mut ParamInit,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let fan_in = in_channels * kernel_size * kernel_size;
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let weight = init.uniform(
            &[out_channels, in_channels, kernel_size, kernel_size],
            bound,
        )?;
        let bias = if bias {
            Some(init.uniform(&[out_channels], bound)?)
        } else {
            None
        };
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

impl Conv2d {
    /// Sets the bias (if any) to zero.
    pub fn zero_bias(&self) -> Result<()> {
        match &self.bias {
            Some(bias) => bias.assign(&Tensor::zeros(bias.shape(), bias.dtype(), bias.device())?),
            None => Ok(()),
        }
    }

    /// `torch.nn.init.dirac_(weight[:in_channels])`: the first `in_channels` filters pass
    /// their own input channel through unchanged (1 at the kernel's centre
    /// `(k / 2, k / 2)`, 0 elsewhere); the other filters keep their values.
    ///
    /// ```
    /// use models::layers::{Conv2d, ParamInit};
    /// use models::Device;
    /// let conv = Conv2d::with_bias(&mut ParamInit::new(0, Device::Cpu), 2, 3, 3, 1, 1, false)?;
    /// conv.dirac_first_filters()?;
    /// let w = conv.weight.to_vec_f32()?;
    /// assert_eq!(&w[..18], &[0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.]);
    /// assert_eq!(w[18 + 9 + 4], 1.0); // filter 1, channel 1, centre
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn dirac_first_filters(&self) -> Result<()> {
        let k = self.kernel_size;
        let filter = self.in_channels * k * k;
        let mut values = self.weight.to_vec_f64()?;
        let first = self.in_channels.min(self.out_channels);
        for (o, w) in values.chunks_exact_mut(filter).take(first).enumerate() {
            w.fill(0.0);
            w[o * k * k + (k / 2) * k + k / 2] = 1.0;
        }
        let values = Tensor::from_vec(values, self.weight.shape(), autograd::Device::Cpu)?;
        self.weight.assign(&values)
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
