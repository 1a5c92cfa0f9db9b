//! The forward product `y = W * col` of an f32 convolution on AVX-512, without the `gemm`
//! crate's packing of `col`.
//!
//! `im2col` already writes `col` (`[C_in*KH*KW, columns]`) in a layout a micro-kernel can
//! stream: for each depth step it reads 48 consecutive columns of one row. Only the weight
//! matrix is packed, once per call, into panels of [`ROWS`] output channels with those
//! channels adjacent for each depth step. Each 8 x 48 block of `y` is summed in 24
//! registers over 128 steps of depth at a time, starting from the bias.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels per panel (registers broadcast per depth step).
pub const ROWS: usize = 8;
/// Columns per block: three registers of 16 f32.
const COLUMNS: usize = 48;

/// Whether this CPU runs the packed path.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `w` (`[c_out, depth]`, row-major, `c_out` a multiple of [`ROWS`]) as panels of
/// [`ROWS`] rows, each stored depth-major: `panel[k * ROWS + r] = w[(p*ROWS + r) * depth + k]`.
pub fn pack_weights(w: &[f32], c_out: usize, depth: usize) -> Vec<f32> {
    assert!(c_out.is_multiple_of(ROWS) && w.len() == c_out * depth);
    let mut packed = vec![0.0; w.len()];
    for (panel, out) in packed.chunks_exact_mut(ROWS * depth).enumerate() {
        for r in 0..ROWS {
            let row = &w[(panel * ROWS + r) * depth..][..depth];
            for (k, &v) in row.iter().enumerate() {
                out[k * ROWS + r] = v;
            }
        }
    }
    packed
}

/// `y = W * b (+ bias)`: `y` is `c_out x columns` with rows `y_stride` apart, `b` is
/// `depth x columns` with rows `b_stride` apart, `packed` is [`pack_weights`] of `W`.
///
/// # Panics
///
/// If a buffer is shorter than its shape says, or [`available`] is false.
#[allow(clippy::too_many_arguments)]
pub fn product(
    packed: &[f32],
    c_out: usize,
    depth: usize,
    b: &[f32],
    b_stride: usize,
    columns: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    y_stride: usize,
) {
    assert!(available(), "packed conv2d product needs AVX-512");
    assert!(c_out.is_multiple_of(ROWS) && packed.len() == c_out * depth);
    assert!(bias.is_none_or(|bias| bias.len() == c_out));
    if c_out == 0 || columns == 0 {
        return;
    }
    // The last row read or written of each operand must lie inside it.
    assert!(b_stride >= columns && y_stride >= columns);
    assert!(depth == 0 || (depth - 1) * b_stride + columns <= b.len());
    assert!((c_out - 1) * y_stride + columns <= y.len());
    // Depth in slices of DEPTH_BLOCK, so that the block of `b` being multiplied (48
    // columns) stays in the L1 cache while every panel of weights passes over it.
    #[cfg(target_arch = "x86_64")]
    for k0 in (0..depth.max(1)).step_by(DEPTH_BLOCK) {
        let steps = DEPTH_BLOCK.min(depth - k0);
        let start_from = if k0 == 0 {
            Start::Bias(bias)
        } else {
            Start::Output
        };
        for start in (0..columns).step_by(COLUMNS) {
            let width = COLUMNS.min(columns - start);
            for panel in 0..c_out / ROWS {
                let first_row = panel * ROWS;
                let start_from = match start_from {
                    Start::Bias(bias) => Start::Bias(bias.map(|b| &b[first_row..])),
                    Start::Output => Start::Output,
                };
                // SAFETY: AVX-512F is present (asserted). The kernel reads `steps` rows
                // of `width` values of `b` from row `k0`, column `start` (rows `b_stride`
                // apart), the weights of depth `k0..k0 + steps` of this panel, and reads
                // and writes ROWS rows of `width` values of `y` from row `first_row`,
                // column `start`; the asserts above bound all of these by the lengths.
                unsafe {
                    let args = (
                        packed.as_ptr().add(panel * ROWS * depth + k0 * ROWS),
                        steps,
                        b.as_ptr().add(k0 * b_stride + start),
                        b_stride,
                        width,
                        start_from,
                        y.as_mut_ptr().add(first_row * y_stride + start),
                        y_stride,
                    );
                    // A narrow last block runs with as few registers as its width needs.
                    match width.div_ceil(16) {
                        1 => block::<1>(args),
                        2 => block::<2>(args),
                        _ => block::<3>(args),
                    }
                }
            }
        }
    }
}

/// Depth steps per pass over a block of columns (48 columns x 128 steps = 24 KiB of `b`).
const DEPTH_BLOCK: usize = 128;

/// What a block's sums start from.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// The bias of the block's first row onwards (zero without bias): the first slice of depth.
    Bias(Option<&'a [f32]>),
    /// The partial sums already in the output: later slices.
    Output,
}

/// Weights, depth, `b`, its row stride, width, start, `y`, its row stride.
type BlockArgs<'a> = (
    *const f32,
    usize,
    *const f32,
    usize,
    usize,
    Start<'a>,
    *mut f32,
    usize,
);

/// One block of `ROWS x width` outputs (`width <= COLUMNS`): 24 accumulators summed over
/// `depth` steps, the columns past `width` masked off in every load and store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block<const V: usize>(args: BlockArgs<'_>) {
    let (weights, depth, b, b_stride, width, start_from, y, y_stride) = args;
    let mask = |part: usize| -> __mmask16 {
        let valid = width.saturating_sub(16 * part).min(16);
        ((1u32 << valid) - 1) as __mmask16
    };
    let masks: [__mmask16; V] = std::array::from_fn(mask);
    let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
    match start_from {
        Start::Bias(Some(bias)) => {
            for (row, &value) in acc.iter_mut().zip(bias) {
                *row = [_mm512_set1_ps(value); V];
            }
        }
        Start::Bias(None) => {}
        Start::Output => {
            for (r, row) in acc.iter_mut().enumerate() {
                let out = y.add(r * y_stride);
                for (part, a) in row.iter_mut().enumerate() {
                    *a = _mm512_maskz_loadu_ps(masks[part], out.add(16 * part));
                }
            }
        }
    }
    let full = width == 16 * V;
    for k in 0..depth {
        let row = b.add(k * b_stride);
        let cols: [__m512; V] = if full {
            std::array::from_fn(|part| _mm512_loadu_ps(row.add(16 * part)))
        } else {
            std::array::from_fn(|part| _mm512_maskz_loadu_ps(masks[part], row.add(16 * part)))
        };
        let w = weights.add(k * ROWS);
        for (r, acc) in acc.iter_mut().enumerate() {
            let weight = _mm512_set1_ps(*w.add(r));
            for (a, &c) in acc.iter_mut().zip(&cols) {
                *a = _mm512_fmadd_ps(weight, c, *a);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = y.add(r * y_stride);
        for (part, &a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add(16 * part), masks[part], a);
        }
    }
}
