//! airbench's training loader: the whole split resident in memory, augmented once, then
//! re-cropped, mirrored and reshuffled every epoch.
//!
//! What it does, as airbench's `CifarLoader` (scripts/airbench94_pytorch.py):
//! - once: flip each image left-right with probability 1/2, then reflect-pad it by
//!   `translate` pixels on every side (PyTorch's `F.pad(..., "reflect")`: the edge pixel is
//!   not repeated, pixel -1 is pixel 1);
//! - every epoch: a random `32 x 32` window per image (each axis shifted by
//!   `-translate..=translate` from the centre, uniformly), the whole set mirrored on odd
//!   epochs (airbench's "alternating flip"), a fresh shuffle, and batches of `batch_size`
//!   with the last partial batch dropped.
//!
//! The images are kept as padded bytes (3 x 36 x 36 per image for `translate` 2: 194 MB for
//! CIFAR-10's 50,000) and normalised while a batch is cut, with the same f32 arithmetic as
//! normalising first (`(v / 255 - mean) / std` per element), so batches are bit for bit what
//! the port computes from its normalised float copies, at a quarter of their memory.
//!
//! Determinism: the one-time flips are drawn from `seed` alone; an epoch's windows and order
//! from (`seed`, epoch) alone. An epoch can therefore be rebuilt anywhere (a resumed run
//! asks for the epoch it stopped in), and the same seed gives the same batches on every
//! machine (ChaCha8 streams, as the other loader).

use rand::seq::SliceRandom;
use rand::RngExt;

use super::cifar10::{Split, CHANNELS, IMAGE_SIDE};
use super::error::DataError;
use super::loader::{rng_for, Batch, Normalization};

/// Random streams, distinct from the other loader's.
const FLIP_STREAM: u64 = 11;
const CROP_STREAM: u64 = 12;
const SHUFFLE_STREAM: u64 = 13;

/// How [`ResidentLoader`] augments and batches; the default is airbench94's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidentConfig {
    pub batch_size: usize,
    pub seed: u64,
    pub normalization: Normalization,
    /// Mirror half the images once, and the whole set on odd epochs.
    pub flip: bool,
    /// Reflect-pad by this much once, then crop a random window every epoch; 0: no crops.
    pub translate: usize,
}

impl Default for ResidentConfig {
    fn default() -> Self {
        ResidentConfig {
            batch_size: 1024,
            seed: 0,
            normalization: Normalization::AIRBENCH,
            flip: true,
            translate: 2,
        }
    }
}

/// A training split held in memory, flipped and padded once; see the module documentation.
pub struct ResidentLoader {
    /// `len x 3 x side x side` bytes, `side = 32 + 2 * translate`.
    padded: Vec<u8>,
    labels: Vec<u32>,
    side: usize,
    table: [[f32; 256]; 3],
    config: ResidentConfig,
}

/// `i` reflected into `0..len` the way PyTorch's reflect padding does (no edge repeat);
/// valid for `-len < i < 2 * len - 1`.
pub(crate) fn reflect(i: isize, len: usize) -> usize {
    let last = len as isize - 1;
    let i = if i < 0 { -i } else { i };
    (if i > last { 2 * last - i } else { i }) as usize
}

