//! The "flat" layout of a chunk of images, in which a 3x3 convolution with padding 1
//! becomes nine shifted products (`conv3x3.rs`), and the bf16 copies of images in it.
//!
//! One run of positions holds the chunk: each image row is followed by one zero (the
//! right padding of a row is the left padding of the next), each image by one zero row
//! (its bottom padding is the next image's top padding), and the first image is preceded
//! by `W + 2` zeros:
//!
//! ```text
//! position(image, y, x) = (W + 2) + image * (H + 1)(W + 1) + y * (W + 1) + x
//! ```
//!
//! Copies, all bf16 (rounded from f32 NCHW images, or copied from bf16 ones) and zero at
//! every padding position:
//!
//! - rows: one row of positions per channel (`build_rows`);
//! - channel pairs: word `(p, q)` = `(x[2p][q], x[2p + 1][q])`, sixteen positions of a
//!   pair in one 64-byte tile row (`build_pairs`, `pairs_from_rows`);
//! - position pairs: word `(j, c)` = `(x[c][q0 + 2j], x[c][q0 + 2j + 1])`, sixteen
//!   channels of a pair of positions in one tile row (`position_pairs`).

use std::arch::x86_64::*;

use super::lanes::{first, first32, pairs, transpose16};
use super::microkernel::BLOCK;
use super::source::{Packable, Values};

/// The flat layout of `images` images of `h x w`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Flat {
    pub h: usize,
    pub w: usize,
    pub images: usize,
}

impl Flat {
    pub fn row(&self) -> usize {
        self.w + 1
    }

    /// Positions per image.
    pub fn image(&self) -> usize {
        (self.h + 1) * self.row()
    }

    pub fn guard(&self) -> usize {
        self.row() + 1
    }

    /// The position of pixel `(image, y, 0)`.
    pub fn position(&self, image: usize, y: usize) -> usize {
        self.guard() + image * self.image() + y * self.row()
    }

    /// Blocks of 32 output positions covering every image.
    pub fn blocks(&self) -> usize {
        (self.images * self.image()).div_ceil(BLOCK)
    }

    /// Positions stored: the farthest tap of the last block reads just below this.
    pub fn len(&self) -> usize {
        self.guard() + self.blocks() * BLOCK + self.row() + 1
    }

    /// How far tap `tap` (`3 * ky + kx`) reads from the output position.
    pub fn shift(&self, tap: usize) -> isize {
        ((tap / 3) as isize - 1) * self.row() as isize + (tap % 3) as isize - 1
    }
}

/// Elements of `bytes` bytes between the starts of two rows of a copy: the least
/// `n >= len` that is an odd number of 64-byte lines. The sixteen rows of a tile, one
/// row apart, then fall into sixteen different sets of the L1 cache; rows a multiple of
/// 4 KiB apart would all map to one set of its twelve ways, and each tile load would
/// evict the rows it needs next.
pub(super) fn stride(len: usize, bytes: usize) -> usize {
    let per_line = 64 / bytes;
    (len.div_ceil(per_line) | 1) * per_line
}

/// Each channel of the images `src` (`images x channels x h x w`) as one row of
/// `rows.len() / stride` rows of `stride` positions (rows past `channels` zero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn build_rows(
    src: Values,
    channels: usize,
    flat: &Flat,
    stride: usize,
    rows: &mut [u16],
) {
    match src {
        Values::F32(src) => rows_of(src, channels, flat, stride, rows),
        Values::Bf16(src) => rows_of(src, channels, flat, stride, rows),
    }
}

/// [`build_rows`] of images of `T`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn rows_of<T: Packable>(src: &[T], channels: usize, flat: &Flat, stride: usize, rows: &mut [u16]) {
    let (w, hw) = (flat.w, flat.h * flat.w);
    for (c, dst) in rows.chunks_exact_mut(stride).enumerate() {
        if c >= channels {
            dst.fill(0);
            continue;
        }
        dst[..flat.guard()].fill(0);
        for image in 0..flat.images {
            let plane = &src[(image * channels + c) * hw..][..hw];
            let base = flat.position(image, 0);
            for (y, pixels) in plane.chunks_exact(w).enumerate() {
                let line = &mut dst[base + y * flat.row()..][..flat.row()];
                for x0 in (0..w).step_by(32) {
                    let n = (w - x0).min(32);
                    // SAFETY: AVX512-BF16 is enabled here; the mask enables positions
                    // x0..x0 + n of `line`, stored.
                    unsafe {
                        let v = T::load32(&pixels[x0..], n);
                        _mm512_mask_storeu_epi16(line[x0..].as_mut_ptr().cast(), first32(n), v);
                    }
                }
                line[w] = 0;
            }
            dst[base + flat.h * flat.row()..][..flat.row()].fill(0);
        }
        dst[flat.guard() + flat.images * flat.image()..].fill(0);
    }
}

