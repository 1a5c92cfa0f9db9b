//! AVX-512 building blocks of the packing code: f32 to bf16 rounding, the VNNI pair
//! interleave, a 16x16 transpose of 32-bit words, and masks for partial rows.
//!
//! Rounding is `VCVTNE2PS2BF16`'s: to nearest, ties to even, exactly as
//! `half::bf16::from_f32` for every normal f32 and infinity; NaNs stay NaN (quietened), and
//! f32 subnormals (below 1.2e-38) become zero, as in the dot-product instructions that
//! read the result and in PyTorch's oneDNN path.
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

/// Two rows `k` and `k + 1` of 16 columns each, rounded to bf16 and interleaved into
/// VNNI pairs: 32-bit word `i` holds `bf16(even[i])` in its low and `bf16(odd[i])` in its
/// high half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn pairs16(even: __m512, odd: __m512) -> __m512i {
    // After the rounding, halfword i is even[i] (i < 16) or odd[i - 16].
    const INTERLEAVE: [i16; 32] = {
        let mut idx = [0i16; 32];
        let mut i = 0;
        while i < 16 {
            idx[2 * i] = i as i16;
            idx[2 * i + 1] = 16 + i as i16;
            i += 1;
        }
        idx
    };
    // SAFETY: reads a 64-byte constant.
    let idx = unsafe { _mm512_loadu_si512(INTERLEAVE.as_ptr().cast()) };
    _mm512_permutexvar_epi16(idx, round32(even, odd))
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
        let even: Vec<f32> = specials.to_vec();
        let odd: Vec<f32> = specials.iter().map(|x| -x * 1.5).collect();
        // SAFETY: AVX512-BF16 available (checked above); loads and stores of 16 lanes from
        // 16-element vectors and a 16-word array.
        let words = unsafe {
            let v = pairs16(
                _mm512_loadu_ps(even.as_ptr()),
                _mm512_loadu_ps(odd.as_ptr()),
            );
            let mut words = [0u32; 16];
            _mm512_storeu_si512(words.as_mut_ptr().cast(), v);
            words
        };
        for i in 0..16 {
            let (lo, hi) = (words[i] as u16, (words[i] >> 16) as u16);
            assert_eq!(
                lo,
                half::bf16::from_f32(even[i]).to_bits(),
                "even {}",
                even[i]
            );
            assert_eq!(hi, half::bf16::from_f32(odd[i]).to_bits(), "odd {}", odd[i]);
        }
    }
}
