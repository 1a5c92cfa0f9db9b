//! Shared helpers for the benchmarks and the per-layer profile.
//!
//! [`BLOCKS`] and [`FC`] describe the notebook's network once, layer by layer, so that the
//! criterion benches (`benches/kernels.rs`) and the profile (`src/bin/profile.rs`) time the
//! same shapes. Names follow the PyTorch state dict: `layer3.2` is the third module of
//! `layer3` (a convolution), `layer3.3` its max pool, `layer3.4` its batch norm, `layer3.5`
//! its ReLU. The `models` crate builds the real network; a unit test below checks that this
//! table has the same parameter count (10,899,914).
//!
//! Random inputs come from a small SplitMix64 generator: benchmarks need values that are
//! not all equal (max pooling and ReLU branch on them), not statistical quality.

use kernels::batch_norm::BatchNormGeometry;
use kernels::conv2d::Conv2dGeometry;
use kernels::linear::LinearGeometry;
use kernels::pool2d::{Pool2dGeometry, PoolKind};
use kernels::Storage;

/// Bytes per element of the f32 buffers everything here uses.
pub const F32_BYTES: u64 = 4;

/// Batch norm's PyTorch defaults, as the network uses them.
pub const BN_MOMENTUM: f64 = 0.1;
pub const BN_EPS: f64 = 1e-5;

/// The network's dropout probability.
pub const DROPOUT_P: f64 = 0.5;

/// CIFAR-10 image channels, side and classes.
pub const IMAGE_CHANNELS: usize = 3;
pub const IMAGE_SIDE: usize = 32;
pub const CLASSES: usize = 10;

/// One stride-1 convolution of the network, with a square kernel and square input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// State-dict name, e.g. `layer3.2`.
    pub name: &'static str,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub padding: usize,
    /// Input height = width.
    pub in_hw: usize,
}

impl ConvSpec {
    /// Output height = width (stride 1).
    pub const fn out_hw(&self) -> usize {
        self.in_hw + 2 * self.padding - self.kernel + 1
    }

    /// Name, kernel and input `CxHxW`, e.g. `layer3.2_1x1_128x9x9`: bench ids and table rows.
    pub fn label(&self) -> String {
        format!(
            "{}_{k}x{k}_{}x{h}x{h}",
            self.name,
            self.in_channels,
            k = self.kernel,
            h = self.in_hw
        )
    }

    pub fn input_shape(&self, batch: usize) -> [usize; 4] {
        [batch, self.in_channels, self.in_hw, self.in_hw]
    }

    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel,
            self.kernel,
        ]
    }

    pub fn geometry(&self, batch: usize) -> kernels::Result<Conv2dGeometry> {
        Conv2dGeometry::new(
            &self.input_shape(batch),
            &self.weight_shape(),
            [1, 1],
            [self.padding; 2],
        )
    }

    /// Weight and bias elements.
    pub const fn parameters(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel + self.out_channels
    }

    /// `(m, n, k)` of one forward product of the conv kernel's im2col lowering at `batch`
    /// on `threads` threads: `C_out x cols` by `C_in*KH*KW`. The kernel gives each thread
    /// a contiguous slice of the batch and unrolls images together until a product has
    /// about 512 columns (`TARGET_COLUMNS` in `kernels/src/conv2d/cpu.rs`); this mirrors
    /// that choice so the GEMM benches time the products the convolutions really issue.
    pub fn forward_gemm_shape(&self, batch: usize, threads: usize) -> (usize, usize, usize) {
        const TARGET_COLUMNS: usize = 512;
        let pixels = self.out_hw() * self.out_hw();
        let per_thread = batch.div_ceil(threads.max(1)).max(1);
        let images = TARGET_COLUMNS.div_ceil(pixels).clamp(1, per_thread);
        (
            self.out_channels,
            images * pixels,
            self.in_channels * self.kernel * self.kernel,
        )
    }
}

/// One convolution block: its convolutions, then a 2x2 stride-2 max pool, batch norm and ReLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    pub name: &'static str,
    pub convs: &'static [ConvSpec],
    pub pool_padding: usize,
}

impl BlockSpec {
    fn last_conv(&self) -> &ConvSpec {
        self.convs.last().expect("every block has a convolution")
    }

    /// Channels after the convolutions (= the pool, batch norm and ReLU channels).
    pub fn channels(&self) -> usize {
        self.last_conv().out_channels
    }

    /// Side of the pool's input.
    pub fn pool_in_hw(&self) -> usize {
        self.last_conv().out_hw()
    }

    /// Side after the pool (= the batch norm's and ReLU's side and the block's output side).
    pub fn out_hw(&self) -> usize {
        (self.pool_in_hw() + 2 * self.pool_padding - 2) / 2 + 1
    }

