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
    let taps: Vec<f32> = w.iter().map(|&v| widen(narrow(v))).collect();
    let in_image = g.in_channels * g.in_h * g.in_w;
    let out_image = g.out_channels * g.out_h * g.out_w;
    filled_in_parallel(g.batch * out_image, out_image, 1, |n, out| {
        let image = padded_image(x.slice(n * in_image..(n + 1) * in_image), g);
        // SAFETY: a bf16 convolution runs only where `Cpu::best` found AVX512-BF16 or AMX,
        // both of which come with AVX-512 F; `out` is one output image.
        unsafe { image_forward(&image, &taps, bias, g, out) }
    })
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

/// Output image `out` (`[C_out, OH, OW]`) from one padded image: for each output row, 16
/// columns at a time, one vector sum over the taps, the bias added last (as the matrix
/// path adds it to the finished sum).
///
/// # Safety
/// The CPU must have AVX-512 F and AVX512-BF16 (for `O::store16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma")]
unsafe fn image_forward<O: Stored>(
    image: &[f32],
    taps: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
    out: &mut [O],
) {
    let [kh, kw] = g.kernel;
    let cols = g.in_w + 2 * g.padding[1];
    let plane = (g.in_h + 2 * g.padding[0]) * cols;
    for oc in 0..g.out_channels {
        let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[oc]));
        let weights = &taps[oc * g.in_channels * kh * kw..][..g.in_channels * kh * kw];
        for oy in 0..g.out_h {
            for ox in (0..g.out_w).step_by(LANES) {
                let width = LANES.min(g.out_w - ox);
                let mask: __mmask16 = (1u32 << width).wrapping_sub(1) as u16;
                let mut sum = _mm512_setzero_ps();
                let mut weight = weights.iter();
                for c in 0..g.in_channels {
                    for dy in 0..kh {
                        let row = &image[c * plane + (oy + dy) * cols..][..cols];
                        for dx in 0..kw {
                            let t = _mm512_set1_ps(*weight.next().expect("one weight per tap"));
                            // The row holds `ox + dx + width <= out_w - 1 + kw <= cols`
                            // values from `ox + dx` on (stride 1): in bounds.
                            let src = &row[ox + dx..ox + dx + width];
                            // SAFETY: `mask` enables `width` lanes, all within `src`.
                            let v = unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr()) };
                            sum = _mm512_fmadd_ps(v, t, sum);
                        }
                    }
                }
                let dst = &mut out[(oc * g.out_h + oy) * g.out_w + ox..][..width];
                // SAFETY: `mask` enables `width` lanes, all within `dst`; the CPU features
                // are this function's contract.
                unsafe { O::store16(dst.as_mut_ptr(), mask, _mm512_add_ps(sum, b)) };
            }
        }
    }
}
