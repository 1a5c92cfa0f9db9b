//! 3x3 convolutions with stride 1 and padding 1 (the networks' hot layers) as implicit
//! GEMMs: no unrolled matrix is built, the tiles read the image itself.
//!
//! A chunk of images is laid out "flat": one run of positions where each image row is
//! followed by one zero (the right padding of a row is the left padding of the next),
//! each image by one zero row (its bottom padding is the next image's top padding), and
//! the first image is preceded by `W + 2` zeros:
//!
//! ```text
//! position(image, y, x) = (W + 2) + image * (H + 1)(W + 1) + y * (W + 1) + x
//! ```
//!
//! The output pixel at position `q` then reads its neighbourhood at
//! `q + (ky - 1)(W + 1) + (kx - 1)`: one shift per tap, the same for every pixel, so the
//! convolution is nine products `W_tap [C_out x C_in] * X [C_in x positions]`, each reading
//! `X` at shifted positions. Outputs are computed at every position of the images,
//! padding included, and those at padding positions thrown away: a share of
//! `(H + W + 1) / ((H + 1)(W + 1))`, 6% at 32x32 and 31% at 5x5.
//!
//! Forward (and the input gradient, which is the forward convolution of `dL/dy` with
//! the weights transposed and flipped): `B` is the image with channel pairs interleaved,
//! word `(pair p, position q) = (x[2p][q], x[2p + 1][q])`, so sixteen positions of a pair
//! are one 64-byte tile row at any shift. `C` blocks are 32 output channels x 32 positions.
//!
//! Weight gradient: `dW[co][ci][tap] = sum_q dy[co][q] * x[ci][q + shift(tap)]`, a product
//! whose depth is the positions. `A` is `dL/dy` flat (zero at padding positions, so they
//! add nothing), one bf16 row per output channel; `B` is the image transposed into pairs
//! of positions, word `(j, ci) = (x[ci][2j + e], x[ci][2j + 1 + e])`, in two copies
//! (`e` = 0, 1) because a tap's shift may be odd.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::lanes::{first, pairs16, round32, transpose16};
use super::microkernel::{self, Block, Step, BLOCK, DEPTH};
use super::pack::{store, Line, BLOCK_BYTES};
use super::source::gather;
use super::{groups, split_groups, Cpu};
use crate::conv2d::Conv2dGeometry;

/// Bytes of the interleaved image one chunk of images may take: it is read once per
/// group of output channels, and should stay in the (2 MiB) L2 cache meanwhile.
const IMAGE_BYTES: usize = 512 << 10;
/// Bytes of packed weights one sweep over a chunk uses, also kept in L2.
const WEIGHT_BYTES: usize = 1 << 20;
/// Output blocks per pass of the weight gradient: 8 x 32 positions of `dL/dy` for 32
/// channels (16 KiB) and of the image for 32 channels (about 20 KiB with the taps'
/// reach) stay in the L1 cache while all nine taps use them.
const WEIGHT_GRAD_BLOCKS: usize = 8;

/// Whether this path takes the convolution: 3x3, stride 1, padding 1, and enough input
/// channels that padding them to a multiple of 32 wastes little.
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == [3, 3] && g.stride == [1, 1] && g.padding == [1, 1] && g.in_channels >= 16
}

/// The flat layout of `images` images of `h x w` (see the module's description).
#[derive(Clone, Copy, Debug)]
struct Flat {
    h: usize,
    w: usize,
    images: usize,
}

impl Flat {
    fn row(&self) -> usize {
        self.w + 1
    }

    fn image(&self) -> usize {
        (self.h + 1) * self.row()
    }

    fn guard(&self) -> usize {
        self.row() + 1
    }

    fn position(&self, image: usize, y: usize) -> usize {
        self.guard() + image * self.image() + y * self.row()
    }

    /// Blocks of 32 output positions covering every image.
    fn blocks(&self) -> usize {
        (self.images * self.image()).div_ceil(BLOCK)
    }

    /// Positions stored: the farthest tap of the last block reads just below this.
    fn len(&self) -> usize {
        self.guard() + self.blocks() * BLOCK + self.row() + 1
    }

    /// Elements of `bytes` bytes between the starts of two planes (channel pairs, channel
    /// rows): at least [`Flat::len`], rounded up so that the sixteen rows of a tile,
    /// one plane apart, fall into sixteen different sets of the L1 cache. Planes a
    /// multiple of 4 KiB apart would all map to one set of its twelve ways, and every tile
    /// load would evict the rows it needs next.
    fn stride(&self, len: usize, bytes: usize) -> usize {
        conflict_free(len, bytes)
    }