    /// State-dict names of the pool, batch norm and ReLU (they follow the convolutions).
    pub fn pool_name(&self) -> String {
        format!("{}.{}", self.name, self.convs.len())
    }

    pub fn bn_name(&self) -> String {
        format!("{}.{}", self.name, self.convs.len() + 1)
    }

    pub fn relu_name(&self) -> String {
        format!("{}.{}", self.name, self.convs.len() + 2)
    }

    /// `CxHxW` of the pool's input.
    pub fn pool_label(&self) -> String {
        let (c, h) = (self.channels(), self.pool_in_hw());
        format!("{}_{c}x{h}x{h}", self.pool_name())
    }

    /// `CxHxW` of the batch norm's (and ReLU's) input.
    pub fn bn_label(&self) -> String {
        let (c, h) = (self.channels(), self.out_hw());
        format!("{}_{c}x{h}x{h}", self.bn_name())
    }

    pub fn relu_label(&self) -> String {
        let (c, h) = (self.channels(), self.out_hw());
        format!("{}_{c}x{h}x{h}", self.relu_name())
    }

    pub fn pool_geometry(&self, batch: usize) -> kernels::Result<Pool2dGeometry> {
        let (c, h) = (self.channels(), self.pool_in_hw());
        Pool2dGeometry::new(
            PoolKind::Max,
            &[batch, c, h, h],
            [2, 2],
            [2, 2],
            [self.pool_padding; 2],
        )
    }

    pub fn bn_geometry(&self, batch: usize) -> kernels::Result<BatchNormGeometry> {
        BatchNormGeometry::new(&self.bn_shape(batch), self.channels())
    }

    /// `[N, C, H, W]` after the pool: batch norm's and ReLU's input and output.
    pub fn bn_shape(&self, batch: usize) -> [usize; 4] {
        let h = self.out_hw();
        [batch, self.channels(), h, h]
    }

    /// Convolution parameters plus batch norm's gamma and beta.
    pub fn parameters(&self) -> usize {
        self.convs.iter().map(ConvSpec::parameters).sum::<usize>() + 2 * self.channels()
    }
}

/// One fully connected layer of `layer_fc`; `relu_dropout` when a ReLU and a dropout follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearSpec {
    pub name: &'static str,
    pub in_features: usize,
    pub out_features: usize,
    pub relu_dropout: bool,
}

impl LinearSpec {
    /// e.g. `layer_fc.0_8192x1024`.
    pub fn label(&self) -> String {
        format!("{}_{}x{}", self.name, self.in_features, self.out_features)
    }

    pub fn weight_shape(&self) -> [usize; 2] {
        [self.out_features, self.in_features]
    }

    pub fn geometry(&self, batch: usize) -> kernels::Result<LinearGeometry> {
        LinearGeometry::new(&[batch, self.in_features], &self.weight_shape())
    }

    pub const fn parameters(&self) -> usize {
        self.out_features * self.in_features + self.out_features
    }
}

const fn conv(
    name: &'static str,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    in_hw: usize,
) -> ConvSpec {
    ConvSpec {
        name,
        in_channels,
        out_channels,
        kernel,
        // Every convolution of the notebook, 1x1 included, pads by 1.
        padding: 1,
        in_hw,
    }
}

/// The five convolution blocks of the notebook's network, in order.
pub const BLOCKS: [BlockSpec; 5] = [
    BlockSpec {
        name: "layer1",
        convs: &[
            conv("layer1.0", 3, 64, 3, 32),
            conv("layer1.1", 64, 64, 3, 32),
        ],
        pool_padding: 0,
    },
    BlockSpec {
        name: "layer2",
        convs: &[
            conv("layer2.0", 64, 128, 3, 16),
            conv("layer2.1", 128, 128, 3, 16),
        ],
        pool_padding: 1,
    },
    BlockSpec {
        name: "layer3",
        convs: &[
            conv("layer3.0", 128, 128, 3, 9),
            conv("layer3.1", 128, 128, 3, 9),
            conv("layer3.2", 128, 128, 1, 9),
        ],
        pool_padding: 1,
    },
    BlockSpec {
        name: "layer4",
        convs: &[
            conv("layer4.0", 128, 256, 3, 6),
            conv("layer4.1", 256, 256, 1, 6),
        ],
        pool_padding: 1,
    },
    BlockSpec {
        name: "layer5",
        convs: &[
            conv("layer5.0", 256, 512, 3, 5),
            conv("layer5.1", 512, 512, 1, 5),
        ],
        pool_padding: 1,
    },
];

