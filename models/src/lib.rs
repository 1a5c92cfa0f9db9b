//! Layers, the notebook's network, CIFAR-10 loading, optimizers and checkpoints.

pub mod checkpoint;
pub mod data;
mod error;
pub mod layers;
pub mod net;
pub mod optim;
pub mod train;

/// The tensor layer's error (every op's; also what [`CudaDevice::open`] returns).
pub use autograd::Error as TensorError;
pub use autograd::{no_grad, CudaDevice, DType, Device, Tensor};
pub use error::{Error, Result};
pub use net::Net;
