//! 3x3 convolutions with stride 1 and padding 1 (the networks' hot layers) as implicit
//! GEMMs: no unrolled matrix is built, the tiles read the image itself.
//!
//! In the flat layout (`flat.rs`) the output pixel at position `q` reads its
//! neighbourhood at `q + (ky - 1)(W + 1) + (kx - 1)`: one shift per tap, the same for
//! every pixel, so the convolution is nine products `W_tap [C_out x C_in] *
//! X [C_in x positions]`, each reading `X` at shifted positions.
//!
//! Forward, and the input gradient (the forward convolution of `dL/dy` with the weights
//! transposed and flipped): `A` is a tap of the weight, `B` the image as channel pairs,
//! sixteen positions of a pair being one 64-byte tile row at any shift. A block of `C` is
//! 32 output channels x two runs of 16 positions: where the image rows are a multiple of
//! 16 wide, two 16-pixel row segments stored by the tiles straight into an f32 output;
//! otherwise 32 consecutive positions, padding included (6% of them at 32x32, 31% at
//! 5x5), copied out of a scratch block. A bf16 output (autocast's) always goes through
//! the scratch, rounded once as it is copied out.
//!
//! Weight gradient: `dW[co][ci][tap] = sum_q x[ci][q + shift(tap)] * dy[co][q]`, a
//! product whose depth is the positions, computed transposed (`C_in x C_out` per tap):
//! `A` is the image as rows, read at the tap's shift; `B` is `dL/dy` as position pairs,
//! zero at padding positions so that they add nothing. The backward pass converts
//! `dL/dy` (f32, rounded, or bf16, copied) once per chunk of images into rows, and makes
//! both its channel pairs (for the input gradient) and its position pairs (for the weight
//! gradient) from them while they are in the L2 cache. A bf16 input gradient (autocast's)
//! is rounded once from its f32 sums as it is copied out, as a bf16 output is.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::flat::{build_pairs, build_rows, pairs_from_rows, position_pairs, stride, Flat};
use super::lanes::{first, round32};
use super::microkernel::{self, Block, Init, Session, Step, ADJACENT, BLOCK, DEPTH};
use super::pack::{store, Line, BLOCK_BYTES};
use super::source::{gather, Values};
use super::stored::Stored;
use super::{conv3x3_lanes, groups, split_groups, Cpu};
use crate::conv2d::Conv2dGeometry;

/// Bytes of the bf16 copies one chunk of images may take: they are read once per
/// group of output channels (forward) or per pass (weight gradient), and should stay in
/// the (2 MiB) L2 cache meanwhile.
const CHUNK_BYTES: usize = 768 << 10;
/// Input channel blocks per part of a forward block's depth: 9 taps x 2 blocks of
/// weights (36 KiB) fit in the L1 cache.
const DEPTH_PART: usize = 2;
/// Fewest positions per chunk: each chunk streams the packed weights (forward) or the
/// weight-gradient sums (backward) through the caches once, which a chunk of a few
/// small images would not repay.
const CHUNK_POSITIONS: usize = 2048;
/// Position blocks per range of the weight gradient: the image rows of 32 channels over
/// 8 x 32 positions plus the taps' reach (about 20 KiB) and the position pairs of 32
/// output channels (16 KiB) stay in the L1 cache while all nine taps use them.
const WEIGHT_GRAD_BLOCKS: usize = 8;

/// Whether this path takes the convolution: 3x3, stride 1, padding 1, and enough input
/// channels that padding them to a multiple of 32 wastes little.
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == [3, 3] && g.stride == [1, 1] && g.padding == [1, 1] && g.in_channels >= 16
}

