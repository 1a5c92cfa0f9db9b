//! Mini-batches for training and evaluation, like the notebook's PyTorch `DataLoader`
//! with `ToTensor()` then `Normalize(mean, std)`.
//!
//! Determinism: an epoch's order is a shuffle seeded from (seed, epoch), and each
//! image's augmentation draws are seeded from (seed, epoch, position in the epoch). A
//! batch's content therefore depends only on (seed, epoch, batch index), and batches are
//! handed out in index order however the worker threads are scheduled.
//!
//! Threads: worker `w` of `W` prepares batches `w, w + W, w + 2W, ...` and sends them on
//! its own bounded channel; the iterator receives batch `i` from worker `i % W`. Dropping
//! the iterator drops the receivers, which makes every worker's next send fail and
//! return, and then joins them.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{crop_flip, Augmentation};
use super::cifar10::{Split, CHANNELS, IMAGE_BYTES, IMAGE_SIDE};
use super::error::DataError;

/// Per-channel `(x - mean) / std` applied to pixels scaled to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The notebook's `Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`: maps `[0, 1]` to `[-1, 1]`.
    pub const NOTEBOOK: Normalization = Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    /// The training set's own channel statistics (see the data README).
    pub const CIFAR10: Normalization = Normalization {
        mean: [0.4913, 0.4821, 0.4465],
        std: [0.2452, 0.2428, 0.2606],
    };
    /// `ToTensor()` alone: pixels scaled to `[0, 1]`.
    pub const IDENTITY: Normalization = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// The value a pixel byte `v` of channel `c` becomes, computed as
    /// torchvision does: `(v / 255 - mean) / std` in f32.
    pub fn apply(&self, c: usize, v: u8) -> f32 {
        (v as f32 / 255.0 - self.mean[c]) / self.std[c]
    }

    /// All 256 values per channel, so batching is one table lookup per pixel.
    fn table(&self) -> [[f32; 256]; 3] {
        let mut table = [[0.0; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, value) in row.iter_mut().enumerate() {
                *value = self.apply(c, v as u8);
            }
        }
        table
    }
}

/// One mini-batch, ready to become tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `len() × 3 × 32 × 32` normalised values, NCHW.
    pub images: Vec<f32>,
    /// One class index (0–9) per image.
    pub labels: Vec<u32>,
}

impl Batch {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How [`epoch_batches`] cuts, orders, transforms and prefetches a split.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Reshuffle every epoch (training) or keep file order (evaluation).
    pub shuffle: bool,
    /// Seeds the shuffles and the augmentation draws.
    pub seed: u64,
    pub normalization: Normalization,
    /// Off by default.
    pub augmentation: Augmentation,
    /// Background threads preparing batches; 0 prepares them on the caller's thread.
    pub workers: usize,
    /// How many prepared batches may wait in the channels (at least one per worker).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// The notebook's training loader: batches of 32, shuffled, normalised with 0.5s,
    /// no augmentation; two workers keeping four batches ready.
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            normalization: Normalization::NOTEBOOK,
            augmentation: Augmentation::NONE,
            workers: 2,
            prefetch: 4,
        }
    }
}

impl LoaderConfig {
    /// The notebook's evaluation loader: file order, no augmentation.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            ..LoaderConfig::default()
        }
    }

    /// Number of batches an epoch over `len` images has (the partial one included).
    pub fn num_batches(&self, len: usize) -> usize {
        len.div_ceil(self.batch_size.max(1))
    }

    /// Checks what [`epoch_batches`] would otherwise panic on: a zero batch size, and
    /// normalisation constants that would produce infinities or NaNs.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size must be at least 1".into(),
            ));
        }
        let n = &self.normalization;
        if n.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || n.mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::InvalidConfig(format!(
                "normalization needs finite means and positive finite stds, got mean {:?}, std {:?}",
                n.mean, n.std
            )));
        }
        Ok(())
    }
}

/// The batches of one epoch over `split`, in order: reshuffled every epoch from
/// (seed, epoch) when `config.shuffle` — the same seed and epoch give the same order on
/// any machine — and the last partial batch kept.
///
/// # Panics
/// If `config.validate()` fails; call it first to get the error as a value.
pub fn epoch_batches(split: Arc<Split>, config: &LoaderConfig, epoch: u64) -> BatchIter {
    epoch_batches_from(split, config, epoch, 0)
}

/// [`epoch_batches`] from batch `first` on (a resumed epoch): the same batches as the
/// whole epoch's from that index, without preparing the ones before it.
///
/// # Panics
/// If `config.validate()` fails; call it first to get the error as a value.
pub fn epoch_batches_from(
    split: Arc<Split>,
    config: &LoaderConfig,
    epoch: u64,
    first: usize,
) -> BatchIter {
    if let Err(e) = config.validate() {
        panic!("epoch_batches: {e}");
    }
    let plan = Arc::new(EpochPlan::new(split, config, epoch));
    let total = config.num_batches(plan.order.len());
    let first = first.min(total);
    let workers = config.workers.min(total - first);
    let source = if workers == 0 {
        Source::Inline(plan)
    } else {
        spawn_workers(plan, workers, config.prefetch, first, total)
    };
    BatchIter {
        first,
        next: first,
        total,
        source,
    }
}

