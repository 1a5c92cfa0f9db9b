//! PyTorch's default initialisation, from a seeded, portable generator.

use autograd::{Device, Result, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Draws initial weights; the same seed gives the same network on every machine.
pub struct ParamInit {
    rng: ChaCha8Rng,
    device: Device,
}

impl ParamInit {
    pub fn new(seed: u64, device: Device) -> ParamInit {
        ParamInit {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// A trainable tensor uniform in `[-bound, bound)`.
    ///
    /// PyTorch initialises `Conv2d` and `Linear` weights with `kaiming_uniform_(a=sqrt(5))`,
    /// whose bound works out to `1/sqrt(fan_in)`, and their biases uniform in the same bound.
    pub fn uniform(&mut self, shape: &[usize], bound: f32) -> Result<Tensor> {
        let len = shape.iter().product();
        let values: Vec<f32> = (0..len)
            .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect();
        Ok(Tensor::from_vec(values, shape, self.device)?.requires_grad_())
    }

    /// A tensor filled with `value`; trainable when `trainable`.
    pub fn constant(&mut self, shape: &[usize], value: f32, trainable: bool) -> Result<Tensor> {
        let len = shape.iter().product();
        let tensor = Tensor::from_vec(vec![value; len], shape, self.device)?;
        Ok(if trainable {
            tensor.requires_grad_()
        } else {
            tensor
        })
    }

    /// A seed for a layer's own stream of random numbers (dropout masks).
    pub fn next_seed(&mut self) -> u64 {
        self.rng.random()
    }
}