    /// How far tap `tap` (`3 * ky + kx`) reads from the output position.
    fn shift(&self, tap: usize) -> isize {
        ((tap / 3) as isize - 1) * self.row() as isize + (tap % 3) as isize - 1
    }
}

/// The least `n >= len` whose byte size `n * bytes` is an odd number of 64-byte lines:
/// rows that many bytes apart cycle through all 64 sets of the L1 cache.
fn conflict_free(len: usize, bytes: usize) -> usize {
    let per_line = 64 / bytes;
    let lines = len.div_ceil(per_line);
    (lines | 1) * per_line
}

/// `y = conv(x, w) + b`.
pub(super) fn forward(
    cpu: Cpu,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
) -> Vec<f32> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let weights = pack_taps(cpu, w, [c_out, c_in], false);
    implicit(
        cpu,
        x,
        &weights,
        bias,
        g.batch,
        [c_in, c_out],
        [g.in_h, g.in_w],
    )
}

/// `dL/dx`: the convolution of `dL/dy` with `w'[ci][co][ky][kx] = w[co][ci][2 - ky][2 - kx]`.
pub(super) fn input_grad(cpu: Cpu, gy: &[f32], w: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let weights = pack_taps(cpu, w, [c_out, c_in], true);
    implicit(
        cpu,
        gy,
        &weights,
        None,
        g.batch,
        [c_out, c_in],
        [g.in_h, g.in_w],
    )
}

/// The convolution of `x` (`batch x c_in x h x w`) with the nine `c_out x c_in` tap
/// matrices packed by [`pack_taps`], plus `bias`.
fn implicit(
    cpu: Cpu,
    x: &[f32],
    weights: &[Line],
    bias: Option<&[f32]>,
    batch: usize,
    [c_in, c_out]: [usize; 2],
    [h, w]: [usize; 2],
) -> Vec<f32> {
    let hw = h * w;
    let len = batch * c_out * hw;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    let c_pad = c_in.next_multiple_of(DEPTH);
    let (in_blocks, out_blocks) = (c_pad / DEPTH, c_out.div_ceil(BLOCK));
    let groups = groups(batch);
    let outs = split_groups(&mut y.spare_capacity_mut()[..len], c_out * hw, &groups);
    groups.par_iter().zip(outs).for_each(|(range, out)| {
        let session = cpu.session();
        let flat = Flat { h, w, images: 1 };
        let per_chunk = (IMAGE_BYTES / (c_pad * 2 * flat.image())).clamp(1, range.len());
        let per_group = (WEIGHT_BYTES / (9 * in_blocks * BLOCK_BYTES)).max(1);
        let mut pairs: Vec<u32> = Vec::new();
        let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
        for first_image in range.clone().step_by(per_chunk) {
            let images = per_chunk.min(range.end - first_image);
            let flat = Flat { h, w, images };
            let plane = flat.stride(flat.len(), 4);
            pairs.resize(c_pad / 2 * plane, 0);
            let x = &x[first_image * c_in * hw..][..images * c_in * hw];
            // SAFETY: the Cpu proves AVX512-BF16.
            unsafe { build_pairs(x, c_in, &flat, plane, &mut pairs) };
            let steps: Vec<Step> = (0..9)
                .flat_map(|t| (0..in_blocks).map(move |cb| (t, cb)))
                .map(|(t, cb)| Step {
                    a: ((t * in_blocks + cb) * BLOCK_BYTES) as isize,
                    b: ((cb * 16 * plane) as isize + flat.shift(t)) * 4,
                })
                .collect();
            let out = &mut out[(first_image - range.start) * c_out * hw..][..images * c_out * hw];
            for co_group in (0..out_blocks).step_by(per_group) {
                let co_group = co_group..(co_group + per_group).min(out_blocks);
                for fb in 0..flat.blocks() {
                    let runs = runs(&flat, fb, c_out * hw);
                    for co_block in co_group.clone() {
                        let block = Block {
                            a: weights[co_block * 9 * in_blocks * BLOCK_BYTES / 64..]
                                .as_ptr()
                                .cast(),
                            a_stride: 64,
                            b: pairs[flat.guard() + fb * BLOCK..].as_ptr().cast(),
                            b_stride: plane * 4,
                            c: scratch.0.as_mut_ptr(),
                            c_stride: BLOCK * 4,
                        };
                        // SAFETY: A: block (co_block, tap, cb) lies in `weights`
                        // (out_blocks x 9 x in_blocks blocks). B: pair rows cb*16 + p < c_pad/2
                        // of `pairs`, positions guard + 32 fb + shift + 0..32, which lie in
                        // 0..flat.len() (guard >= -shift, and len covers the last block's
                        // farthest tap). C: the 32x32 scratch. Session on this thread.
                        unsafe { microkernel::run(&session, &block, &steps, false) };
                        let co = co_block * BLOCK..(co_block * BLOCK + BLOCK).min(c_out);
                        // SAFETY: the Cpu proves AVX-512.
                        unsafe { scatter(&scratch, &runs, co, hw, bias, out) };
                    }
                }
            }
        }
        drop(session);
    });
    // SAFETY: every output element was written: each pixel of each image lies at one
    // position of exactly one block `fb`, whose runs `scatter` writes for every output
    // channel (the channel blocks cover 0..c_out); the groups cover the batch.
    unsafe { y.set_len(len) };
    y
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
                        let line = &mut out[(t * k_blocks + kb) * BLOCK + r];
                        // SAFETY: the Cpu proves AVX512-BF16; with n > 0, `start` and the
                        // n - 1 steps after it are elements of `w` (row < rows, k < depth).
                        unsafe {
                            let [lo, hi] = if n == 0 {
                                [_mm512_setzero_ps(); 2]
                            } else {
                                gather(&w[start..], step, n)
                            };
                            store(line, round32(lo, hi));
                        }
                    }
                }
            }
        });
    // SAFETY: every line of every row block was written above.
    unsafe { lines.set_len(len) };
    lines
}