/// `y = conv(x, w) + b`, stored as `O`.
pub(super) fn forward<O: Stored>(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
) -> Vec<O> {
    let (c_in, c_out, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let c_pad = c_in.next_multiple_of(DEPTH);
    let weights = pack_taps(cpu, w, [c_out, c_in], false);
    let bias_rows = bias.map(|b| bias_rows(b, c_out));
    if conv3x3_lanes::applies(g.batch, hw) {
        let taps = conv3x3_lanes::Taps {
            weights: &weights,
            in_blocks: c_pad / DEPTH,
            out_channels: c_out,
            bias_rows: bias_rows.as_deref(),
        };
        return conv3x3_lanes::convolve(cpu, x, c_in, [g.batch, g.in_h, g.in_w], &taps);
    }
    let conv = Convolution {
        weights: &weights,
        in_blocks: c_pad / DEPTH,
        out_channels: c_out,
        bias_rows: bias_rows.as_deref(),
        hw,
    };
    let one = Flat {
        h: g.in_h,
        w: g.in_w,
        images: 1,
    };
    let per_image = c_pad * 2 * one.image();
    let len = g.batch * c_out * hw;
    let mut y: Vec<O> = Vec::with_capacity(len);
    let groups = groups(g.batch);
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], c_out * hw, &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let session = cpu.session();
        let (mut pairs, mut results) = (Vec::new(), Vec::new());
        for chunk in chunks(range.clone(), &one, per_image) {
            let flat = Flat {
                h: g.in_h,
                w: g.in_w,
                images: chunk.len(),
            };
            let plane = stride(flat.len(), 4);
            pairs.resize(c_pad / 2 * plane, 0);
            let x = x.slice(chunk.start * c_in * hw..chunk.end * c_in * hw);
            // SAFETY: the Cpu proves AVX512-BF16.
            unsafe { build_pairs(x, c_in, &flat, plane, &mut pairs) };
            let out =
                &mut out[(chunk.start - range.start) * c_out * hw..][..chunk.len() * c_out * hw];
            conv.chunk(&session, &flat, &pairs, plane, out, &mut results);
        }
    });
    // SAFETY: `Convolution::chunk` writes its chunk's whole output; the chunks cover each
    // group, the groups the batch.
    unsafe { y.set_len(len) };
    y
}

/// Contiguous runs of `range`'s images whose bf16 copies take about [`CHUNK_BYTES`]
/// (`per_image` bytes each), but at least [`CHUNK_POSITIONS`] positions of `flat`.
fn chunks(
    range: Range<usize>,
    flat: &Flat,
    per_image: usize,
) -> impl Iterator<Item = Range<usize>> {
    let by_bytes = CHUNK_BYTES / per_image.max(1);
    let by_positions = CHUNK_POSITIONS.div_ceil(flat.image());
    let per_chunk = by_bytes.max(by_positions).clamp(1, range.len().max(1));
    range
        .clone()
        .step_by(per_chunk)
        .map(move |s| s..(s + per_chunk).min(range.end))
}

/// 32 rows of 16 copies of each output channel's bias (zero past `c_out`), per block
/// of 32 channels: the tiles' starting values.
fn bias_rows(bias: &[f32], c_out: usize) -> Vec<f32> {
    (0..c_out.next_multiple_of(BLOCK))
        .flat_map(|c| [bias.get(c).copied().unwrap_or(0.0); 16])
        .collect()
}

