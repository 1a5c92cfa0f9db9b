//! The notebook's CNN written from scratch, in f64 and plain loops: the oracle.
//!
//! Section 4 of the course notebook builds a convolutional layer by hand in NumPy:
//! `conv_single_step`, `zero_pad`, `conv_forward` and `pool_forward`. This module is
//! that code, line for line, plus the two backward passes the notebook leaves out
//! ([`conv_backward`], [`pool_backward`]). The fast kernels are tested against it, so it
//! favours obviousness over speed: every output element is one visible loop body.
//!
//! Conventions, all taken from the notebook:
//! - activations are [`Array4`]s in NHWC order `(m, n_H, n_W, n_C)` (the fast kernels
//!   use NCHW; [`Array4::from_nchw`] and [`Array4::to_nchw`] convert),
//! - conv weights are `(f, f, n_C_prev, n_C)`, biases one value per output channel,
//! - output sizes round down: `n_H = (n_H_prev + 2 pad - f) / stride + 1`.
//!
//! [`NumpyRng`] replays `np.random.seed` / `np.random.randn` bit for bit, so the tests
//! rebuild the notebook's inputs and check every number it prints.
//!
//! # Panics
//!
//! This is test-side code with fixed, NumPy-shaped signatures: instead of returning
//! `Result`, each function `assert!`s its shapes and hyper-parameters and panics with a
//! message naming the function and the offending values. The checked `kernels` ops
//! are the ones that validate user input.

mod array4;
mod conv_backward;
mod conv_forward;
mod conv_single_step;
pub mod numpy_rng;
mod pool_backward;
mod pool_forward;
#[cfg(test)]
mod tests;
mod zero_pad;

pub use array4::Array4;
pub use conv_backward::{conv_backward, ConvGrads};
pub use conv_forward::{conv_forward, ConvParams};
pub use conv_single_step::conv_single_step;
pub use numpy_rng::NumpyRng;
pub use pool_backward::pool_backward;
pub use pool_forward::{pool_forward, PoolMode, PoolParams};
pub use zero_pad::zero_pad;