impl ResidentLoader {
    /// Flips (when on) and pads every image of `split` once.
    pub fn new(split: &Split, config: ResidentConfig) -> Result<ResidentLoader, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size must be at least 1".into(),
            ));
        }
        if config.translate >= IMAGE_SIDE {
            return Err(DataError::InvalidConfig(format!(
                "translate {} must be below the image side {IMAGE_SIDE} (reflect padding)",
                config.translate
            )));
        }
        if split.len() < config.batch_size {
            return Err(DataError::InvalidConfig(format!(
                "{} images make no batch of {}: the last partial batch is dropped",
                split.len(),
                config.batch_size
            )));
        }
        let n = &config.normalization;
        if n.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || n.mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::InvalidConfig(format!(
                "normalization needs finite means and positive finite stds, got mean {:?}, std {:?}",
                n.mean, n.std
            )));
        }
        let pad = config.translate;
        let side = IMAGE_SIDE + 2 * pad;
        let mut flips = rng_for(config.seed, FLIP_STREAM, 0, 0);
        let mut padded = vec![0u8; split.len() * CHANNELS * side * side];
        for (i, out) in padded.chunks_exact_mut(CHANNELS * side * side).enumerate() {
            let flip = config.flip && flips.random_bool(0.5);
            let image = split.image(i);
            for c in 0..CHANNELS {
                let plane = &image[c * IMAGE_SIDE * IMAGE_SIDE..(c + 1) * IMAGE_SIDE * IMAGE_SIDE];
                let out_plane = &mut out[c * side * side..(c + 1) * side * side];
                for (y, out_row) in out_plane.chunks_exact_mut(side).enumerate() {
                    let sy = reflect(y as isize - pad as isize, IMAGE_SIDE);
                    let row = &plane[sy * IMAGE_SIDE..(sy + 1) * IMAGE_SIDE];
                    for (x, o) in out_row.iter_mut().enumerate() {
                        let sx = reflect(x as isize - pad as isize, IMAGE_SIDE);
                        *o = row[if flip { IMAGE_SIDE - 1 - sx } else { sx }];
                    }
                }
            }
        }
        Ok(ResidentLoader {
            padded,
            labels: split.labels.iter().map(|&l| l as u32).collect(),
            side,
            table: config.normalization.table(),
            config,
        })
    }

    pub fn config(&self) -> &ResidentConfig {
        &self.config
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Full batches per epoch (the partial one is dropped).
    pub fn batches_per_epoch(&self) -> usize {
        self.len() / self.config.batch_size
    }

    /// Epoch `epoch`'s windows, mirroring and order.
    pub fn epoch(&self, epoch: u64) -> Epoch<'_> {
        let t = self.config.translate;
        let mut crops = rng_for(self.config.seed, CROP_STREAM, epoch, 0);
        let offsets = (0..self.len())
            .map(|_| {
                if t == 0 {
                    (0, 0)
                } else {
                    (
                        crops.random_range(0..=2 * t) as u8,
                        crops.random_range(0..=2 * t) as u8,
                    )
                }
            })
            .collect();
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.shuffle(&mut rng_for(self.config.seed, SHUFFLE_STREAM, epoch, 0));
        Epoch {
            loader: self,
            offsets,
            mirrored: self.config.flip && epoch % 2 == 1,
            order,
        }
    }
}

/// One epoch of a [`ResidentLoader`]: [`Epoch::batch`] cuts any of its batches.
pub struct Epoch<'a> {
    loader: &'a ResidentLoader,
    /// Per image, the window's top-left corner in the padded image (`0..=2 * translate`
    /// per axis; `translate, translate` is the centre).
    offsets: Vec<(u8, u8)>,
    mirrored: bool,
    order: Vec<u32>,
}

impl Epoch<'_> {
    /// Number of (full) batches.
    pub fn len(&self) -> usize {
        self.loader.batches_per_epoch()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this epoch mirrors the whole set.
    pub fn mirrored(&self) -> bool {
        self.mirrored
    }

    /// The dataset indices in this epoch's order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Batch `index` (`0..len()`): normalised NCHW f32 images and their labels.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn batch(&self, index: usize) -> Batch {
        assert!(index < self.len(), "batch {index} of {}", self.len());
        let loader = self.loader;
        let batch_size = loader.config.batch_size;
        let ids = &self.order[index * batch_size..(index + 1) * batch_size];
        let side = loader.side;
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let mut images = vec![0.0f32; ids.len() * CHANNELS * plane];
        for (&id, out) in ids.iter().zip(images.chunks_exact_mut(CHANNELS * plane)) {
            let id = id as usize;
            let (oy, ox) = self.offsets[id];
            let padded =
                &loader.padded[id * CHANNELS * side * side..(id + 1) * CHANNELS * side * side];
            for c in 0..CHANNELS {
                let table = &loader.table[c];
                let src = &padded[c * side * side..(c + 1) * side * side];
                let dst = &mut out[c * plane..(c + 1) * plane];
                for (y, dst_row) in dst.chunks_exact_mut(IMAGE_SIDE).enumerate() {
                    let start = (y + oy as usize) * side + ox as usize;
                    let src_row = &src[start..start + IMAGE_SIDE];
                    if self.mirrored {
                        for (d, &v) in dst_row.iter_mut().zip(src_row.iter().rev()) {
                            *d = table[v as usize];
                        }
                    } else {
                        for (d, &v) in dst_row.iter_mut().zip(src_row) {
                            *d = table[v as usize];
                        }
                    }
                }
            }
        }
        Batch {
            images,
            labels: ids.iter().map(|&id| loader.labels[id as usize]).collect(),
        }
    }

    /// The batches in order.
    pub fn batches(&self) -> impl Iterator<Item = Batch> + '_ {
        (0..self.len()).map(|i| self.batch(i))
    }
}

