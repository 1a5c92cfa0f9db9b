//! 3x3 convolutions (stride 1, padding 1) of small images with the images in the lanes:
//! the forward and the input gradient (a forward convolution of `dL/dy`) of layers whose
//! images have at most [`MAX_PIXELS`] pixels (airbench94's 15x15, 7x7 and 3x3 layers),
//! and the weight gradient of those with at most [`WEIGHT_GRAD_MAX_PIXELS`].
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
//! 32 images at a time; a chunk's results are copied to `[image][channel][pixel]`. The
//! weight gradient is a product per tap whose depth is 32 images at a time
//! ([`weight_grad`]).
//!
//! The forward's sums are those of the flat layout, in the same order (per part of
//! [`DEPTH_PART`] input channel blocks, taps then blocks), less the terms that are
//! products with the padding's zeros. The weight gradient's add 32 images at a time,
//! pixel by pixel (the flat layout's, 32 positions at a time): the same terms in another
//! order.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv3x3::{WeightGradProducts, WeightGradSums};
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

/// Largest images whose weight gradient this path takes. Measured on airbench94's step
/// (`profile`, backward ms, both gradients): 7x7 325-413 -> 258-267, 3x3 72-75 -> 37-39,
/// but 15x15 (64 -> 256) 371-403 -> 401-444: there the flat layout wastes little, and
/// this path's copies of `dL/dy` (a 3.7 MiB chunk) leave the L2 cache.
pub(super) const WEIGHT_GRAD_MAX_PIXELS: usize = 49;

/// Whether this path takes a 3x3, stride-1, padding-1 convolution of `batch` images of
/// `pixels` pixels: its forward and its input gradient.
pub(super) fn applies(batch: usize, pixels: usize) -> bool {
    pixels <= MAX_PIXELS && batch >= MIN_BATCH
}

/// Whether this path takes the weight gradient of such a convolution too.
pub(super) fn takes_weight_grad(batch: usize, pixels: usize) -> bool {
    pixels <= WEIGHT_GRAD_MAX_PIXELS && applies(batch, pixels)
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
    let results_stride = stride(hw * IMAGES, 4);
    let len = batch * c_out * hw;
    let mut y: Vec<O> = Vec::with_capacity(len);
    let groups = groups(batch);
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], c_out * hw, &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let session = cpu.session();
        let (mut bits, mut pairs) = (Vec::new(), Vec::new());
        let mut results = vec![0.0f32; BLOCK * results_stride];
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

/// Pixels per range of the weight gradient: the image rows of 32 input channels at the
/// range's pixels and their taps' reach, and the `dL/dy` pairs of 32 output channels at
/// the range's pixels (16 KiB), stay in the L1 cache while the nine taps use them.
const WEIGHT_GRAD_PIXELS: usize = 8;

