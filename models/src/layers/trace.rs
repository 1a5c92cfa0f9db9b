//! What a layer computes, and the record of one run through a network, layer by layer.
//!
//! A trace is the one description of a network that everything else reads: the `summary`
//! command prints it, the criterion benches generate their kernel cases from it, and the
//! profiler labels its rows with it. It comes from running the real network, so it cannot
//! drift from what the network does.

use std::fmt;

use autograd::{Result, Tensor};

use super::Module;

/// The op a leaf layer runs, with its hyper-parameters.
///
/// Its `Display` is PyTorch's `repr` of the same module:
/// ```
/// use models::layers::LayerKind;
/// let pool = LayerKind::MaxPool2d { kernel_size: 2, stride: 2, padding: 1 };
/// assert_eq!(
///     pool.to_string(),
///     "MaxPool2d(kernel_size=2, stride=2, padding=1, dilation=1, ceil_mode=False)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LayerKind {
    /// Square kernel, stride and padding.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    },
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    MaxPool2d {
        kernel_size: usize,
        stride: usize,
        padding: usize,
    },
    /// Affine, tracking running statistics.
    BatchNorm2d {
        num_features: usize,
        eps: f64,
        momentum: f64,
    },
    ReLU,
    Dropout {
        p: f64,
    },
    /// Everything but the batch dimension into one.
    Flatten,
    /// A module made of other modules (`Sequential`, a whole network): a trace lists its
    /// children, never the container itself.
    Container {
        name: &'static str,
    },
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let python_bool = |b: bool| if b { "True" } else { "False" };
        match self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel_size: k,
                stride: s,
                padding: p,
                bias,
            } => write!(
                f,
                "Conv2d({in_channels}, {out_channels}, kernel_size=({k}, {k}), stride=({s}, {s}), padding=({p}, {p}){})",
                if *bias { "" } else { ", bias=False" }
            ),
            LayerKind::Linear {
                in_features,
                out_features,
                bias,
            } => write!(
                f,
                "Linear(in_features={in_features}, out_features={out_features}, bias={})",
                python_bool(*bias)
            ),
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                padding,
            } => write!(
                f,
                "MaxPool2d(kernel_size={kernel_size}, stride={stride}, padding={padding}, dilation=1, ceil_mode=False)"
            ),
            LayerKind::BatchNorm2d {
                num_features,
                eps,
                momentum,
            } => write!(
                f,
                "BatchNorm2d({num_features}, eps={eps:e}, momentum={momentum}, affine=True, track_running_stats=True)"
            ),
            LayerKind::ReLU => write!(f, "ReLU()"),
            LayerKind::Dropout { p } => write!(f, "Dropout(p={p})"),
            LayerKind::Flatten => write!(f, "Flatten(start_dim=1, end_dim=-1)"),
            LayerKind::Container { name } => write!(f, "{name}"),
        }
    }
}

/// One leaf layer of a run through a network: its `state_dict`-style name, what it
/// computes, the shapes it saw and its trainable parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    /// As PyTorch names the module: `layer3.2` is child 2 of `layer3`.
    pub name: String,
    pub kind: LayerKind,
    /// PyTorch's `repr` of the layer (the kind's `Display`).
    pub description: String,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub parameters: usize,
}

/// Runs the leaf `layer` named `name` on `input` and records what it did.
pub(crate) fn run_leaf<M: Module + ?Sized>(
    layer: &mut M,
    name: String,
    input: &Tensor,
) -> Result<(Tensor, LayerTrace)> {
    let output = layer.forward(input)?;
    let kind = layer.kind();
    let row = LayerTrace {
        name,
        description: kind.to_string(),
        kind,
        input_shape: input.shape().to_vec(),
        output_shape: output.shape().to_vec(),
        parameters: layer.num_parameters(),
    };
    Ok((output, row))
}