/// The first `count` images of `split`, normalised, NCHW f32 (no augmentation): what the
/// whitening initialisation reads.
pub fn normalized_images(split: &Split, count: usize, normalization: &Normalization) -> Vec<f32> {
    let count = count.min(split.len());
    let table = normalization.table();
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    split.images[..count * CHANNELS * plane]
        .chunks_exact(plane)
        .enumerate()
        .flat_map(|(p, pixels)| {
            let table = &table[p % CHANNELS];
            pixels.iter().map(move |&v| table[v as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_BYTES;

    /// `n` images whose pixel (c, y, x) of image i is `(7 * i + 50 * c + 3 * y + x) % 256`,
    /// labelled `i % 10`.
    fn split(n: usize) -> Split {
        let mut images = Vec::with_capacity(n * IMAGE_BYTES);
        for i in 0..n {
            for c in 0..CHANNELS {
                for y in 0..IMAGE_SIDE {
                    for x in 0..IMAGE_SIDE {
                        images.push(((7 * i + 50 * c + 3 * y + x) % 256) as u8);
                    }
                }
            }
        }
        Split {
            images,
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        }
    }

    fn pixel(split: &Split, i: usize, c: usize, y: usize, x: usize) -> u8 {
        split.image(i)[c * IMAGE_SIDE * IMAGE_SIDE + y * IMAGE_SIDE + x]
    }

    #[test]
    fn reflect_is_pytorchs_reflect_padding() {
        // F.pad(torch.arange(4.), (2, 2), "reflect") = [2, 1, 0, 1, 2, 3, 2, 1].
        let padded: Vec<usize> = (-2..6).map(|i| reflect(i, 4)).collect();
        assert_eq!(padded, [2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn each_image_is_its_padded_window_mirrored_as_drawn() {
        let data = split(6);
        let config = ResidentConfig {
            batch_size: 3,
            seed: 5,
            ..ResidentConfig::default()
        };
        let loader = ResidentLoader::new(&data, config).unwrap();
        // Which images the one-time flip mirrored: read back from the padded copy's centre.
        let side = loader.side;
        let flipped: Vec<bool> = (0..6)
            .map(|i| loader.padded[i * 3 * side * side + 2 * side + 2] != pixel(&data, i, 0, 0, 0))
            .collect();
        for epoch in 0..4u64 {
            let plan = loader.epoch(epoch);
            assert_eq!(plan.mirrored(), epoch % 2 == 1);
            for b in 0..plan.len() {
                let batch = plan.batch(b);
                for (k, &id) in plan.order()[b * 3..(b + 1) * 3].iter().enumerate() {
                    let id = id as usize;
                    assert_eq!(batch.labels[k], (id % 10) as u32);
                    let (oy, ox) = plan.offsets[id];
                    for c in 0..3 {
                        for y in 0..32 {
                            for x in 0..32 {
                                // Crop the padded image at (oy, ox), mirror on odd epochs...
                                let xc = if plan.mirrored() { 31 - x } else { x };
                                // ...where padded (py, px) is the original reflected, then
                                // mirrored once if this image was drawn for it.
                                let sy = reflect(y as isize + oy as isize - 2, 32);
                                let sx = reflect(xc as isize + ox as isize - 2, 32);
                                let sx = if flipped[id] { 31 - sx } else { sx };
                                let got = batch.images[k * IMAGE_BYTES + c * 1024 + y * 32 + x];
                                assert_eq!(
                                    got,
                                    Normalization::AIRBENCH.apply(c, pixel(&data, id, c, sy, sx)),
                                    "epoch {epoch} image {id} ({c}, {y}, {x})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn without_augmentation_batches_are_the_normalised_images_in_shuffled_order() {
        let data = split(10);
        let config = ResidentConfig {
            batch_size: 4,
            flip: false,
            translate: 0,
            ..ResidentConfig::default()
        };
        let loader = ResidentLoader::new(&data, config).unwrap();
        // 10 images in batches of 4: the partial batch of 2 is dropped.
        assert_eq!(loader.batches_per_epoch(), 2);
        let plan = loader.epoch(0);
        let mut order = plan.order().to_vec();
        let normalised = normalized_images(&data, 10, &Normalization::AIRBENCH);
        for b in 0..2 {
            let batch = plan.batch(b);
            for (k, &id) in plan.order()[b * 4..(b + 1) * 4].iter().enumerate() {
                let id = id as usize;
                assert_eq!(
                    batch.images[k * IMAGE_BYTES..(k + 1) * IMAGE_BYTES],
                    normalised[id * IMAGE_BYTES..(id + 1) * IMAGE_BYTES]
                );
                // Normalised as torchvision computes it.
                assert_eq!(
                    batch.images[k * IMAGE_BYTES + 1024],
                    Normalization::AIRBENCH.apply(1, pixel(&data, id, 1, 0, 0))
                );
            }
        }
        order.sort();
        assert_eq!(order, (0..10).collect::<Vec<u32>>(), "a permutation");
    }

    #[test]
    fn the_same_seed_gives_the_same_batches_and_epochs_differ() {
        let data = split(40);
        let config = ResidentConfig {
            batch_size: 8,
            seed: 3,
            ..ResidentConfig::default()
        };
        let a = ResidentLoader::new(&data, config).unwrap();
        let b = ResidentLoader::new(&data, config).unwrap();
        assert_eq!(a.padded, b.padded);
        for epoch in 0..3 {
            let (pa, pb) = (a.epoch(epoch), b.epoch(epoch));
            assert_eq!(
                pa.batches().collect::<Vec<_>>(),
                pb.batches().collect::<Vec<_>>()
            );
        }
        assert_ne!(a.epoch(0).order(), a.epoch(2).order());
        assert_ne!(a.epoch(0).offsets, a.epoch(2).offsets);
        let other = ResidentLoader::new(&data, ResidentConfig { seed: 4, ..config }).unwrap();
        assert_ne!(other.epoch(0).order(), a.epoch(0).order());
    }

    #[test]
    fn draws_cover_every_window_and_flip_about_half() {
        let data = split(2000);
        let loader = ResidentLoader::new(&data, ResidentConfig::default()).unwrap();
        let plan = loader.epoch(0);
        let windows: std::collections::HashSet<(u8, u8)> = plan.offsets.iter().copied().collect();
        assert_eq!(windows.len(), 25, "every shift in -2..=2 squared");
        let side = loader.side;
        let flipped = (0..2000)
            .filter(|&i| {
                loader.padded[i * 3 * side * side + 2 * side + 2] != pixel(&data, i, 0, 0, 0)
            })
            .count();
        assert!((900..1100).contains(&flipped), "{flipped} of 2000 flipped");
    }

    #[test]
    fn bad_configurations_are_errors() {
        let data = split(4);
        let config = ResidentConfig::default();
        let err = |c| ResidentLoader::new(&data, c).err().unwrap().to_string();
        assert!(err(ResidentConfig {
            batch_size: 0,
            ..config
        })
        .contains("batch_size"));
        assert!(err(ResidentConfig {
            batch_size: 5,
            ..config
        })
        .contains("no batch of 5"));
        assert!(err(ResidentConfig {
            batch_size: 2,
            translate: 32,
            ..config
        })
        .contains("translate"));
    }
}