/// The weight gradient's sums of each rayon thread's images, `[tap][C_in padded][C_out
/// padded]`, in thread order:
///
/// ```text
/// dW[tap][ci][co] = sum over images i, pixels q whose tap reads a pixel s of the image:
///                   x[i][ci][s] * dy[i][co][q]
/// ```
///
/// a product per tap whose depth is 32 images at a time: `A` is the input as
/// `[channel][pixel][32 images]` rows read at the tap's source pixel, `B` is `dL/dy` as
/// `[pixel][image pair][channel]` pairs. A tap that would read the padding at a pixel has
/// no step there.
pub(super) fn weight_grad(
    cpu: Cpu,
    x: Values,
    gy: Values,
    [c_in, c_out]: [usize; 2],
    [batch, h, w]: [usize; 3],
) -> Vec<Vec<f32>> {
    let hw = h * w;
    let (ci_pad, co_pad) = (c_in.next_multiple_of(BLOCK), c_out.next_multiple_of(BLOCK));
    assert_eq!(x.len(), batch * c_in * hw);
    assert_eq!(gy.len(), batch * c_out * hw);
    // Per range of pixels, per tap: the steps of the range's pixels whose tap reads the
    // image.
    let ranges: Vec<Vec<Vec<Step>>> = (0..hw)
        .step_by(WEIGHT_GRAD_PIXELS)
        .map(|q0| {
            (0..9)
                .map(|t| {
                    (q0..(q0 + WEIGHT_GRAD_PIXELS).min(hw))
                        .filter_map(|q| Some((q, source(q, t, h, w)?)))
                        .map(|(q, s)| Step {
                            a: (s * IMAGES * 2) as isize,
                            b: (q * 16 * co_pad * 4) as isize,
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    groups(batch)
        .par_iter()
        .map(|range| {
            let session = cpu.session();
            let mut sums = WeightGradSums::new(ci_pad, co_pad);
            let (mut x_bits, mut gy_bits, mut x_rows, mut gy_pairs) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for first in range.clone().step_by(IMAGES) {
                let images = IMAGES.min(range.end - first);
                // SAFETY: the Cpu proves AVX512-BF16.
                unsafe {
                    as_bits(
                        x.slice(first * c_in * hw..(first + images) * c_in * hw),
                        &mut x_bits,
                    );
                    as_bits(
                        gy.slice(first * c_out * hw..(first + images) * c_out * hw),
                        &mut gy_bits,
                    );
                }
                image_rows(&x_bits, images, c_in, hw, ci_pad, &mut x_rows);
                image_pairs(&gy_bits, images, c_out, hw, co_pad, &mut gy_pairs);
                let products = WeightGradProducts {
                    a: x_rows.as_ptr().cast(),
                    a_stride: hw * IMAGES * 2,
                    b: gy_pairs.as_ptr(),
                    ci_pad,
                    co_pad,
                };
                // SAFETY: A: rows 0..ci_pad of `x_rows` (ci_pad x hw x 32 halfwords), 32
                // images at a pixel of the image. B: image pairs 0..16 of a pixel, co_pad
                // channels each, inside `gy_pairs` (hw x 16 x co_pad words). Session on
                // this thread.
                unsafe { products.run(&session, &ranges, &mut sums) };
            }
            sums.into_sums()
        })
        .collect()
}

/// The pixel that tap `t` (`3 ky + kx`) of output pixel `q` reads, unless it is padding.
fn source(q: usize, t: usize, h: usize, w: usize) -> Option<usize> {
    let (y, x) = (q / w, q % w);
    let sy = (y + t / 3).checked_sub(1).filter(|&sy| sy < h)?;
    let sx = (x + t % 3).checked_sub(1).filter(|&sx| sx < w)?;
    Some(sy * w + sx)
}

/// `images` images (`[image][channel][pixel]` bf16 bits) as `rows[(c * hw + q) * 32 + i]`
/// for `channel_rows` channels; channels and images past the input zero. Written in
/// order; the 32 images' current lines of the input stay in the L1 cache meanwhile.
fn image_rows(
    bits: &[u16],
    images: usize,
    channels: usize,
    hw: usize,
    channel_rows: usize,
    rows: &mut Vec<u16>,
) {
    rows.clear();
    rows.resize(channel_rows * hw * IMAGES, 0);
    let image_len = channels * hw;
    for (cq, row) in rows
        .chunks_exact_mut(IMAGES)
        .take(channels * hw)
        .enumerate()
    {
        for (i, v) in row.iter_mut().take(images).enumerate() {
            *v = bits[i * image_len + cq];
        }
    }
}

/// `images` images (`[image][channel][pixel]` bf16 bits) as `pairs[(q * 16 + p) *
/// channel_cols + c]` = image `2p` (low half) and `2p + 1` at pixel `q` of channel `c`;
/// channels and images past the input zero. Written in order; the lines of the input
/// being read (one per image and channel) stay in the L2 cache meanwhile.
fn image_pairs(
    bits: &[u16],
    images: usize,
    channels: usize,
    hw: usize,
    channel_cols: usize,
    pairs: &mut Vec<u32>,
) {
    pairs.clear();
    pairs.resize(hw * 16 * channel_cols, 0);
    let image_len = channels * hw;
    let value = |i: usize, at: usize| {
        if i < images {
            bits[i * image_len + at]
        } else {
            0
        }
    };
    for (qp, row) in pairs.chunks_exact_mut(channel_cols).enumerate() {
        let (q, p) = (qp / 16, qp % 16);
        if 2 * p >= images {
            continue;
        }
        for (c, pair) in row.iter_mut().take(channels).enumerate() {
            let at = c * hw + q;
            *pair = u32::from(value(2 * p, at)) | u32::from(value(2 * p + 1, at)) << 16;
        }
    }
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
                    (0..9)
                        .filter_map(|t| Some((t, source(q, t, h, w)?)))
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