/// A 32x32 f32 block, aligned for the tile stores.
#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// Consecutive positions of one output block that are pixels of one image row.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Offset of the first position in the block.
    col: usize,
    len: usize,
    /// Index of the first pixel in the chunk's output, channel 0.
    dst: usize,
}

/// The runs of block `fb`; the output holds `image_len` values per image.
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

/// Writes rows `co` (output channels) of a block's result to the pixels of its runs,
/// plus the bias.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn scatter(
    scratch: &Scratch,
    runs: &[Run],
    co: Range<usize>,
    hw: usize,
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    for (r, c) in co.enumerate() {
        let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[c]));
        let src = &scratch.0[r * BLOCK..][..BLOCK];
        for run in runs {
            let src = &src[run.col..][..run.len];
            let dst = &mut out[run.dst + c * hw..][..run.len];
            for half in (0..run.len).step_by(16) {
                let mask = first(run.len - half);
                // SAFETY: the mask enables lanes 0..min(16, len - half), elements
                // half.. of `src` and `dst`, both `len` long; MaybeUninit<f32> is f32.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, src[half..].as_ptr());
                    let v = _mm512_add_ps(v, b);
                    _mm512_mask_storeu_ps(dst[half..].as_mut_ptr().cast(), mask, v);
                }
            }
        }
    }
}

/// The images `x` (`images x channels x h x w`) as channel pairs in the flat layout,
/// `pairs[p * stride + q]` = `(x[2p][q], x[2p + 1][q])`, zero at padding positions
/// and for channels past `channels`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn build_pairs(x: &[f32], channels: usize, flat: &Flat, stride: usize, pairs: &mut [u32]) {
    let (row, hw) = (flat.row(), flat.h * flat.w);
    for (p, plane) in pairs.chunks_exact_mut(stride).enumerate() {
        plane[..flat.guard()].fill(0);
        for image in 0..flat.images {
            let channel =
                |c: usize| (c < channels).then(|| &x[(image * channels + c) * hw..][..hw]);
            let (even, odd) = (channel(2 * p), channel(2 * p + 1));
            let base = flat.position(image, 0);
            for y in 0..flat.h {
                let dst = &mut plane[base + y * row..][..row];
                for x0 in (0..row).step_by(16) {
                    let n = flat.w.saturating_sub(x0).min(16);
                    let load = |src: Option<&[f32]>| match src {
                        // SAFETY: lanes 0..n are pixels x0..x0 + n of row y, inside the plane.
                        Some(src) if n > 0 => unsafe {
                            _mm512_maskz_loadu_ps(first(n), src[y * flat.w + x0..].as_ptr())
                        },
                        _ => _mm512_setzero_ps(),
                    };
                    let v = pairs16(load(even), load(odd));
                    // SAFETY: the mask enables row - x0 (at most 16) lanes, all in `dst`.
                    unsafe {
                        _mm512_mask_storeu_epi32(dst[x0..].as_mut_ptr().cast(), first(row - x0), v)
                    };
                }
            }
            plane[base + flat.h * row..][..row].fill(0);
        }
        plane[flat.guard() + flat.images * flat.image()..].fill(0);
    }
}

