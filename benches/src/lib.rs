//! Shared helpers for the benchmarks and the per-layer profile.
//!
//! The layers come from the network itself: [`model_cases`] builds a network the `models`
//! crate registers (`models::networks`), runs a batch through it (`Model::layers_at`) and
//! turns every layer of that trace into a [`LayerCase`]: the kernel that layer runs, with its
//! geometry at the benchmark's batch, its name as PyTorch's `state_dict` spells it
//! (`layer3.2` is the third module of `layer3`) and a label for bench ids and table rows
//! (`layer3.2_1x1_128x9x9`). The criterion benches (`benches/kernels.rs`) time those
//! kernels; the profile (`src/bin/profile.rs`) uses the same cases to turn the times of a
//! real step into rates. Adding a network to `models::networks` adds it to both.
//!
//! Random inputs come from a small SplitMix64 generator: benchmarks need values that are
//! not all equal (max pooling and ReLU branch on them), not statistical quality.

use kernels::batch_norm::BatchNormGeometry;
use kernels::conv2d::Conv2dGeometry;
use kernels::linear::LinearGeometry;
use kernels::pool2d::{Pool2dGeometry, PoolKind};
use kernels::Storage;
use models::layers::{LayerKind, LayerTrace};
use models::{Device, Model};

/// Bytes per element of the f32 buffers everything here uses.
pub const F32_BYTES: u64 = 4;

/// What one kernel call does, to turn its time into a rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations, 2 per multiply-add (bias and padding not counted).
    Flops(f64),
    /// Compulsory traffic in f32 elements: each tensor the call reads or writes counted once.
    Elements(usize),
}

impl Work {
    /// The work of `calls` calls.
    pub fn times(self, calls: usize) -> Work {
        match self {
            Work::Flops(f) => Work::Flops(f * calls as f64),
            Work::Elements(n) => Work::Elements(n * calls),
        }
    }

    /// `GF/s` or `GB/s` of a call that took `seconds`.
    pub fn rate(self, seconds: f64) -> String {
        match self {
            Work::Flops(f) => format!("{:7.1} GF/s", f / seconds / 1e9),
            Work::Elements(n) => {
                format!("{:7.1} GB/s", (n as u64 * F32_BYTES) as f64 / seconds / 1e9)
            }
        }
    }
}

/// The kernel a layer runs, with its geometry at the bench's batch.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    Conv2d {
        geometry: Conv2dGeometry,
        bias: bool,
    },
    MaxPool2d(Pool2dGeometry),
    BatchNorm2d {
        geometry: BatchNormGeometry,
        eps: f64,
        momentum: f64,
    },
    Relu {
        len: usize,
    },
    /// The exact (erf) GELU.
    Gelu {
        len: usize,
    },
    /// Multiplication by a constant (`elementwise::scale`).
    Scale {
        len: usize,
        factor: f64,
    },
    Dropout {
        len: usize,
        p: f64,
    },
    Linear {
        geometry: LinearGeometry,
        bias: bool,
    },
}

/// One layer of a network, as the kernel it runs.
#[derive(Clone, Debug)]
pub struct LayerCase {
    /// The layer's `state_dict` name, e.g. `layer3.2`.
    pub name: String,
    /// Name, kernel and per-example input shape, e.g. `layer3.2_1x1_128x9x9`.
    pub label: String,
    pub kernel: Kernel,
    /// False for the layer that reads the images: training skips its input gradient.
    pub input_needs_grad: bool,
    /// Trainable elements of the layer.
    pub parameters: usize,
}

/// `C x H x W` of a batched shape: `[N, 128, 9, 9]` -> `128x9x9`.
fn per_example(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().skip(1).map(usize::to_string).collect();
    dims.join("x")
}

/// `[N, C, H, W]`, or an error naming the layer.
fn nchw(row: &LayerTrace) -> Result<[usize; 4], String> {
    row.input_shape.as_slice().try_into().map_err(|_| {
        format!(
            "{}: expected an NCHW input, got {:?}",
            row.name, row.input_shape
        )
    })
}