/// `(dL/dx if need_input_grad, stored as O; dL/dW)`: for small images with the images
/// in the lanes (`conv3x3_lanes.rs`; the weight gradient of the largest of them stays
/// flat), otherwise both from one pass over chunks of images in the flat layout.
pub(super) fn backward<O: Stored>(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    gy: Values,
    g: &Conv2dGeometry,
    need_input_grad: bool,
) -> (Option<Vec<O>>, Vec<f32>) {
    let (c_in, c_out, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let dims = [g.batch, g.in_h, g.in_w];
    let (gx, partials) = if conv3x3_lanes::applies(g.batch, hw) {
        let gx = need_input_grad.then(|| {
            let weights = pack_taps(cpu, w, [c_out, c_in], true);
            let taps = conv3x3_lanes::Taps {
                weights: &weights,
                in_blocks: c_out.div_ceil(DEPTH),
                out_channels: c_in,
                bias_rows: None,
            };
            conv3x3_lanes::convolve(cpu, gy, c_out, dims, &taps)
        });
        let partials = if conv3x3_lanes::takes_weight_grad(g.batch, hw) {
            conv3x3_lanes::weight_grad(cpu, x, gy, [c_in, c_out], dims)
        } else {
            flat_backward::<O>(cpu, x, w, gy, g, false).1
        };
        (gx, partials)
    } else {
        flat_backward(cpu, x, w, gy, g, need_input_grad)
    };
    (gx, summed_weight_grad(partials, c_in, c_out))
}

/// [`backward`] in the flat layout: the input gradient (when asked for) and each
/// thread's weight-gradient sums (`[tap][C_in padded][C_out padded]`).
fn flat_backward<O: Stored>(
    cpu: Cpu,
    x: Values,
    w: &[f32],
    gy: Values,
    g: &Conv2dGeometry,
    need_input_grad: bool,
) -> (Option<Vec<O>>, Vec<Vec<f32>>) {
    let (c_in, c_out, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let co_pad = c_out.next_multiple_of(BLOCK);
    let weights = need_input_grad.then(|| pack_taps(cpu, w, [c_out, c_in], true));
    let conv = weights.as_ref().map(|weights| Convolution {
        weights,
        in_blocks: co_pad / DEPTH,
        out_channels: c_in,
        bias_rows: None,
        hw,
    });
    let groups = groups(g.batch);
    let len = if need_input_grad {
        g.batch * c_in * hw
    } else {
        0
    };
    let mut gx: Vec<O> = Vec::with_capacity(len);
    let outs = split_groups(
        &mut gx.spare_capacity_mut()[..len],
        if need_input_grad { c_in * hw } else { 0 },
        &groups,
    );
    let partials: Vec<Vec<f32>> = groups
        .par_iter()
        .zip(outs)
        .map(|(range, out)| backward_group(cpu, x, gy, g, range.clone(), conv.as_ref(), out))
        .collect();
    // SAFETY: with need_input_grad, each group's `backward_group` wrote its part of gx
    // whole (by `Convolution::chunk`); otherwise len is 0.
    unsafe { gx.set_len(len) };
    (need_input_grad.then_some(gx), partials)
}

/// The threads' weight-gradient sums (`[tap][C_in padded][C_out padded]` each) added in
/// thread order, as `dL/dW` (`[C_out][C_in][3][3]`).
fn summed_weight_grad(partials: Vec<Vec<f32>>, c_in: usize, c_out: usize) -> Vec<f32> {
    let (ci_pad, co_pad) = (c_in.next_multiple_of(BLOCK), c_out.next_multiple_of(BLOCK));
    let mut partials = partials.into_iter();
    let mut total = partials
        .next()
        .unwrap_or_else(|| vec![0.0; 9 * ci_pad * co_pad]);
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    // total[tap][ci][co] -> gw[co][ci][tap], sixteen input channels at a time so that
    // the 9 x 16 lines of `total` being read stay in L1 while co advances along them.
    let mut gw = vec![0.0f32; c_out * c_in * 9];
    for ci0 in (0..c_in).step_by(16) {
        for co in 0..c_out {
            for ci in ci0..(ci0 + 16).min(c_in) {
                let kernel = &mut gw[(co * c_in + ci) * 9..][..9];
                for (t, gw) in kernel.iter_mut().enumerate() {
                    *gw = total[(t * ci_pad + ci) * co_pad + co];
                }
            }
        }
    }
    gw
}

/// One thread's images `range`: writes their input gradient into `gx` (when `conv`
/// is given) and returns their weight-gradient sums, `[tap][C_in padded][C_out padded]`.
fn backward_group<O: Stored>(
    cpu: Cpu,
    x: Values,
    gy: Values,
    g: &Conv2dGeometry,
    range: Range<usize>,
    conv: Option<&Convolution>,
    gx: &mut [MaybeUninit<O>],
) -> Vec<f32> {
    let (c_in, c_out, h, w) = (g.in_channels, g.out_channels, g.in_h, g.in_w);
    let hw = h * w;
    let (ci_pad, co_pad) = (c_in.next_multiple_of(BLOCK), c_out.next_multiple_of(BLOCK));
    let mut sums = WeightGradSums::new(ci_pad, co_pad);
    let session = cpu.session();
    let copies = if conv.is_some() {
        3 * co_pad + ci_pad
    } else {
        2 * co_pad + ci_pad
    };
    let one = Flat { h, w, images: 1 };
    let per_image = copies * 2 * one.image();
    let (mut gy_rows, mut gy_pairs, mut gy_positions, mut x_rows, mut results) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for chunk in chunks(range.clone(), &one, per_image) {
        let flat = Flat {
            h,
            w,
            images: chunk.len(),
        };
        let pair_rows = flat.blocks() * 16;
        // Rows long enough for the position pairs of every block, from the guard on.
        let row_stride = stride(flat.len().max(flat.guard() + 2 * pair_rows), 2);
        gy_rows.resize(co_pad * row_stride, 0u16);
        x_rows.resize(ci_pad * row_stride, 0u16);
        gy_positions.resize(pair_rows * co_pad, 0u32);
        let gy = gy.slice(chunk.start * c_out * hw..chunk.end * c_out * hw);
        let x = x.slice(chunk.start * c_in * hw..chunk.end * c_in * hw);
        // SAFETY: the Cpu proves AVX512-BF16.
        unsafe {
            build_rows(gy, c_out, &flat, row_stride, &mut gy_rows);
            position_pairs(
                &gy_rows,
                row_stride,
                co_pad,
                flat.guard(),
                pair_rows,
                &mut gy_positions,
            );
            build_rows(x, c_in, &flat, row_stride, &mut x_rows);
        }
        if let Some(conv) = conv {
            let plane = stride(flat.len(), 4);
            gy_pairs.resize(co_pad / 2 * plane, 0u32);
            // SAFETY: the Cpu proves AVX512-BF16.
            unsafe { pairs_from_rows(&gy_rows, row_stride, flat.len(), &mut gy_pairs, plane) };
            let out = &mut gx[(chunk.start - range.start) * c_in * hw..][..chunk.len() * c_in * hw];
            conv.chunk(&session, &flat, &gy_pairs, plane, out, &mut results);
        }
        // Steps per range of position blocks and tap.
        let ranges: Vec<Vec<Vec<Step>>> = (0..flat.blocks())
            .step_by(WEIGHT_GRAD_BLOCKS)
            .map(|fb0| {
                let fbs = fb0..(fb0 + WEIGHT_GRAD_BLOCKS).min(flat.blocks());
                (0..9)
                    .map(|t| {
                        fbs.clone()
                            .map(|fb| Step {
                                a: ((fb * BLOCK) as isize + flat.shift(t)) * 2,
                                b: (fb * 16 * co_pad * 4) as isize,
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let products = WeightGradProducts {
            a: x_rows[flat.guard()..].as_ptr().cast(),
            a_stride: row_stride * 2,
            b: gy_positions.as_ptr(),
            ci_pad,
            co_pad,
        };
        // SAFETY: A: rows 0..ci_pad of x_rows, 32 positions from guard + 32 fb + shift >= 0,
        // ending before flat.len() <= row_stride. B: position pairs 16 fb + 0..16 <
        // pair_rows of co_pad channels. Session on this thread.
        unsafe { products.run(&session, &ranges, &mut sums) };
    }
    sums.into_sums()
}

/// The weight gradient's products of one chunk of images, in either layout (flat here,
/// images in the lanes in `conv3x3_lanes.rs`): `dW[tap] (C_in x C_out) += A_s * B_s`
/// over each range's steps of each tap, where `A` is rows of 32 input channels (the
/// images' values along the depth), `a_stride` bytes apart from `a`, and `B` is `dL/dy`
/// as pairs along the depth, `co_pad` channels per row, from `b`.
pub(super) struct WeightGradProducts {
    pub a: *const u8,
    pub a_stride: usize,
    pub b: *const u32,
    pub ci_pad: usize,
    pub co_pad: usize,
}

impl WeightGradProducts {
    /// Adds the products of `ranges` (per range, per tap, the steps) to `sums`; the first
    /// call's first range writes them (a tap without steps there writes zeros).
    ///
    /// For one pair of channel blocks, the nine taps' sums (36 KiB) stay in L2 while the
    /// ranges pass, and each range's operands in L1 while the nine taps use them: each
    /// operand streams from L2 or L3 once per pair.
    ///
    /// # Safety
    /// Every step of `ranges`, read as the microkernel reads it from `a + ci_block * 32 *
    /// a_stride` (rows `a_stride` apart) and `b + co_block * 32` (rows `co_pad` words
    /// apart) for every block of 32 input and of 32 output channels, must stay inside the
    /// operands; the session must be this thread's.
    pub unsafe fn run(
        &self,
        session: &Session,
        ranges: &[Vec<Vec<Step>>],
        sums: &mut WeightGradSums,
    ) {
        let (ci_pad, co_pad) = (self.ci_pad, self.co_pad);
        let len = 9 * ci_pad * co_pad;
        assert!(sums.len == len && !ranges.is_empty());
        let first_call = sums.values.is_empty();
        let acc = sums.values.as_mut_ptr();
        for ci_block in 0..ci_pad / BLOCK {
            for co_block in 0..co_pad / BLOCK {
                for (r, taps) in ranges.iter().enumerate() {
                    let init = if first_call && r == 0 {
                        Init::Zero
                    } else {
                        Init::Accumulate
                    };
                    for (t, steps) in taps.iter().enumerate() {
                        let block = Block {
                            a: self.a.wrapping_add(ci_block * BLOCK * self.a_stride),
                            a_stride: self.a_stride,
                            b: self.b.wrapping_add(co_block * BLOCK).cast(),
                            b_stride: co_pad * 4,
                            b_half: ADJACENT,
                            c: acc.wrapping_add(
                                (t * ci_pad + ci_block * BLOCK) * co_pad + co_block * BLOCK,
                            ),
                            c_stride: co_pad * 4,
                            c_half: ADJACENT,
                        };
                        // SAFETY: the operands per the caller's contract; C: a 32x32 block
                        // of the tap's ci_pad x co_pad sums inside the capacity of `sums`
                        // (len), written by the first call's first range (Init::Zero)
                        // before any range reads it.
                        unsafe { microkernel::run(session, &block, steps, init) };
                    }
                }
            }
        }
        if first_call {
            // SAFETY: the first range (there is one, asserted) wrote every 32x32 block of
            // every tap's ci_pad x co_pad sums, all `len` of them.
            unsafe { sums.values.set_len(len) };
        }
    }
}

/// One thread's weight-gradient sums, `[tap][C_in padded][C_out padded]`: written by the
/// first chunk's [`WeightGradProducts::run`], added to by the others.
pub(super) struct WeightGradSums {
    /// Empty until the first products are written, then `len` long.
    values: Vec<f32>,
    len: usize,
}

impl WeightGradSums {
    pub fn new(ci_pad: usize, co_pad: usize) -> WeightGradSums {
        let len = 9 * ci_pad * co_pad;
        WeightGradSums {
            values: Vec::with_capacity(len),
            len,
        }
    }

    /// The sums; zeros where no products were added (a thread without images).
    pub fn into_sums(self) -> Vec<f32> {
        if self.values.len() == self.len {
            self.values
        } else {
            vec![0.0; self.len]
        }
    }
}

/// A 3x3 convolution's packed weights and sizes, applied chunk by chunk.
struct Convolution<'a> {
    /// From [`pack_taps`]: `[out block][tap][in block]`.
    weights: &'a [Line],
    /// Blocks of 32 input channels (the padded depth of each tap).
    in_blocks: usize,
    out_channels: usize,
    bias_rows: Option<&'a [f32]>,
    /// Pixels per channel.
    hw: usize,
}

impl Convolution<'_> {
    /// Convolves the chunk whose channel pairs are `pairs` (planes `plane` words apart),
    /// writing every element of its output `out` (`images x out_channels x hw`).
    ///
    /// Per block of 32 output channels, the depth (9 taps x input channel blocks) is cut
    /// into parts of [`DEPTH_PART`] channel blocks, whose weights (up to 36 KiB) stay in
    /// the L1 cache while every output block of the chunk passes; the partial sums wait
    /// in the output itself (blocks stored in place, where the output is f32) or in
    /// `results` (the others), and each later part adds to them.
    fn chunk<O: Stored>(
        &self,
        session: &Session,
        flat: &Flat,
        pairs: &[u32],
        plane: usize,
        out: &mut [MaybeUninit<O>],
        results: &mut Vec<f32>,
    ) {
        let (in_blocks, c_out, hw) = (self.in_blocks, self.out_channels, self.hw);
        let out_blocks = c_out.div_ceil(BLOCK);
        assert!(pairs.len() >= in_blocks * 16 * plane && plane >= flat.len());
        assert!(out.len() == flat.images * c_out * hw);
        assert!(self.weights.len() >= out_blocks * 9 * in_blocks * BLOCK);
        let parts: Vec<Vec<Step>> = (0..in_blocks)
            .step_by(DEPTH_PART)
            .map(|cb0| {
                (0..9)
                    .flat_map(|t| (cb0..(cb0 + DEPTH_PART).min(in_blocks)).map(move |cb| (t, cb)))
                    .map(|(t, cb)| Step {
                        a: ((t * in_blocks + cb) * BLOCK_BYTES) as isize,
                        b: ((cb * 16 * plane) as isize + flat.shift(t)) * 4,
                    })
                    .collect()
            })
            .collect();
        let blocks = output_blocks(flat, c_out * hw);
        // 32 rows of every block's 32 results, for the blocks not stored in place.
        let results_stride = stride(blocks.len() * BLOCK, 4);
        results.resize(BLOCK * results_stride, 0.0);
        let in_place = O::in_place(out.as_mut_ptr().cast());
        for co_block in 0..out_blocks {
            let whole = (co_block + 1) * BLOCK <= c_out;
            for (part, steps) in parts.iter().enumerate() {
                let init = match (part, self.bias_rows) {
                    (0, None) => Init::Zero,
                    (0, Some(rows)) => Init::Rows(rows[co_block * 512..].as_ptr()),
                    _ => Init::Accumulate,
                };
                for (j, ob) in blocks.iter().enumerate() {
                    let (c, c_stride, c_half) = match (ob.direct, in_place) {
                        (Some([d0, d1]), Some(y)) if whole => (
                            y.wrapping_add(co_block * BLOCK * hw + d0),
                            hw * 4,
                            (d1 as isize - d0 as isize) * 4,
                        ),
                        _ => (
                            results[j * BLOCK..].as_mut_ptr(),
                            results_stride * 4,
                            ADJACENT,
                        ),
                    };
                    let block = Block {
                        a: self.weights[co_block * 9 * in_blocks * BLOCK..]
                            .as_ptr()
                            .cast(),
                        a_stride: 64,
                        b: pairs[ob.halves[0]..].as_ptr().cast(),
                        b_stride: plane * 4,
                        b_half: (ob.halves[1] as isize - ob.halves[0] as isize) * 4,
                        c,
                        c_stride,
                        c_half,
                    };
                    // SAFETY: A: block (co_block, tap, cb) lies in `weights` (asserted
                    // size). B: pair rows cb*16 + p < in_blocks*16 of `pairs`, 16 positions
                    // from each half's position plus a tap's shift, inside 0..flat.len()
                    // (see `output_blocks`). C: for a direct block of an f32 output, rows
                    // co_block*32 + 0..32 < c_out of the 16 pixels of each half's image
                    // row, inside `out`; otherwise columns 32j..32j + 32 of the 32 rows of
                    // `results`.
                    // Accumulate reads what part 0 wrote there. Init rows: 32 x 16 f32 of
                    // the bias rows. Session on this thread.
                    unsafe { microkernel::run(session, &block, steps, init) };
                }
            }
            let co = co_block * BLOCK..(co_block * BLOCK + BLOCK).min(c_out);
            for (j, ob) in blocks.iter().enumerate() {
                if ob.direct.is_none() || !whole || in_place.is_none() {
                    let src = &results[j * BLOCK..];
                    // SAFETY: a Session exists only where AVX512-BF16 runs.
                    unsafe { scatter(src, results_stride, &ob.runs, co.clone(), hw, out) };
                }
            }
        }
    }
}

/// The nine taps of a 3x3 weight `[C_out][C_in][3][3]` packed as A operands,
/// `[row block][tap][k block]`: rows `co` and depth `ci` with tap `t` = `w[co][ci][t]`, or
/// `transposed` (the input gradient's weight) rows `ci` and depth `co` with tap `t` =
/// `w[co][ci][8 - t]`. Each row's 32 values of all nine taps come from the same few cache
/// lines of `w`, so the weight is read once.
fn pack_taps(cpu: Cpu, w: &[f32], [c_out, c_in]: [usize; 2], transposed: bool) -> Vec<Line> {
    let (rows, depth) = if transposed {
        (c_in, c_out)
    } else {
        (c_out, c_in)
    };
    let k_blocks = depth.div_ceil(DEPTH);
    let per_row_block = 9 * k_blocks * BLOCK;
    let len = rows.div_ceil(BLOCK) * per_row_block;
    let mut lines: Vec<Line> = Vec::with_capacity(len);
    let _ = cpu;
    lines.spare_capacity_mut()[..len]
        .par_chunks_mut(per_row_block)
        .enumerate()
        .for_each(|(row_block, out)| {
            // SAFETY: the Cpu proves AVX512-BF16.
            unsafe { pack_tap_rows(w, [c_out, c_in], transposed, row_block, out) }
        });
    // SAFETY: every line of every row block was written above.
    unsafe { lines.set_len(len) };
    lines
}

/// Row block `row_block` of [`pack_taps`]: `9 x k_blocks` blocks of 32 lines.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn pack_tap_rows(
    w: &[f32],
    [c_out, c_in]: [usize; 2],
    transposed: bool,
    row_block: usize,
    out: &mut [MaybeUninit<Line>],
) {
    let (rows, depth) = if transposed {
        (c_in, c_out)
    } else {
        (c_out, c_in)
    };
    let k_blocks = depth.div_ceil(DEPTH);
    for r in 0..BLOCK {
        let row = row_block * BLOCK + r;
        for kb in 0..k_blocks {
            let k0 = kb * DEPTH;
            let n = if row < rows {
                (depth - k0).min(DEPTH)
            } else {
                0
            };
            for t in 0..9 {
                let (start, step) = if transposed {
                    ((k0 * c_in + row) * 9 + 8 - t, c_in * 9)
                } else {
                    ((row * c_in + k0) * 9 + t, 9)
                };
                // With n > 0, `start` and the n - 1 steps after it are elements of `w`
                // (row < rows, k < depth).
                let [lo, hi] = if n == 0 {
                    [_mm512_setzero_ps(); 2]
                } else {
                    gather(&w[start..], step, n)
                };
                store(&mut out[(t * k_blocks + kb) * BLOCK + r], round32(lo, hi));
            }
        }
    }
}

/// Consecutive positions of one output block that are pixels of one image row.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Offset of the first position in the block.
    col: usize,
    len: usize,
    /// Index of the first pixel in the chunk's output, channel 0.
    dst: usize,
}

/// 32 output positions: two halves of 16, each starting at its own flat position.
struct OutBlock {
    /// Flat positions of the halves' first pixels.
    halves: [usize; 2],
    /// When each half is 16 pixels of one image row: where they go in the chunk's
    /// output (channel 0), so the tiles store them in place.
    direct: Option<[usize; 2]>,
    /// Otherwise, which columns of the block's result are pixels, and where they go.
    runs: Vec<Run>,
}

/// The blocks that cover every pixel of the chunk once; its output holds `image_len`
/// values per image. Rows a multiple of 16 wide are cut into 16-pixel segments, two per
/// block, stored in place; other widths take 32 consecutive positions per block,
/// padding positions included, copied out through the scratch.
fn output_blocks(flat: &Flat, image_len: usize) -> Vec<OutBlock> {
    let Flat { h, w, images } = *flat;
    if w % 16 == 0 {
        let per_row = w / 16;
        let segments = images * h * per_row;
        // (flat position, output offset) of segment s.
        let segment = |s: usize| {
            let (image, rest) = (s / (h * per_row), s % (h * per_row));
            let (y, x0) = (rest / per_row, 16 * (rest % per_row));
            (flat.position(image, y) + x0, image * image_len + y * w + x0)
        };
        return (0..segments)
            .step_by(2)
            .map(|s| {
                let (p0, d0) = segment(s);
                let first = Run {
                    col: 0,
                    len: 16,
                    dst: d0,
                };
                if s + 1 == segments {
                    // An odd segment out: its second half repeats the first, unwritten.
                    return OutBlock {
                        halves: [p0, p0],
                        direct: None,
                        runs: vec![first],
                    };
                }
                let (p1, d1) = segment(s + 1);
                let second = Run {
                    col: 16,
                    len: 16,
                    dst: d1,
                };
                OutBlock {
                    halves: [p0, p1],
                    direct: Some([d0, d1]),
                    runs: vec![first, second],
                }
            })
            .collect();
    }
    (0..flat.blocks())
        .map(|fb| {
            let q = flat.guard() + fb * BLOCK;
            OutBlock {
                halves: [q, q + 16],
                direct: None,
                runs: runs(flat, fb, image_len),
            }
        })
        .collect()
}

/// The runs of flat block `fb` (positions guard + 32 fb + 0..32).
fn runs(flat: &Flat, fb: usize, image_len: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    let start = fb * BLOCK; // positions counted from the guard
    let mut col = 0;
    while col < BLOCK {
        let r = start + col;
        let (image, rest) = (r / flat.image(), r % flat.image());
        let (y, x) = (rest / flat.row(), rest % flat.row());
        if image >= flat.images {
            break;
        }
        if y >= flat.h || x >= flat.w {
            col += 1;
            continue;
        }
        let len = (flat.w - x).min(BLOCK - col);
        runs.push(Run {
            col,
            len,
            dst: image * image_len + y * flat.w + x,
        });
        col += len;
    }
    runs
}

/// Copies rows `co` (output channels) of a block's result (32 values per row, rows
/// `stride` apart in `result`) to the pixels of its runs, stored as `O`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn scatter<O: Stored>(
    result: &[f32],
    stride: usize,
    runs: &[Run],
    co: Range<usize>,
    hw: usize,
    out: &mut [MaybeUninit<O>],
) {
    for (r, c) in co.enumerate() {
        let src = &result[r * stride..][..BLOCK];
        for run in runs {
            let src = &src[run.col..][..run.len];
            let dst = &mut out[run.dst + c * hw..][..run.len];
            for half in (0..run.len).step_by(16) {
                let mask = first(run.len - half);
                // SAFETY: the mask enables lanes 0..min(16, len - half), elements
                // half.. of `src` and `dst`, both `len` long; MaybeUninit<O> is O; this
                // function's target features are store16's.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, src[half..].as_ptr());
                    O::store16(dst[half..].as_mut_ptr().cast(), mask, v);
                }
            }
        }
    }
}