/// `layer_fc`: 8192 -> 1024 -> 128 -> 10, with ReLU and dropout after the first two.
pub const FC: [LinearSpec; 3] = [
    LinearSpec {
        name: "layer_fc.0",
        in_features: 512 * 4 * 4,
        out_features: 1024,
        relu_dropout: true,
    },
    LinearSpec {
        name: "layer_fc.3",
        in_features: 1024,
        out_features: 128,
        relu_dropout: true,
    },
    LinearSpec {
        name: "layer_fc.6",
        in_features: 128,
        out_features: CLASSES,
        relu_dropout: false,
    },
];

/// Every convolution of the network, in forward order.
pub fn all_convs() -> impl Iterator<Item = &'static ConvSpec> {
    BLOCKS.iter().flat_map(|b| b.convs.iter())
}

/// Trainable elements of the whole network.
pub fn total_parameters() -> usize {
    BLOCKS.iter().map(BlockSpec::parameters).sum::<usize>()
        + FC.iter().map(LinearSpec::parameters).sum::<usize>()
}

/// The lengths of the network's parameter tensors in state-dict order (weight, bias, ...),
/// for timing one optimizer step tensor by tensor as the trainer runs it.
pub fn parameter_lengths() -> Vec<usize> {
    let mut lens = Vec::new();
    for block in &BLOCKS {
        for c in block.convs {
            lens.push(c.parameters() - c.out_channels);
            lens.push(c.out_channels);
        }
        lens.extend([block.channels(); 2]);
    }
    for l in &FC {
        lens.push(l.out_features * l.in_features);
        lens.push(l.out_features);
    }
    lens
}

/// For binaries that time kernels allocating their outputs (`bf16_bench`): keeps freed
/// memory in mimalloc instead of returning it to the OS, so that the multi-megabyte
/// outputs do not come back as fresh pages (one fault per 4 KiB) on every call, as in the
/// trainer (see `step_bench.rs`), and allows 2 MiB pages. Call it first thing in `main`,
/// with mimalloc as the global allocator.
pub fn keep_freed_memory() {
    // Numbers of `mi_option_t` in mimalloc.h, the same in mimalloc 2.x and 3.x.
    const ALLOW_LARGE_OS_PAGES: i32 = 6;
    const PURGE_DELAY: i32 = 15;
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(ALLOW_LARGE_OS_PAGES, 1);
    }
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

/// `len` class labels in `0..CLASSES`.
pub fn random_labels(len: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| (rng.next_u64() % CLASSES as u64) as u32)
        .collect()
}

/// A CIFAR-10-shaped batch of random images (already "normalised" to `[-1, 1)`) and labels.
pub fn random_batch(batch: usize, seed: u64) -> models::data::Batch {
    models::data::Batch {
        images: random_vec(batch * IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE, seed),
        labels: random_labels(batch, seed ^ 0x5eed),
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
    fn table_matches_the_notebook_network() {
        // PyTorch's count for the notebook's module (models::Net documents the same number).
        assert_eq!(total_parameters(), 10_899_914);
        assert_eq!(parameter_lengths().iter().sum::<usize>(), 10_899_914);
        // Each block feeds the next, and the last one flattens to fc's 8192 inputs.
        let sides: Vec<usize> = BLOCKS.iter().map(BlockSpec::out_hw).collect();
        assert_eq!(sides, [16, 9, 6, 5, 4]);
        for pair in BLOCKS.windows(2) {
            let next = &pair[1].convs[0];
            assert_eq!(next.in_channels, pair[0].channels());
            assert_eq!(next.in_hw, pair[0].out_hw());
        }
        for block in &BLOCKS {
            for pair in block.convs.windows(2) {
                assert_eq!(pair[1].in_channels, pair[0].out_channels);
                assert_eq!(pair[1].in_hw, pair[0].out_hw());
            }
        }
        let last = &BLOCKS[4];
        assert_eq!(
            last.channels() * last.out_hw() * last.out_hw(),
            FC[0].in_features
        );
        assert_eq!(BLOCKS[2].convs[2].label(), "layer3.2_1x1_128x9x9");
        assert_eq!(BLOCKS[2].pool_label(), "layer3.3_128x11x11");
    }

    #[test]
    fn geometries_agree_with_the_kernels() {
        for block in &BLOCKS {
            for c in block.convs {
                let g = c.geometry(2).unwrap();
                assert_eq!((g.out_h, g.out_w), (c.out_hw(), c.out_hw()));
            }
            let g = block.pool_geometry(2).unwrap();
            assert_eq!(g.out_h, block.out_hw());
            block.bn_geometry(2).unwrap();
        }
    }

    #[test]
    fn random_values_cover_the_interval() {
        let v = random_vec(10_000, 7);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.99) && v.iter().any(|&x| x > 0.99));
        assert!(random_labels(1000, 3).iter().all(|&l| l < 10));
    }
}
