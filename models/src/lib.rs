//! Layers, the networks, CIFAR-10 loading, optimizers and checkpoints.
//!
//! A network is a [`Module`](layers::Module) (forward, state, train/eval, trace) that also
//! implements [`Model`] (name, input shape, classes); [`networks`] lists them by name.

pub mod checkpoint;
pub mod data;
mod error;
pub mod layers;
mod model;
pub mod networks;
pub mod optim;
pub mod recipes;
pub mod test_pause;
pub mod train;
pub mod tta;
pub mod whitening;

/// The tensor layer's error (every op's; also what [`CudaDevice::open`] returns).
pub use autograd::Error as TensorError;
pub use autograd::{
    autocast, no_grad, AutocastGuard, CudaDevice, DType, Device, Precision, Tensor,
};
pub use error::{Error, Result};
pub use model::Model;
pub use networks::{Airbench94, Net};
