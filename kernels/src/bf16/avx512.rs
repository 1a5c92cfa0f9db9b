//! The AVX512-BF16 micro-kernel: the same block as the AMX one (see `microkernel`), eight
//! rows of `C` at a time in sixteen zmm accumulators.
//!
//! `VDPBF16PS acc, a, b` adds `a[2i] * b[2i] + a[2i + 1] * b[2i + 1]` to each f32 lane `i`:
//! with `b` one VNNI row of `B_s` (16 columns, a k-pair each) and `a` the k-pair of one row
//! of `A_s` broadcast to every lane, one instruction advances 16 outputs by two steps of k.
//! Its intrinsic is stable since Rust 1.89.

use std::arch::x86_64::*;

use super::microkernel::{Block, Init, Step};

/// Rows of `C` per pass over the steps: 8 rows x 2 halves = 16 accumulators, plus the two
/// `B` rows and a broadcast, leave the other registers for addresses.
const ROWS: usize = 8;

/// One block: see `microkernel::run`, whose safety contract this inherits; the CPU must
/// have AVX-512 F/BW/VL and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) unsafe fn block(block: &Block, steps: &[Step], init: Init) {
    let c_row = |r: usize, half: usize| {
        let row = block.c.cast::<u8>().wrapping_add(r * block.c_stride);
        row.wrapping_offset(half as isize * block.c_half)
            .cast::<f32>()
    };
    for first in (0..32).step_by(ROWS) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the rows read are C's (Accumulate) or the init rows (Rows), readable
            // per the caller's contract.
            unsafe {
                match init {
                    Init::Zero => {}
                    Init::Accumulate => {
                        acc[0] = _mm512_loadu_ps(c_row(first + r, 0));
                        acc[1] = _mm512_loadu_ps(c_row(first + r, 1));
                    }
                    Init::Rows(rows) => {
                        let v = _mm512_loadu_ps(rows.add(16 * (first + r)));
                        *acc = [v, v];
                    }
                }
            }
        }
        for step in steps {
            let a = block
                .a
                .wrapping_offset(step.a)
                .wrapping_add(first * block.a_stride);
            let b = block.b.wrapping_offset(step.b);
            for pair in 0..16 {
                let b_row = b.wrapping_add(pair * block.b_stride);
                // SAFETY: both halves of row `pair` of B_s hold 64 readable bytes (caller's
                // contract); __m512i and __m512bh are both 64 bytes of plain bits.
                let (b0, b1): (__m512bh, __m512bh) = unsafe {
                    (
                        std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b_row.cast())),
                        std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                            b_row.wrapping_offset(block.b_half).cast(),
                        )),
                    )
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: row `first + r` of A_s holds 64 readable bytes, of which this
                    // reads the 4 of k-pair `pair`; same-size plain-bits transmute.
                    let a_pair: __m512bh = unsafe {
                        let at = a.add(r * block.a_stride + 4 * pair).cast::<i32>();
                        std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                            at.read_unaligned(),
                        ))
                    };
                    acc[0] = _mm512_dpbf16_ps(acc[0], a_pair, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], a_pair, b1);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: both halves of row `first + r` of C hold 16 writable f32 (caller's
            // contract).
            unsafe {
                _mm512_storeu_ps(c_row(first + r, 0), acc[0]);
                _mm512_storeu_ps(c_row(first + r, 1), acc[1]);
            }
        }
    }
}
