use autograd::{Result, Tensor};

use super::{LayerKind, Module};

/// Max pooling with square kernel, stride and padding, like `torch.nn.MaxPool2d`.
pub struct MaxPool2d {
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2d {
    pub fn new(kernel_size: usize, stride: usize, padding: usize) -> MaxPool2d {
        MaxPool2d {
            kernel_size,
            stride,
            padding,
        }
    }
}

impl Module for MaxPool2d {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        input.max_pool2d([self.kernel_size; 2], [self.stride; 2], [self.padding; 2])
    }

    fn kind(&self) -> LayerKind {
        LayerKind::MaxPool2d {
            kernel_size: self.kernel_size,
            stride: self.stride,
            padding: self.padding,
        }
    }
}