impl LayerCase {
    /// The case of one traced layer; `None` for layers that run no kernel (flatten, a view).
    /// `first` marks the layer that reads the network's input.
    pub fn from_trace(row: &LayerTrace, first: bool) -> Result<Option<LayerCase>, String> {
        let geometry_error = |e: kernels::Error| format!("{}: {e}", row.name);
        let input = per_example(&row.input_shape);
        let len: usize = row.input_shape.iter().product();
        let (label, kernel) = match row.kind {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel_size: k,
                stride,
                padding,
                bias,
            } => {
                let geometry = Conv2dGeometry::new(
                    &nchw(row)?,
                    &[out_channels, in_channels, k, k],
                    [stride; 2],
                    [padding; 2],
                )
                .map_err(geometry_error)?;
                let stride = if stride == 1 {
                    String::new()
                } else {
                    format!("_s{stride}")
                };
                (
                    format!("{}_{k}x{k}{stride}_{input}", row.name),
                    Kernel::Conv2d { geometry, bias },
                )
            }
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                padding,
            } => {
                let geometry = Pool2dGeometry::new(
                    PoolKind::Max,
                    &nchw(row)?,
                    [kernel_size; 2],
                    [stride; 2],
                    [padding; 2],
                )
                .map_err(geometry_error)?;
                (format!("{}_{input}", row.name), Kernel::MaxPool2d(geometry))
            }
            LayerKind::BatchNorm2d {
                num_features,
                eps,
                momentum,
            } => {
                let geometry =
                    BatchNormGeometry::new(&nchw(row)?, num_features).map_err(geometry_error)?;
                (
                    format!("{}_{input}", row.name),
                    Kernel::BatchNorm2d {
                        geometry,
                        eps,
                        momentum,
                    },
                )
            }
            LayerKind::ReLU => (format!("{}_{input}", row.name), Kernel::Relu { len }),
            LayerKind::GELU => (format!("{}_{input}", row.name), Kernel::Gelu { len }),
            LayerKind::Mul { scale } => (
                format!("{}_{input}", row.name),
                Kernel::Scale { len, factor: scale },
            ),
            LayerKind::Dropout { p } => {
                (format!("{}_{input}", row.name), Kernel::Dropout { len, p })
            }
            LayerKind::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let geometry = LinearGeometry::new(&row.input_shape, &[out_features, in_features])
                    .map_err(geometry_error)?;
                (
                    format!("{}_{in_features}x{out_features}", row.name),
                    Kernel::Linear { geometry, bias },
                )
            }
            LayerKind::Flatten | LayerKind::Container { .. } => return Ok(None),
            _ => {
                return Err(format!(
                    "{}: no kernel case for {}; add its kind to benches::LayerCase::from_trace",
                    row.name, row.description
                ))
            }
        };
        Ok(Some(LayerCase {
            name: row.name.clone(),
            label,
            kernel,
            input_needs_grad: !first,
            parameters: row.parameters,
        }))
    }

    /// Short name of the kernel, for grouping.
    pub fn kind(&self) -> &'static str {
        match self.kernel {
            Kernel::Conv2d { .. } => "conv",
            Kernel::MaxPool2d(_) => "max_pool",
            Kernel::BatchNorm2d { .. } => "batch_norm",
            Kernel::Relu { .. } => "relu",
            Kernel::Gelu { .. } => "gelu",
            Kernel::Scale { .. } => "scale",
            Kernel::Dropout { .. } => "dropout",
            Kernel::Linear { .. } => "linear",
        }
    }

    /// The forward call's work: FLOPs of products, compulsory traffic of the rest
    /// (input read + output written).
    pub fn forward_work(&self) -> Work {
        match &self.kernel {
            Kernel::Conv2d { geometry, .. } => Work::Flops(geometry.forward_flops()),
            Kernel::Linear { geometry, .. } => Work::Flops(geometry.forward_flops()),
            Kernel::MaxPool2d(g) => {
                Work::Elements(numel(&g.input_shape()) + numel(&g.output_shape()))
            }
            Kernel::BatchNorm2d { geometry, .. } => Work::Elements(2 * geometry_len(geometry)),
            Kernel::Relu { len }
            | Kernel::Gelu { len }
            | Kernel::Scale { len, .. }
            | Kernel::Dropout { len, .. } => Work::Elements(2 * len),
        }
    }

    /// The backward call's work: the weight product, plus the input product when the input
    /// needs a gradient; for the rest, saved tensor + upstream gradient read, input
    /// gradient written (dropout recomputes its mask: gradient in, gradient out).
    pub fn backward_work(&self) -> Work {
        let products = if self.input_needs_grad { 2.0 } else { 1.0 };
        match &self.kernel {
            Kernel::Conv2d { geometry, .. } => Work::Flops(products * geometry.forward_flops()),
            Kernel::Linear { geometry, .. } => Work::Flops(products * geometry.forward_flops()),
            Kernel::MaxPool2d(g) => {
                Work::Elements(2 * numel(&g.input_shape()) + numel(&g.output_shape()))
            }
            Kernel::BatchNorm2d { geometry, .. } => Work::Elements(3 * geometry_len(geometry)),
            // GELU's backward reads its input and the upstream gradient.
            Kernel::Relu { len } | Kernel::Gelu { len } => Work::Elements(3 * len),
            // Scaling (and dropout, recomputing its mask): gradient in, gradient out.
            Kernel::Scale { len, .. } | Kernel::Dropout { len, .. } => Work::Elements(2 * len),
        }
    }

    /// `(m, n, k)` of one forward product of the conv kernel's im2col lowering at this
    /// batch on `threads` threads: `C_out x cols` by `C_in*KH*KW`. The kernel gives each
    /// thread a slice of the batch and unrolls images together up to about 512 columns
    /// (`MAX_COLUMNS` in the conv2d CPU code); this approximates that choice so the GEMM
    /// benches time products of the sizes the convolutions issue. `None` for layers that
    /// are not convolutions.
    pub fn forward_gemm_shape(&self, threads: usize) -> Option<(usize, usize, usize)> {
        const TARGET_COLUMNS: usize = 512;
        let Kernel::Conv2d { geometry: g, .. } = &self.kernel else {
            return None;
        };
        let [batch, in_channels, ..] = g.input_shape();
        let [out_channels, _, kh, kw] = g.weight_shape();
        let pixels = g.out_h * g.out_w;
        let per_thread = batch.div_ceil(threads.max(1)).max(1);
        let images = TARGET_COLUMNS.div_ceil(pixels).clamp(1, per_thread);
        Some((out_channels, images * pixels, in_channels * kh * kw))
    }
}

