//! Convolutions whose receptive field holds few values, like airbench94's whitening layer
//! (3 channels x 2x2 = 12 taps), in bf16, forward only: direct f32 multiply-adds along
//! the output rows.
//!
//! The matrix unit multiplies 32 values deep per step, so a depth of 12 leaves most of it
//! idle, and im2col packing gathers every input value once per tap. Here each image is
//! rounded to bf16 once, into an f32 scratch padded with zeros (the very values the matrix
//! path multiplies), and each output row is the sum over the taps of a shifted input row
//! times one bf16-rounded weight. A product of two bf16 values is exact in f32, so a fused
//! multiply-add rounds only the sum: the result is the matrix path's up to the order of
//! the f32 additions, within the same bound (`tests.rs` checks both against f64).

use std::arch::x86_64::*;

use super::source::Values;
use super::stored::Stored;
use crate::bf16_values::{narrow, widen};
use crate::conv2d::Conv2dGeometry;
use crate::output::filled_in_parallel;

/// Receptive fields of at most this many values take this path: half the matrix unit's
/// depth of 32 or less.
const MAX_TAPS: usize = 16;

/// Output columns per vector.
const LANES: usize = 16;

/// Whether `g` takes this path: stride 1 and at most [`MAX_TAPS`] values per field.
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1] && g.in_channels * g.kernel[0] * g.kernel[1] <= MAX_TAPS
}

/// `y = conv(x, w) + b`, `[N, C_out, OH, OW]`, stored as `O`; `g` must satisfy
/// [`applies`] and the operands its sizes (checked by `conv2d::forward_bf16`).
pub(super) fn forward<O: Stored>(
    x: Values,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
) -> Vec<O> {
    let weights = grouped_weights(w, g);
    let offsets = tap_offsets(g);
    let in_image = g.in_channels * g.in_h * g.in_w;
    let out_image = g.out_channels * g.out_h * g.out_w;
    filled_in_parallel(g.batch * out_image, out_image, 1, |n, out| {
        let image = padded_image(x.slice(n * in_image..(n + 1) * in_image), g);
        // SAFETY: a bf16 convolution runs only where `Cpu::best` found AVX512-BF16 or AMX,
        // both of which come with AVX-512 F; `out` is one output image.
        unsafe { image_forward(&image, &weights, &offsets, bias, g, out) }
    })
}

/// The weights rounded to bf16 (and widened back), by groups of [`CHANNELS`] output
/// channels, each group tap by tap (`[group][tap][CHANNELS]`), zero for channels past the
/// last.
fn grouped_weights(w: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let depth = g.in_channels * g.kernel[0] * g.kernel[1];
    let groups = g.out_channels.div_ceil(CHANNELS);
    let mut grouped = vec![0.0f32; groups * depth * CHANNELS];
    for (c, filter) in w.chunks_exact(depth).enumerate() {
        let group = &mut grouped[c / CHANNELS * depth * CHANNELS..][..depth * CHANNELS];
        for (t, &v) in filter.iter().enumerate() {
            group[t * CHANNELS + c % CHANNELS] = widen(narrow(v));
        }
    }
    grouped
}

/// Where each tap reads in a padded image, relative to the output pixel's top-left input
/// cell, in the weights' `[C_in, KH, KW]` order.
fn tap_offsets(g: &Conv2dGeometry) -> Vec<usize> {
    let [kh, kw] = g.kernel;
    let cols = g.in_w + 2 * g.padding[1];
    let rows = g.in_h + 2 * g.padding[0];
    (0..g.in_channels)
        .flat_map(|c| {
            (0..kh).flat_map(move |dy| (0..kw).map(move |dx| (c * rows + dy) * cols + dx))
        })
        .collect()
}

/// One input image, each value rounded to bf16 and widened back, with `g.padding` zeros
/// around each plane.
fn padded_image(x: Values, g: &Conv2dGeometry) -> Vec<f32> {
    let [ph, pw] = g.padding;
    let (rows, cols) = (g.in_h + 2 * ph, g.in_w + 2 * pw);
    let mut padded = vec![0.0f32; g.in_channels * rows * cols];
    for (c, plane) in padded.chunks_exact_mut(rows * cols).enumerate() {
        for y in 0..g.in_h {
            let dst = &mut plane[(y + ph) * cols + pw..][..g.in_w];
            let start = (c * g.in_h + y) * g.in_w;
            match x.slice(start..start + g.in_w) {
                Values::F32(src) => {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = widen(narrow(s));
                    }
                }
                Values::Bf16(src) => {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = widen(s);
                    }
                }
            }
        }
    }
    padded
}

/// Output channels summed together: independent sums keep the multiply-adds from
/// waiting on each other (each takes 4 cycles before its result can be added to), and one
/// load of an input vector serves them all.
const CHANNELS: usize = 8;

/// Output image `out` (`[C_out, OH, OW]`) from one padded image, given the
/// [`grouped_weights`] and the [`tap_offsets`]: for each output row, 16 columns at a time,
/// [`CHANNELS`] vector sums over the taps, the bias added last (as the matrix path adds it
/// to the finished sum).
///
/// # Safety
/// The CPU must have AVX-512 F and AVX512-BF16 (for `O::store16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma")]
unsafe fn image_forward<O: Stored>(
    image: &[f32],
    weights: &[f32],
    offsets: &[usize],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
    out: &mut [O],
) {
    let cols = g.in_w + 2 * g.padding[1];
    let group_len = offsets.len() * CHANNELS;
    let plane = g.out_h * g.out_w;
    for (group, weights) in weights.chunks_exact(group_len).enumerate() {
        let first = group * CHANNELS;
        let channels = CHANNELS.min(g.out_channels - first);
        for oy in 0..g.out_h {
            for ox in (0..g.out_w).step_by(LANES) {
                let width = LANES.min(g.out_w - ox);
                let mask: __mmask16 = (1u32 << width).wrapping_sub(1) as u16;
                let corner = oy * cols + ox;
                let mut sums = [_mm512_setzero_ps(); CHANNELS];
                for (&offset, w) in offsets.iter().zip(weights.chunks_exact(CHANNELS)) {
                    // The enabled lanes read `corner + offset + 0..width`: at most row
                    // `oy + kh - 1 < rows` of channel `c`, column `ox + width - 1 + kw - 1
                    // < cols` (stride 1), so inside the padded image.
                    let src = &image[corner + offset..][..width];
                    // SAFETY: `mask` enables `width` lanes, all within `src`.
                    let v = unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr()) };
                    for j in 0..CHANNELS {
                        sums[j] = _mm512_fmadd_ps(v, _mm512_set1_ps(w[j]), sums[j]);
                    }
                }
                for (j, &sum) in sums.iter().enumerate().take(channels) {
                    let c = first + j;
                    let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[c]));
                    let dst = &mut out[c * plane + oy * g.out_w + ox..][..width];
                    // SAFETY: `mask` enables `width` lanes, all within `dst`; the CPU
                    // features are this function's contract.
                    unsafe { O::store16(dst.as_mut_ptr(), mask, _mm512_add_ps(sum, b)) };
                }
            }
        }
    }
}
