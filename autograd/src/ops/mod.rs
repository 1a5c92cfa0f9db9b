//! Differentiable operations, one file each: the forward call into `kernels` and the
//! backward rule recorded for it.

pub mod arithmetic;
pub mod batch_norm;
pub mod cast;
pub mod conv2d;
pub mod dropout;
pub mod gelu;
pub mod linear;
pub mod loss;
pub mod pool2d;
pub mod reduce;
pub mod relu;
pub mod reshape;
