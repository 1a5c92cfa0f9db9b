//! AVX-512 building blocks of the packing code: f32 to bf16 rounding, the VNNI pair
//! interleave, a 16x16 transpose of 32-bit words, and masks for partial rows; and the
//! rounding of f32 results stored as bf16 (`narrow16`).
//!
//! The packers' rounding (`round32`) is `VCVTNE2PS2BF16`'s: to nearest, ties to even,
//! exactly as `half::bf16::from_f32` for every normal f32 and infinity; NaNs stay NaN
//! (quietened), and f32 subnormals (below 1.2e-38) become zero, as in PyTorch's oneDNN
//! path. The dot-product instructions that read the packed operands treat bf16
//! subnormals as zero too, so a bf16 operand packed as it is, subnormals and all, gives
//! the same sums as its widened f32 values rounded here.
//!
//! Every function here needs AVX-512 F/BW/VL and AVX512-BF16: call them only from code
//! that runs after `Isa::check` succeeded (both instruction sets imply them).

use std::arch::x86_64::*;

/// The 32 values `lo ++ hi` rounded to bf16, in order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn round32(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: same-size plain-bits transmute.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
}

/// VNNI pairs of two runs of 32 bf16 (`round32`'s halfwords): 32-bit word `i` holds
/// `even[16 * half + i]` in its low and `odd[16 * half + i]` in its high half, for the
/// first (`half` 0) or the last (`half` 1) sixteen values of each run.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn pairs(even: __m512i, odd: __m512i, half: usize) -> __m512i {
    const LOW: [i16; 32] = interleave(0);
    const HIGH: [i16; 32] = interleave(16);
    let idx = if half == 0 { &LOW } else { &HIGH };
    // SAFETY: reads a 64-byte constant.
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    _mm512_permutex2var_epi16(even, idx, odd)
}

/// `VPERMT2W` indices interleaving halfwords `from..from + 16` of two vectors.
const fn interleave(from: i16) -> [i16; 32] {
    let mut idx = [0i16; 32];
    let mut i = 0;
    while i < 16 {
        idx[2 * i] = from + i as i16;
        idx[2 * i + 1] = 32 + from + i as i16;
        i += 1;
    }
    idx
}

/// The 16 values of `v` rounded to bf16 exactly as [`narrow`](crate::bf16_values::narrow)
/// rounds them, each in the low half of its 32-bit lane (for `VPMOVDW` to store).
///
/// Unlike `round32`'s instruction this keeps f32 values that round to bf16 subnormals
/// (the bf16 outputs of the convolutions must be `narrow` of their f32 outputs, bit for
/// bit): to nearest, ties to even, overflow to infinity, a NaN a quiet NaN.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn narrow16(v: __m512) -> __m512i {
    let bits = _mm512_castps_si512(v);
    let upper = _mm512_srli_epi32::<16>(bits);
    // Adding 0x7fff plus the kept half's lowest bit carries into the upper half exactly
    // when the dropped half is above one half, or at one half with the kept half odd.
    let carry = _mm512_add_epi32(
        _mm512_set1_epi32(0x7fff),
        _mm512_and_si512(upper, _mm512_set1_epi32(1)),
    );
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, carry));
    let quiet_nan = _mm512_or_si512(upper, _mm512_set1_epi32(0x40));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    _mm512_mask_blend_epi32(nan, rounded, quiet_nan)
}

/// Transposes a 16x16 matrix of 32-bit words held one row per register.
///
/// Four butterfly levels; level `s` exchanges, between rows `i` and `i + s` (bit `s` of
/// `i` clear), the words whose column has bit `s` set in row `i` with those whose column
/// has it clear in row `i + s`. Each level swaps bit `s` of the row and column indices
/// wherever they differ, so the four together map `(i, j)` to `(j, i)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn transpose16(rows: &mut [__m512i; 16]) {
    for (level, s) in [8usize, 4, 2, 1].into_iter().enumerate() {
        let [upper, lower] = BUTTERFLY[level];
        // SAFETY: reads two 64-byte constants.
        let (upper, lower) = unsafe {
            (
                _mm512_loadu_si512(upper.as_ptr().cast()),
                _mm512_loadu_si512(lower.as_ptr().cast()),
            )
        };
        for i in (0..16).filter(|i| i & s == 0) {
            let (a, b) = (rows[i], rows[i + s]);
            rows[i] = _mm512_permutex2var_epi32(a, upper, b);
            rows[i + s] = _mm512_permutex2var_epi32(a, lower, b);
        }
    }
}

/// `VPERMT2D` indices of [`transpose16`]'s levels 8, 4, 2, 1: for the upper row `i`, its own
/// word `j` where bit `s` of `j` is clear, else word `j - s` of row `i + s` (index
/// `16 + j - s`); for the lower row `i + s`, word `j + s` of row `i`, else its own word `j`.
const BUTTERFLY: [[[i32; 16]; 2]; 4] = {
    let mut table = [[[0i32; 16]; 2]; 4];
    let mut level = 0;
    while level < 4 {
        let s = 8 >> level;
        let mut j = 0;
        while j < 16 {
            let clear = j & s == 0;
            table[level][0][j] = if clear { j } else { 16 + j - s } as i32;
            table[level][1][j] = if clear { j + s } else { 16 + j } as i32;
            j += 1;
        }
        level += 1;
    }
    table
};