fn geometry_len(g: &BatchNormGeometry) -> usize {
    g.batch * g.channels * g.spatial
}

/// The kernel cases of every layer of `trace`, in forward order.
pub fn kernel_cases(trace: &[LayerTrace]) -> Result<Vec<LayerCase>, String> {
    let mut cases = Vec::new();
    for (index, row) in trace.iter().enumerate() {
        cases.extend(LayerCase::from_trace(row, index == 0)?);
    }
    Ok(cases)
}

/// The network registered as `name`, fresh from seed 0 on the CPU, in training mode.
pub fn build_model(name: &str) -> Result<Box<dyn Model>, String> {
    let mut model = models::networks::by_name(name, 0, Device::Cpu).map_err(|e| e.to_string())?;
    model.set_training(true);
    Ok(model)
}

/// The trace of the network registered as `name` at `batch`.
pub fn model_trace(name: &str, batch: usize) -> Result<Vec<LayerTrace>, String> {
    let mut model = build_model(name)?;
    model
        .layers_at(batch)
        .map_err(|e| format!("{name}: tracing at batch {batch}: {e}"))
}

/// The kernel cases of the network registered as `name` at `batch`.
pub fn model_cases(name: &str, batch: usize) -> Result<Vec<LayerCase>, String> {
    kernel_cases(&model_trace(name, batch)?).map_err(|e| format!("{name}: {e}"))
}

/// SplitMix64: a tiny, seedable, good-enough generator for benchmark inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        // The top 24 bits fill an f32 mantissa exactly.
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `len` values uniform in `[-1, 1)`.
pub fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_f32()).collect()
}

/// An f32 [`Storage`] of `len` values uniform in `[-1, 1)`.
pub fn random_storage(len: usize, seed: u64) -> Storage {
    Storage::f32(random_vec(len, seed))
}

/// An f32 [`Storage`] of `len` values uniform in `[lo, hi)` (e.g. positive variances).
pub fn random_storage_in(len: usize, lo: f32, hi: f32, seed: u64) -> Storage {
    let mut rng = Rng::new(seed);
    Storage::f32(
        (0..len)
            .map(|_| lo + (hi - lo) * (rng.next_f32() + 1.0) / 2.0)
            .collect(),
    )
}

/// `len` class labels in `0..classes`.
pub fn random_labels(len: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| (rng.next_u64() % classes as u64) as u32)
        .collect()
}

/// A batch of random images (already "normalised" to `[-1, 1)`) and labels for `model`.
pub fn random_batch(batch: usize, model: &dyn Model, seed: u64) -> models::data::Batch {
    models::data::Batch {
        images: random_vec(batch * numel(&model.input_shape()), seed),
        labels: random_labels(batch, model.num_classes(), seed ^ 0x5eed),
    }
}

