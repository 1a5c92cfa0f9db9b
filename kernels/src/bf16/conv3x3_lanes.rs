//! 3x3 convolutions (stride 1, padding 1) of small images with the images in the lanes:
//! the forward, and the input gradient (a forward convolution of `dL/dy`), of layers
//! whose images have at most [`MAX_PIXELS`] pixels (airbench94's 15x15, 7x7 and 3x3
//! layers).
//!
//! The flat layout (`conv3x3.rs`) puts an image's pixels in the lanes, with a zero row and
//! column around each image so that every tap is one shift: an `h x w` image takes
//! `(h + 1)(w + 1)` positions, and every position multiplies all nine taps, the border's
//! included. At 7x7 that is 64 positions x 9 taps of products for the 49 x 7.4 that are
//! not zero (1.6x the work), at 3x3 16 x 9 for 9 x 5.4 (2.9x).
//!
//! Here a block's 32 columns are 32 images at one pixel (two halves of 16), and its rows
//! 32 output channels: all 32 lanes read the same pixel of the image, so a tap that would
//! read the padding reads it for every lane, and is left out of that pixel's list of steps.
//! Nothing but the products that can be nonzero is computed. The images go into the
//! layout `[channel pair][pixel][32 images]` (one 128-byte row of B per pair and pixel),
//! 32 images at a time; a chunk's results are copied to `[image][channel][pixel]`.
//!
//! The sums are those of the flat layout, in the same order (per part of
//! [`DEPTH_PART`] input channel blocks, taps then blocks), less the terms that are
//! products with the padding's zeros.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::flat::stride;
use super::microkernel::{self, Block, Init, Step, ADJACENT, BLOCK, DEPTH};
use super::pack::{Line, BLOCK_BYTES};
use super::source::{Packable, Values};
use super::stored::Stored;
use super::{groups, split_groups, Cpu};

/// Images per block: the two halves of 16 lanes.
const IMAGES: usize = 32;

/// Largest images (pixels) this path takes. Measured against the flat layout on
/// airbench94's step at batch 1,024 (`profile`, forward ms): 7x7 200 -> 125-154, 3x3
/// 54 -> 17-19, 15x15 (64 -> 256) 202 -> 165; but 31x31 (24 -> 64) 116 -> 141, and the
/// notebook's 16x16 layers at batch 128 13.3 -> 14.2 and 24.6 -> 27.6 (rows of 16 pixels
/// are stored in place by the flat path, and waste no positions across the row).
pub(super) const MAX_PIXELS: usize = 225;

/// Fewest images this path takes: a block always holds 32, so with fewer per thread the
/// lanes go empty.
pub(super) const MIN_BATCH: usize = 64;

/// Input channel blocks per part of a block's depth, as in `conv3x3.rs`: the part's
/// weights (9 taps x 2 blocks, 36 KiB) stay in the L1 cache while the pixels pass.
const DEPTH_PART: usize = 2;

/// Whether this path takes a 3x3, stride-1, padding-1 convolution of `batch` images of
/// `pixels` pixels.
pub(super) fn applies(batch: usize, pixels: usize) -> bool {
    pixels <= MAX_PIXELS && batch >= MIN_BATCH
}

/// Packed 3x3 weights and what goes with them (`conv3x3::pack_taps`'s layout).
pub(super) struct Taps<'a> {
    /// `[out block][tap][in block]` blocks of 32 lines.
    pub weights: &'a [Line],
    /// Blocks of 32 input channels (the padded depth of each tap).
    pub in_blocks: usize,
    pub out_channels: usize,
    /// 32 rows of 16 copies of each output channel's bias, per block of 32 channels.
    pub bias_rows: Option<&'a [f32]>,
}

/// The convolution of `x` (`batch x in_channels x h x w`) with `taps`, stored as `O`
/// (`batch x out_channels x h x w`).
pub(super) fn convolve<O: Stored>(
    cpu: Cpu,
    x: Values,
    in_channels: usize,
    [batch, h, w]: [usize; 3],
    taps: &Taps,
) -> Vec<O> {
    let (hw, c_out) = (h * w, taps.out_channels);
    assert!(taps.in_blocks * DEPTH >= in_channels);
    assert!(taps.weights.len() >= c_out.div_ceil(BLOCK) * 9 * taps.in_blocks * BLOCK);
    assert_eq!(x.len(), batch * in_channels * hw);
    let parts = steps(taps.in_blocks, h, w);
    let len = batch * c_out * hw;
    let mut y: Vec<O> = Vec::with_capacity(len);
    let groups = groups(batch);
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], c_out * hw, &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let session = cpu.session();
        let (mut bits, mut pairs, mut results) = (Vec::new(), Vec::new(), Vec::new());
        for first in range.clone().step_by(IMAGES) {
            let images = IMAGES.min(range.end - first);
            let x = x.slice(first * in_channels * hw..(first + images) * in_channels * hw);
            // SAFETY: the Cpu proves AVX512-BF16.
            unsafe { as_bits(x, &mut bits) };
            interleave(
                &bits,
                images,
                in_channels,
                hw,
                taps.in_blocks * 16,
                &mut pairs,
            );
            let out = &mut out[(first - range.start) * c_out * hw..][..images * c_out * hw];
            let results_stride = stride(hw * IMAGES, 4);
            results.resize(BLOCK * results_stride, 0.0f32);
            for co_block in 0..c_out.div_ceil(BLOCK) {
                for (part, per_pixel) in parts.iter().enumerate() {
                    let init = match (part, taps.bias_rows) {
                        (0, None) => Init::Zero,
                        (0, Some(rows)) => Init::Rows(rows[co_block * 512..].as_ptr()),
                        _ => Init::Accumulate,
                    };
                    for (q, steps) in per_pixel.iter().enumerate() {
                        let block = Block {
                            a: taps.weights[co_block * 9 * taps.in_blocks * BLOCK..]
                                .as_ptr()
                                .cast(),
                            a_stride: 64,
                            b: pairs.as_ptr().cast(),
                            b_stride: hw * IMAGES * 4,
                            b_half: ADJACENT,
                            c: results[q * IMAGES..].as_mut_ptr(),
                            c_stride: results_stride * 4,
                            c_half: ADJACENT,
                        };
                        // SAFETY: A: block (co_block, tap, in block) of `weights` (asserted
                        // size). B: pair rows cb*16 + 0..16 < in_blocks*16 at a pixel of the
                        // image, 32 images each, inside `pairs` (in_blocks*16 x hw x 32
                        // words). C: columns 32q..32q + 32 of the 32 rows of `results`,
                        // results_stride >= 32 hw apart. Accumulate reads what part 0 wrote
                        // there; Init rows: 32 x 16 f32 of the bias rows. Session on this
                        // thread.
                        unsafe { microkernel::run(&session, &block, steps, init) };
                    }
                }
                let channels = co_block * BLOCK..(co_block * BLOCK + BLOCK).min(c_out);
                scatter(&results, results_stride, channels, images, c_out, hw, out);
            }
        }
    });
    // SAFETY: every thread's chunks write their images' whole output (`scatter`, for
    // every channel block); the chunks cover each group, the groups the batch.
    unsafe { y.set_len(len) };
    y
}