/// Lane mask of the first `n` of 16 lanes (`n` may exceed 16).
#[inline]
pub(super) fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Lane mask of the first `n` of 32 (16-bit) lanes (`n` may exceed 32).
#[inline]
pub(super) fn first32(n: usize) -> __mmask32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16::Isa;

    fn skip() -> bool {
        if let Err(e) = Isa::Avx512Bf16.check() {
            println!("SKIPPED: {e}");
            return true;
        }
        false
    }

    #[test]
    fn transpose16_transposes() {
        if skip() {
            return;
        }
        let m: Vec<i32> = (0..256).collect();
        // SAFETY: AVX512-BF16 (and with it F/BW/VL) is available (checked above); the loads
        // and stores stay inside `m` and `out`.
        let out = unsafe {
            let mut rows: [__m512i; 16] =
                std::array::from_fn(|i| _mm512_loadu_si512(m[16 * i..].as_ptr().cast()));
            transpose16(&mut rows);
            let mut out = vec![0i32; 256];
            for (i, row) in rows.iter().enumerate() {
                _mm512_storeu_si512(out[16 * i..].as_mut_ptr().cast(), *row);
            }
            out
        };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[16 * i + j], m[16 * j + i], "({i}, {j})");
            }
        }
    }

    #[test]
    fn rounding_matches_half_and_pairs_interleave() {
        if skip() {
            return;
        }
        // Ties, values just either side of them, large, small normal, infinities, zeros.
        let specials = [
            1.0f32,
            1.0 + f32::EPSILON * 64.0,
            1.0 + f32::EPSILON * 128.0,
            1.0 + f32::EPSILON * 192.0,
            -1.0 - f32::EPSILON * 192.0,
            3.0e38,
            -3.3e38,
            1.2e-38,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            0.1,
            -7.25e-3,
            65504.5,
            1.0 / 3.0,
        ];
        let even: Vec<f32> = specials
            .iter()
            .copied()
            .chain(specials.iter().map(|x| x * 1.25))
            .collect();
        let odd: Vec<f32> = even.iter().map(|x| -x * 1.5).collect();
        // SAFETY: AVX512-BF16 available (checked above); loads of 16 lanes from 32-element
        // vectors and stores to 16-word arrays.
        let words = unsafe {
            let even = round32(
                _mm512_loadu_ps(even.as_ptr()),
                _mm512_loadu_ps(even[16..].as_ptr()),
            );
            let odd = round32(
                _mm512_loadu_ps(odd.as_ptr()),
                _mm512_loadu_ps(odd[16..].as_ptr()),
            );
            [0, 1].map(|half| {
                let mut words = [0u32; 16];
                _mm512_storeu_si512(words.as_mut_ptr().cast(), pairs(even, odd, half));
                words
            })
        };
        for (half, words) in words.iter().enumerate() {
            for (i, word) in words.iter().enumerate() {
                let (lo, hi) = (*word as u16, (word >> 16) as u16);
                let (e, o) = (even[16 * half + i], odd[16 * half + i]);
                assert_eq!(lo, half::bf16::from_f32(e).to_bits(), "even {e}");
                assert_eq!(hi, half::bf16::from_f32(o).to_bits(), "odd {o}");
            }
        }
    }

    #[test]
    fn narrow16_gives_the_bits_of_narrow() {
        if skip() {
            return;
        }
        // Every 16-bit upper half with a spread of lower halves (Weyl sequence), and the
        // values where the instruction's rounding and `narrow` part: subnormals, NaNs.
        let random =
            (0..1u32 << 20).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i << 12)));
        let special = [
            1.0 + 2f32.powi(-8), // tie, kept half odd: rounds up
            1.0 + 2f32.powi(-9), // tie, kept half even: rounds down
            f32::MAX,
            f32::MIN_POSITIVE / 3.0,
            -f32::MIN_POSITIVE / 7.0,
            f32::from_bits(1),
            f32::from_bits(0x8000_8000), // a negative subnormal tie
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc1_2345),
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let values: Vec<f32> = special.into_iter().chain(random).collect();
        for chunk in values.chunks(16) {
            let n = chunk.len();
            let mut out = [0u16; 16];
            // SAFETY: AVX-512 available (checked above); the masks enable the first n
            // lanes, inside `chunk` (loaded) and `out` (stored).
            unsafe {
                let v = _mm512_maskz_loadu_ps(first(n), chunk.as_ptr());
                _mm512_mask_cvtepi32_storeu_epi16(out.as_mut_ptr().cast(), first(n), narrow16(v));
            }
            for (x, bits) in chunk.iter().zip(out) {
                assert_eq!(
                    bits,
                    crate::bf16_values::narrow(*x).to_bits(),
                    "narrow16({x:e}) bits {:#x}",
                    x.to_bits()
                );
            }
        }
    }
}
