//! Layers, the notebook's network, CIFAR-10 loading, optimizers and checkpoints.

pub mod checkpoint;
pub mod data;
mod error;
pub mod layers;
pub mod net;
pub mod optim;
pub mod test_pause;
pub mod train;

/// The CUDA backend, for the command line's `--device` and `--tf32`.
pub use autograd::cuda;
pub use autograd::{no_grad, DType, Device, Tensor};
pub use error::{Error, Result};
pub use net::Net;