/// Product of a shape's dimensions.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_network_yields_cases_that_match_its_trace() {
        for name in models::networks::names() {
            let trace = model_trace(name, 2).unwrap();
            let cases = kernel_cases(&trace).unwrap();
            assert!(!cases.is_empty(), "{name}");
            // One case per layer that runs a kernel, in the trace's order, with its name.
            let kernel_layers: Vec<&str> = trace
                .iter()
                .filter(|row| !matches!(row.kind, LayerKind::Flatten))
                .map(|row| row.name.as_str())
                .collect();
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, kernel_layers, "{name}");
            // Every parameter sits in a benched layer.
            let mut model = build_model(name).unwrap();
            let cased: usize = cases.iter().map(|c| c.parameters).sum();
            assert_eq!(cased, model.num_parameters(), "{name}");
            // Only the layer reading the images skips its input gradient.
            assert!(!cases[0].input_needs_grad);
            assert!(cases[1..].iter().all(|c| c.input_needs_grad));
        }
    }

    #[test]
    fn the_notebook_network_gives_its_known_cases() {
        let cases = model_cases("net", 32).unwrap();
        let count = |kind: &str| cases.iter().filter(|c| c.kind() == kind).count();
        assert_eq!(
            [
                count("conv"),
                count("max_pool"),
                count("batch_norm"),
                count("relu"),
                count("dropout"),
                count("linear")
            ],
            [11, 5, 5, 7, 2, 3]
        );
        assert_eq!(
            cases.iter().map(|c| c.parameters).sum::<usize>(),
            10_899_914
        );
        let label = |name: &str| {
            let case = cases.iter().find(|c| c.name == name).unwrap();
            case.label.clone()
        };
        assert_eq!(label("layer1.0"), "layer1.0_3x3_3x32x32");
        assert_eq!(label("layer3.2"), "layer3.2_1x1_128x9x9");
        assert_eq!(label("layer3.3"), "layer3.3_128x11x11");
        assert_eq!(label("layer5.4"), "layer5.4_512x4x4");
        assert_eq!(label("layer_fc.0"), "layer_fc.0_8192x1024");
        assert_eq!(label("layer_fc.1"), "layer_fc.1_1024");
        // The conv geometry at batch 32: layer3.2's 1x1 padded convolution grows 9 -> 11.
        let layer3_2 = cases.iter().find(|c| c.name == "layer3.2").unwrap();
        let Kernel::Conv2d { geometry, bias } = &layer3_2.kernel else {
            panic!("layer3.2 is a convolution");
        };
        assert_eq!((geometry.out_h, geometry.out_w, *bias), (11, 11, true));
        assert_eq!(geometry.input_shape(), [32, 128, 9, 9]);
        // 2 * N * C_out * H_out * W_out * C_in * k * k.
        assert_eq!(
            layer3_2.forward_work(),
            Work::Flops(2.0 * (32 * 128 * 11 * 11 * 128) as f64)
        );
        assert_eq!(
            layer3_2.forward_gemm_shape(2),
            Some((128, 5 * 121, 128)),
            "512 columns of 121-pixel images: 5 images per product"
        );
    }

    #[test]
    fn airbench94_gives_its_known_cases() {
        let cases = model_cases("airbench94", 8).unwrap();
        let count = |kind: &str| cases.iter().filter(|c| c.kind() == kind).count();
        assert_eq!(
            [
                count("conv"),
                count("max_pool"),
                count("batch_norm"),
                count("gelu"),
                count("linear"),
                count("scale")
            ],
            [7, 4, 6, 7, 1, 1]
        );
        assert_eq!(cases.iter().map(|c| c.parameters).sum::<usize>(), 1_972_792);
        let labels: Vec<&str> = cases.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            &labels[..8],
            [
                "0_2x2_3x32x32",
                "1_24x31x31",
                "2.conv1_3x3_24x31x31",
                "2.pool_64x31x31",
                "2.norm1_64x15x15",
                "2.activ_64x15x15",
                "2.conv2_3x3_64x15x15",
                "2.norm2_64x15x15",
            ]
        );
        assert_eq!(
            &labels[labels.len() - 3..],
            ["5_256x3x3", "7_256x10", "8_10"]
        );
        let scale = cases.last().unwrap();
        assert!(matches!(scale.kernel, Kernel::Scale { len: 80, factor } if factor == 1.0 / 9.0));
        // The whitening convolution has a bias; the others have none.
        let biases: Vec<bool> = cases
            .iter()
            .filter_map(|c| match c.kernel {
                Kernel::Conv2d { bias, .. } => Some(bias),
                _ => None,
            })
            .collect();
        assert_eq!(biases, [true, false, false, false, false, false, false]);
    }

    #[test]
    fn an_unknown_network_is_named_in_the_error() {
        let err = model_cases("resnet1000", 2).unwrap_err();
        assert!(err.contains("resnet1000") && err.contains("net"), "{err}");
    }

    #[test]
    fn random_values_cover_the_interval() {
        let v = random_vec(10_000, 7);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.99) && v.iter().any(|&x| x > 0.99));
        assert!(random_labels(1000, 10, 3).iter().all(|&l| l < 10));
    }
}