/// Per part of the depth, per output pixel, the steps of the taps that read a pixel of
/// the image (not the padding): taps in order, then the part's input channel blocks.
fn steps(in_blocks: usize, h: usize, w: usize) -> Vec<Vec<Vec<Step>>> {
    let hw = h * w;
    (0..in_blocks)
        .step_by(DEPTH_PART)
        .map(|cb0| {
            let blocks = cb0..(cb0 + DEPTH_PART).min(in_blocks);
            (0..hw)
                .map(|q| {
                    let (y, x) = (q / w, q % w);
                    (0..9)
                        .filter_map(|t| {
                            let sy = (y + t / 3).checked_sub(1).filter(|&sy| sy < h)?;
                            let sx = (x + t % 3).checked_sub(1).filter(|&sx| sx < w)?;
                            Some((t, sy * w + sx))
                        })
                        .flat_map(|(t, source)| {
                            blocks.clone().map(move |cb| Step {
                                a: ((t * in_blocks + cb) * BLOCK_BYTES) as isize,
                                b: ((cb * 16 * hw + source) * IMAGES * 4) as isize,
                            })
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The values of `x` as bf16 bits, in `bits`: f32 rounded to nearest even as the other
/// paths round them (`Packable`), bf16 as they are.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn as_bits(x: Values, bits: &mut Vec<u16>) {
    match x {
        Values::F32(v) => rounded(v, bits),
        Values::Bf16(v) => rounded(v, bits),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn rounded<T: Packable>(values: &[T], bits: &mut Vec<u16>) {
    bits.resize(values.len(), 0);
    for (src, dst) in values.chunks(32).zip(bits.chunks_mut(32)) {
        // SAFETY: AVX512-BF16 is enabled here; the mask writes the chunk's `src.len()`
        // halfwords of `dst`, which has as many.
        unsafe {
            let v = T::load32(src, src.len());
            std::arch::x86_64::_mm512_mask_storeu_epi16(
                dst.as_mut_ptr().cast(),
                super::lanes::first32(src.len()),
                v,
            );
        }
    }
}

/// `images` images (`[image][channel][pixel]` bf16 bits, `channels` channels) as
/// `pairs[(p * hw + q) * 32 + i]` = channels `2p` (low half) and `2p + 1` of image `i`
/// at pixel `q`, for `pair_rows` channel pairs; channels and images past the input zero.
fn interleave(
    bits: &[u16],
    images: usize,
    channels: usize,
    hw: usize,
    pair_rows: usize,
    pairs: &mut Vec<u32>,
) {
    pairs.clear();
    pairs.resize(pair_rows * hw * IMAGES, 0);
    for (p, plane) in pairs.chunks_exact_mut(hw * IMAGES).enumerate() {
        for (i, image) in bits.chunks_exact(channels * hw).take(images).enumerate() {
            let channel = |c: usize| (c < channels).then(|| &image[c * hw..][..hw]);
            let (Some(even), odd) = (channel(2 * p), channel(2 * p + 1)) else {
                break;
            };
            for q in 0..hw {
                let high = odd.map_or(0, |odd| u32::from(odd[q]) << 16);
                plane[q * IMAGES + i] = u32::from(even[q]) | high;
            }
        }
    }
}

/// Rows `channels` of a chunk's results (`[channel][pixel][32 images]`, rows `stride`
/// apart) into the chunk's output `[image][channel][pixel]`, stored as `O`.
fn scatter<O: Stored>(
    results: &[f32],
    stride: usize,
    channels: std::ops::Range<usize>,
    images: usize,
    c_out: usize,
    hw: usize,
    out: &mut [MaybeUninit<O>],
) {
    for (r, c) in channels.enumerate() {
        let row = &results[r * stride..][..hw * IMAGES];
        for i in 0..images {
            let dst = &mut out[(i * c_out + c) * hw..][..hw];
            for (q, d) in dst.iter_mut().enumerate() {
                *d = MaybeUninit::new(O::from_sum(row[q * IMAGES + i]));
            }
        }
    }
}