/// Splits `0..batch` into per-thread groups and runs the weight gradient of each, then
/// sums them: `dW` as `[C_out][C_in][3][3]`.
pub(super) fn weight_grad(cpu: Cpu, x: &[f32], gy: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let (c_in, c_out, hw) = (g.in_channels, g.out_channels, g.in_h * g.in_w);
    let (ci_pad, co_pad) = (c_in.next_multiple_of(BLOCK), c_out.next_multiple_of(BLOCK));
    let partials: Vec<Vec<f32>> = groups(g.batch)
        .par_iter()
        .map(|range| {
            let x = &x[range.start * c_in * hw..range.end * c_in * hw];
            let gy = &gy[range.start * c_out * hw..range.end * c_out * hw];
            weight_grad_group(cpu, x, gy, range.len(), g)
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut total = partials
        .next()
        .unwrap_or_else(|| vec![0.0; 9 * co_pad * ci_pad]);
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    let mut gw = vec![0.0f32; c_out * c_in * 9];
    for (co, gw) in gw.chunks_exact_mut(c_in * 9).enumerate() {
        for (ci, gw) in gw.chunks_exact_mut(9).enumerate() {
            for (t, gw) in gw.iter_mut().enumerate() {
                *gw = total[(t * co_pad + co) * ci_pad + ci];
            }
        }
    }
    gw
}

/// One thread's images: `[tap][C_out padded][C_in padded]` sums.
fn weight_grad_group(
    cpu: Cpu,
    x: &[f32],
    gy: &[f32],
    images: usize,
    g: &Conv2dGeometry,
) -> Vec<f32> {
    let (c_in, c_out, h, w) = (g.in_channels, g.out_channels, g.in_h, g.in_w);
    let hw = h * w;
    let (ci_pad, co_pad) = (c_in.next_multiple_of(BLOCK), c_out.next_multiple_of(BLOCK));
    let len = 9 * co_pad * ci_pad;
    if images == 0 {
        return vec![0.0; len];
    }
    // The first pass over the blocks writes every block of `acc`; later ones add to it.
    let mut acc: Vec<f32> = Vec::with_capacity(len);
    let acc_ptr = acc.spare_capacity_mut().as_mut_ptr().cast::<f32>();
    let session = cpu.session();
    let one = Flat { h, w, images: 1 };
    let per_chunk =
        (IMAGE_BYTES / ((co_pad + 2 * ci_pad) * 2 * one.image())).clamp(1, images.max(1));
    let (mut gy_rows, mut x_rows, mut transposed) =
        (Vec::new(), Vec::new(), [Vec::new(), Vec::new()]);
    for first_image in (0..images).step_by(per_chunk) {
        let n = per_chunk.min(images - first_image);
        let flat = Flat { h, w, images: n };
        let gy_len = flat.stride(flat.len(), 2);
        let pair_rows = (flat.len() / 2 + 1).next_multiple_of(16);
        let x_len = flat.stride(2 * pair_rows + 2, 2);
        gy_rows.resize(co_pad * gy_len, 0u16);
        x_rows.resize(ci_pad * x_len, 0u16);
        let gy = &gy[first_image * c_out * hw..][..n * c_out * hw];
        let x = &x[first_image * c_in * hw..][..n * c_in * hw];
        // SAFETY: the Cpu proves AVX512-BF16.
        unsafe {
            build_rows(gy, c_out, &flat, gy_len, &mut gy_rows);
            build_rows(x, c_in, &flat, x_len, &mut x_rows);
            for (e, t) in transposed.iter_mut().enumerate() {
                t.resize(pair_rows * ci_pad, 0u32);
                build_position_pairs(&x_rows, x_len, ci_pad, pair_rows, e, t);
            }
        }
        let guard = flat.guard();
        for fb0 in (0..flat.blocks()).step_by(WEIGHT_GRAD_BLOCKS) {
            let fbs = fb0..(fb0 + WEIGHT_GRAD_BLOCKS).min(flat.blocks());
            // Per tap: which copy of the transposed image, and the steps over `fbs`.
            let taps: Vec<(usize, Vec<Step>)> = (0..9)
                .map(|t| {
                    let start = |fb: usize| (guard + fb * BLOCK) as isize + flat.shift(t);
                    let e = (start(0) & 1) as usize;
                    let steps = fbs
                        .clone()
                        .map(|fb| Step {
                            a: (fb * BLOCK * 2) as isize,
                            b: (start(fb) - e as isize) / 2 * (ci_pad * 4) as isize,
                        })
                        .collect();
                    (e, steps)
                })
                .collect();
            let first_pass = first_image == 0 && fb0 == 0;
            for co_block in 0..co_pad / BLOCK {
                for ci_block in 0..ci_pad / BLOCK {
                    for (t, (e, steps)) in taps.iter().enumerate() {
                        let block = Block {
                            a: gy_rows[co_block * BLOCK * gy_len + guard..].as_ptr().cast(),
                            a_stride: gy_len * 2,
                            b: transposed[*e][ci_block * BLOCK..].as_ptr().cast(),
                            b_stride: ci_pad * 4,
                            c: acc_ptr.wrapping_add(
                                (t * co_pad + co_block * BLOCK) * ci_pad + ci_block * BLOCK,
                            ),
                            c_stride: ci_pad * 4,
                        };
                        // SAFETY: A: rows co_block*32 + 0..32 of gy_rows, positions
                        // guard + 32 fb + 0..32 < gy_len. B: pair rows j0 + 0..16 where
                        // 2 j0 + e is a tap's start, at most len - 32, so below
                        // pair_rows; columns ci_block*32 + 0..32 <= ci_pad. C: a 32x32
                        // block of the tap's co_pad x ci_pad sums. Session on this thread.
                        unsafe { microkernel::run(&session, &block, steps, !first_pass) };
                    }
                }
            }
        }
    }
    drop(session);
    // SAFETY: the first pass (there is one: images > 0 and every chunk has a block)
    // wrote all 9 x co_pad x ci_pad sums, block by block.
    unsafe { acc.set_len(len) };
    acc
}

/// Each of `channels` channels of the images `src` as one bf16 row of `row_len`
/// positions in the flat layout (zero at padding positions and past the images), then
/// zero rows up to `rows.len() / row_len`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn build_rows(src: &[f32], channels: usize, flat: &Flat, row_len: usize, rows: &mut [u16]) {
    let (row, hw) = (flat.row(), flat.h * flat.w);
    for (c, dst) in rows.chunks_exact_mut(row_len).enumerate() {
        if c >= channels {
            dst.fill(0);
            continue;
        }
        dst[..flat.guard()].fill(0);
        for image in 0..flat.images {
            let plane = &src[(image * channels + c) * hw..][..hw];
            let base = flat.position(image, 0);
            for y in 0..flat.h {
                let line = &mut dst[base + y * row..][..row];
                for x0 in (0..row).step_by(32) {
                    let n = flat.w.saturating_sub(x0).min(32);
                    let src = &plane[(y * flat.w + x0).min(hw)..];
                    // SAFETY: the masks enable lanes 0..n, pixels x0..x0 + n of row y.
                    let v = unsafe {
                        let lo = _mm512_maskz_loadu_ps(first(n), src.as_ptr());
                        let hi = if n > 16 {
                            _mm512_maskz_loadu_ps(first(n - 16), src[16..].as_ptr())
                        } else {
                            _mm512_setzero_ps()
                        };
                        round32(lo, hi)
                    };
                    let lanes = (row - x0).min(32);
                    let mask = if lanes >= 32 {
                        u32::MAX
                    } else {
                        (1u32 << lanes) - 1
                    };
                    // SAFETY: the mask enables `lanes` halfwords, all inside `line`.
                    unsafe { _mm512_mask_storeu_epi16(line[x0..].as_mut_ptr().cast(), mask, v) };
                }
            }
            dst[base + flat.h * row..][..row].fill(0);
        }
        dst[flat.guard() + flat.images * flat.image()..].fill(0);
    }
}

/// Rows of positions transposed into pairs: `out[j * ci_pad + c]` =
/// `(rows[c][2j + e], rows[c][2j + 1 + e])`, for `j < pair_rows` (a multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn build_position_pairs(
    rows: &[u16],
    row_len: usize,
    ci_pad: usize,
    pair_rows: usize,
    e: usize,
    out: &mut [u32],
) {
    assert!(row_len >= 2 * pair_rows + 2 && rows.len() >= ci_pad * row_len);
    assert!(out.len() >= pair_rows * ci_pad);
    for c0 in (0..ci_pad).step_by(16) {
        for j0 in (0..pair_rows).step_by(16) {
            let mut words: [__m512i; 16] = std::array::from_fn(|r| {
                let src = &rows[(c0 + r) * row_len + 2 * j0 + e..][..32];
                // SAFETY: `src` holds the 32 halfwords (64 bytes) loaded.
                unsafe { _mm512_loadu_si512(src.as_ptr().cast()) }
            });
            transpose16(&mut words);
            for (i, word) in words.into_iter().enumerate() {
                let dst = &mut out[(j0 + i) * ci_pad + c0..][..16];
                // SAFETY: `dst` holds the 16 words stored.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), word) };
            }
        }
    }
}
