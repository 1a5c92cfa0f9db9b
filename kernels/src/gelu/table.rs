//! GELU of bf16 activations by lookup: a bf16 has only 65,536 values, so the f32
//! kernel's result for each one is worked out once per process and read back from a table
//! after that.
//!
//! The f32 kernel is bound by its arithmetic (each value evaluates the normal cdf's fits,
//! about 40 instructions), while a lookup is a load. The tables hold exactly what the
//! computing path (`cpu.rs`) gives, so the bits do not change:
//!
//! - forward: `VALUE[x]`, the f32 kernel's `x Φ(x)` at the widened `x`, rounded once to
//!   bf16 (128 KiB);
//! - backward: `SLOPE[x]`, the f32 kernel's `Φ(x) + x φ(x)` at the widened `x` (256 KiB),
//!   times the widened `dL/dy` in f32, rounded once. The f32 kernel multiplies `dL/dy` by
//!   that same f32 value (its factor is rounded before the product: Rust does not fuse
//!   the two), so the product's bits are the f32 kernel's. (Where both are NaN, which
//!   NaN comes out is the compiler's choice of operand order, in both kernels: Rust
//!   leaves a NaN result's payload unspecified.)
//!
//! Activations span few exponents, so the entries in use are a small part of the tables
//! and stay in the caches. Measured on airbench94's step (docs/results.md): GELU's
//! forward and backward together 2.5x faster than computing them.

use std::sync::OnceLock;

use half::bf16;

use super::cpu;
use crate::bf16_values::{narrow, widen};
use crate::output::filled_in_parallel;
use crate::simd::has_avx512;
use crate::PAR_MIN_LEN;

const VALUES: usize = 1 << 16;

struct Tables {
    /// GELU(x) rounded to bf16, indexed by the bits of x.
    value: Box<[bf16; VALUES]>,
    /// dGELU/dx at x in f32, indexed by the bits of x.
    slope: Box<[f32; VALUES]>,
}

/// The tables, computed by the f32 kernel on first use (about a millisecond).
fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let every: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        let value = cpu::forward(&every);
        let widened: Vec<f32> = every.iter().map(|&x| widen(x)).collect();
        // dL/dy = 1 returns the factor itself: 1 * s == s for every f32, NaN included.
        let slope = cpu::backward(&widened, &vec![1.0f32; VALUES]);
        Tables {
            value: value.into_boxed_slice().try_into().expect("one per bf16"),
            slope: slope.into_boxed_slice().try_into().expect("one per bf16"),
        }
    })
}

/// GELU of every element of `x`: the bits of `cpu::forward` on bf16. (A plain loop: it
/// runs at the speed of memory, and AVX-512 gathers of 32-bit entries measured no faster.)
pub(super) fn forward(x: &[bf16]) -> Vec<bf16> {
    let value = &tables().value;
    filled_in_parallel(x.len(), PAR_MIN_LEN, 1, |piece, y| {
        let x = &x[piece * PAR_MIN_LEN..][..y.len()];
        for (y, x) in y.iter_mut().zip(x) {
            *y = value[usize::from(x.to_bits())];
        }
    })
}

/// The input gradient at `x` given `grad_out` (same length, checked by the caller): the
/// bits of `cpu::backward` on bf16.
pub(super) fn backward(x: &[bf16], grad_out: &[bf16]) -> Vec<bf16> {
    let slope = &tables().slope;
    let wide = has_avx512();
    filled_in_parallel(x.len(), PAR_MIN_LEN, 1, |piece, g| {
        let range = piece * PAR_MIN_LEN..piece * PAR_MIN_LEN + g.len();
        let (x, dy) = (&x[range.clone()], &grad_out[range]);
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` holds only where the CPU runs AVX-512.
            return unsafe { backward_avx512(slope, x, dy, g) };
        }
        let _ = wide;
        backward_piece(slope, x, dy, g)
    })
}

/// [`backward_piece`] compiled for AVX-512, where the loop becomes 16-value gathers of
/// the slopes (the index is a u16 into a table of 2^16: no bounds check to stop it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn backward_avx512(slope: &[f32; VALUES], x: &[bf16], dy: &[bf16], g: &mut [bf16]) {
    backward_piece(slope, x, dy, g)
}

#[inline(always)]
fn backward_piece(slope: &[f32; VALUES], x: &[bf16], dy: &[bf16], g: &mut [bf16]) {
    for ((g, x), &dy) in g.iter_mut().zip(x).zip(dy) {
        *g = narrow(widen(dy) * slope[usize::from(x.to_bits())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_compiled_backward_loops_give_the_same_bits() {
        // The public API runs one copy (tests.rs checks it against the f32 kernel for
        // every input); this checks the other against it on every input and three dL/dy.
        if !has_avx512() {
            println!("SKIPPED: this CPU has no AVX-512, so only the plain loop runs");
            return;
        }
        let x: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        for dy in [1.5f32, -3e-5, 7e30] {
            let dy = vec![bf16::from_f32(dy); x.len()];
            let (mut plain, mut wide) = (vec![bf16::ZERO; x.len()], vec![bf16::ZERO; x.len()]);
            backward_piece(&tables().slope, &x, &dy, &mut plain);
            // SAFETY: this CPU runs AVX-512 (checked above).
            unsafe { backward_avx512(&tables().slope, &x, &dy, &mut wide) };
            for i in 0..x.len() {
                assert_eq!(
                    plain[i].to_bits(),
                    wide[i].to_bits(),
                    "x bits {i:#06x}, dy {}",
                    dy[i]
                );
            }
        }
    }
}
