//! How a convolution stores its f32 sums: as they are, or rounded once to bf16 (an
//! activation under autocast, as PyTorch's convolution returns it).
//!
//! The sums are the same either way (bias included), so a bf16 output is, bit for bit,
//! [`narrow`] of the f32 output; it is rounded as it is written, never through an f32
//! copy of the output.

use std::arch::x86_64::*;

use half::bf16;

use super::lanes::narrow16;
use crate::bf16_values::narrow;

/// An element type a convolution's output is stored in.
pub(crate) trait Stored: Copy + Default + Send + Sync + 'static {
    /// `sum` as stored.
    fn from_sum(sum: f32) -> Self;

    /// `out` as a place the tiles may store f32 sums into directly: `Some` for an f32
    /// output, `None` where the sums must be rounded on the way.
    fn in_place(out: *mut Self) -> Option<*mut f32>;

    /// Stores the lanes of `v` that `mask` enables at `dst`, as [`Stored::from_sum`] does.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX512-BF16; the enabled lanes' elements
    /// from `dst` on must be writable.
    unsafe fn store16(dst: *mut Self, mask: __mmask16, v: __m512);
}

impl Stored for f32 {
    #[inline]
    fn from_sum(sum: f32) -> f32 {
        sum
    }

    #[inline]
    fn in_place(out: *mut f32) -> Option<*mut f32> {
        Some(out)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn store16(dst: *mut f32, mask: __mmask16, v: __m512) {
        // SAFETY: the caller's contract.
        unsafe { _mm512_mask_storeu_ps(dst, mask, v) }
    }
}

impl Stored for bf16 {
    #[inline]
    fn from_sum(sum: f32) -> bf16 {
        narrow(sum)
    }

    #[inline]
    fn in_place(_: *mut bf16) -> Option<*mut f32> {
        None
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn store16(dst: *mut bf16, mask: __mmask16, v: __m512) {
        // SAFETY: the caller's contract; VPMOVDW stores the low halfword of each enabled
        // lane, where `narrow16` put the rounded value.
        unsafe { _mm512_mask_cvtepi32_storeu_epi16(dst.cast(), mask, narrow16(v)) }
    }
}
