//! The `Tensor` users touch, and reverse-mode differentiation over the kernels.
//!
//! Every operation on a [`Tensor`] runs its kernel immediately (eager, like PyTorch) and,
//! when gradients are wanted, records a node holding what its backward pass needs.
//! [`Tensor::backward`] walks those nodes in reverse topological order, frees each node's
//! saved inputs as soon as its gradient has been propagated, and accumulates gradients
//! into the leaves that asked for them.
//!
//! ```
//! use autograd::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3], Device::Cpu)?.requires_grad_();
//! let loss = x.mul(&x)?.sum()?; // sum of squares
//! loss.backward()?;
//! assert_eq!(x.grad().unwrap().to_vec_f64()?, vec![2.0, -4.0, 6.0]);
//! # Ok::<(), autograd::Error>(())
//! ```

mod autocast;
mod cuda;
mod grad_mode;
mod graph;
pub mod ops;
pub mod optim;
pub mod profile;
mod tensor;

pub use autocast::{autocast, current_precision, AutocastGuard, Precision};
pub use cuda::CudaDevice;
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use kernels::cross_entropy::{CrossEntropy, Reduction};
pub use kernels::{DType, Device, Element, Error, Result};
pub use ops::pool2d::PoolKind;
pub use tensor::Tensor;
