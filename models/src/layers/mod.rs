//! Reusable layers, as plain structs, each with PyTorch's defaults and state-dict names.

mod batch_norm;
mod conv2d;
mod dropout;
mod flatten;
mod init;
mod linear;
mod max_pool2d;
pub(crate) mod module;
mod relu;
mod sequential;
mod trace;

pub use batch_norm::BatchNorm2d;
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use init::ParamInit;
pub use linear::Linear;
pub use max_pool2d::MaxPool2d;
pub use module::{Module, StateEntry};
pub use relu::ReLU;
pub use sequential::Sequential;
pub use trace::{LayerKind, LayerTrace};