/// Iterator over one epoch's batches; see [`epoch_batches`].
pub struct BatchIter {
    first: usize,
    next: usize,
    total: usize,
    source: Source,
}

enum Source {
    Inline(Arc<EpochPlan>),
    Threads {
        receivers: Vec<Receiver<Batch>>,
        handles: Vec<JoinHandle<()>>,
    },
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let batch = match &mut self.source {
            Source::Inline(plan) => plan.batch(index),
            Source::Threads { receivers, handles } => {
                let w = (index - self.first) % receivers.len();
                match receivers[w].recv() {
                    Ok(batch) => batch,
                    // A worker only hangs up early by panicking: surface its panic here.
                    Err(_) => match handles.remove(w).join() {
                        Err(payload) => std::panic::resume_unwind(payload),
                        Ok(()) => panic!("loader worker {w} stopped before batch {index}"),
                    },
                }
            }
        };
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        if let Source::Threads { receivers, handles } = &mut self.source {
            // Hanging up first makes each worker's next `send` fail, so the joins return
            // after at most one batch of work each.
            receivers.clear();
            for handle in handles.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

fn spawn_workers(
    plan: Arc<EpochPlan>,
    workers: usize,
    prefetch: usize,
    first: usize,
    total: usize,
) -> Source {
    let capacity = prefetch.div_ceil(workers).max(1);
    let mut receivers = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = sync_channel(capacity);
        let plan_w = Arc::clone(&plan);
        let spawned = std::thread::Builder::new()
            .name(format!("cifar10-loader-{w}"))
            .spawn(move || {
                for index in (first + w..total).step_by(workers) {
                    if tx.send(plan_w.batch(index)).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                receivers.push(rx);
                handles.push(handle);
            }
            // No threads to be had: prepare batches on the caller's thread instead.
            Err(_) => {
                drop(receivers);
                for handle in handles {
                    let _ = handle.join();
                }
                return Source::Inline(plan);
            }
        }
    }
    Source::Threads { receivers, handles }
}

/// Everything needed to build any batch of one epoch, shared by the workers.
struct EpochPlan {
    split: Arc<Split>,
    /// Split indices in epoch order.
    order: Vec<u32>,
    batch_size: usize,
    table: [[f32; 256]; 3],
    augmentation: Augmentation,
    seed: u64,
    epoch: u64,
}

/// Distinct streams so the shuffle and the augmentation never share random numbers.
const SHUFFLE_STREAM: u64 = 1;
const AUGMENT_STREAM: u64 = 2;

impl EpochPlan {
    fn new(split: Arc<Split>, config: &LoaderConfig, epoch: u64) -> Self {
        let mut order: Vec<u32> = (0..split.len() as u32).collect();
        if config.shuffle {
            order.shuffle(&mut rng_for(config.seed, SHUFFLE_STREAM, epoch, 0));
        }
        EpochPlan {
            split,
            order,
            batch_size: config.batch_size,
            table: config.normalization.table(),
            augmentation: config.augmentation,
            seed: config.seed,
            epoch,
        }
    }

    fn batch(&self, index: usize) -> Batch {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let ids = &self.order[start..end];
        let mut images = vec![0.0f32; ids.len() * IMAGE_BYTES];
        let mut labels = Vec::with_capacity(ids.len());
        let mut scratch = [0u8; IMAGE_BYTES];
        for (k, (&id, out)) in ids
            .iter()
            .zip(images.chunks_exact_mut(IMAGE_BYTES))
            .enumerate()
        {
            let id = id as usize;
            labels.push(self.split.labels[id] as u32);
            let mut pixels = self.split.image(id);
            if self.augmentation.is_active() {
                let position = (start + k) as u64;
                let mut rng = rng_for(self.seed, AUGMENT_STREAM, self.epoch, position);
                let draw = self.augmentation.draw(&mut rng);
                crop_flip(pixels, CHANNELS, IMAGE_SIDE, IMAGE_SIDE, draw, &mut scratch);
                pixels = &scratch;
            }
            let plane = IMAGE_SIDE * IMAGE_SIDE;
            for (c, (dst, src)) in out
                .chunks_exact_mut(plane)
                .zip(pixels.chunks_exact(plane))
                .enumerate()
            {
                let table = &self.table[c];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = table[v as usize];
                }
            }
        }
        Batch { images, labels }
    }
}

/// A generator determined by (seed, stream, epoch, position) alone. ChaCha8 and
/// `seed_from_u64` are specified bit for bit, so the stream is the same on any machine.
fn rng_for(seed: u64, stream: u64, epoch: u64, position: u64) -> ChaCha8Rng {
    let mut h = splitmix64(seed);
    for word in [stream, epoch, position] {
        h = splitmix64(h ^ word);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// SplitMix64's output function: a bijective mixer, so distinct inputs stay distinct.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