/// The images `src` (`images x channels x h x w`) as channel pairs, planes `stride` words
/// apart: `out[p * stride + q]` = `(x[2p][q], x[2p + 1][q])` (channels past `channels`
/// zero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn build_pairs(
    src: Values,
    channels: usize,
    flat: &Flat,
    stride: usize,
    out: &mut [u32],
) {
    match src {
        Values::F32(src) => pairs_of(src, channels, flat, stride, out),
        Values::Bf16(src) => pairs_of(src, channels, flat, stride, out),
    }
}

/// [`build_pairs`] of images of `T`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn pairs_of<T: Packable>(src: &[T], channels: usize, flat: &Flat, stride: usize, out: &mut [u32]) {
    let (w, hw) = (flat.w, flat.h * flat.w);
    for (p, plane) in out.chunks_exact_mut(stride).enumerate() {
        plane[..flat.guard()].fill(0);
        for image in 0..flat.images {
            let channel =
                |c: usize| (c < channels).then(|| &src[(image * channels + c) * hw..][..hw]);
            let (even, odd) = (channel(2 * p), channel(2 * p + 1));
            let base = flat.position(image, 0);
            for y in 0..flat.h {
                let line = &mut plane[base + y * flat.row()..][..flat.row()];
                for x0 in (0..w).step_by(32) {
                    let n = (w - x0).min(32);
                    let load = |channel: Option<&[T]>| match channel {
                        // SAFETY: AVX512-BF16 is enabled here.
                        Some(c) => unsafe { T::load32(&c[y * w + x0..], n) },
                        None => _mm512_setzero_si512(),
                    };
                    let (even, odd) = (load(even), load(odd));
                    // SAFETY: the masks enable positions x0..x0 + n of `line` (the first 16
                    // words, then the next n - 16).
                    unsafe {
                        let dst = line[x0..].as_mut_ptr();
                        _mm512_mask_storeu_epi32(dst.cast(), first(n), pairs(even, odd, 0));
                        if n > 16 {
                            let v = pairs(even, odd, 1);
                            _mm512_mask_storeu_epi32(dst.add(16).cast(), first(n - 16), v);
                        }
                    }
                }
                line[w] = 0;
            }
            plane[base + flat.h * flat.row()..][..flat.row()].fill(0);
        }
        plane[flat.guard() + flat.images * flat.image()..].fill(0);
    }
}

/// Channel pairs from rows: `out[p * pair_stride + q]` = `(rows[2p][q], rows[2p + 1][q])`
/// for positions `q < len`; `rows` holds an even number of rows, `row_stride` apart.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn pairs_from_rows(
    rows: &[u16],
    row_stride: usize,
    len: usize,
    out: &mut [u32],
    pair_stride: usize,
) {
    assert!(len <= row_stride && len <= pair_stride);
    for (pair, plane) in rows
        .chunks_exact(2 * row_stride)
        .zip(out.chunks_exact_mut(pair_stride))
    {
        let (even, odd) = pair.split_at(row_stride);
        for q0 in (0..len).step_by(32) {
            let n = (len - q0).min(32);
            // SAFETY: the masks enable positions q0..q0 + n < len of both rows (loads) and
            // of the pair plane (stores: the first 16 words, then the next n - 16).
            unsafe {
                let a = _mm512_maskz_loadu_epi16(first32(n), even[q0..].as_ptr().cast());
                let b = _mm512_maskz_loadu_epi16(first32(n), odd[q0..].as_ptr().cast());
                let dst = plane[q0..].as_mut_ptr();
                _mm512_mask_storeu_epi32(dst.cast(), first(n), pairs(a, b, 0));
                if n > 16 {
                    _mm512_mask_storeu_epi32(dst.add(16).cast(), first(n - 16), pairs(a, b, 1));
                }
            }
        }
    }
}

/// Position pairs from rows: `out[j * channels + c]` = `(rows[c][start + 2j],
/// rows[c][start + 2j + 1])` for `j < pair_rows` (a multiple of 16) and `c < channels` (a
/// multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn position_pairs(
    rows: &[u16],
    row_stride: usize,
    channels: usize,
    start: usize,
    pair_rows: usize,
    out: &mut [u32],
) {
    assert!(start + 2 * pair_rows <= row_stride && rows.len() >= channels * row_stride);
    assert!(
        out.len() >= pair_rows * channels
            && channels.is_multiple_of(16)
            && pair_rows.is_multiple_of(16)
    );
    for c0 in (0..channels).step_by(16) {
        for j0 in (0..pair_rows).step_by(16) {
            let mut words: [__m512i; 16] = std::array::from_fn(|r| {
                let src = &rows[(c0 + r) * row_stride + start + 2 * j0..][..32];
                // SAFETY: `src` holds the 32 halfwords (64 bytes) loaded.
                unsafe { _mm512_loadu_si512(src.as_ptr().cast()) }
            });
            transpose16(&mut words);
            for (i, word) in words.into_iter().enumerate() {
                let dst = &mut out[(j0 + i) * channels + c0..][..16];
                // SAFETY: `dst` holds the 16 words stored.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), word) };
            }
        }
    }
}
