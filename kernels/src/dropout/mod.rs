//! Inverted dropout with a stateless, counter-based mask.
//!
//! Element `i` of the input is kept iff `uniform(seed, i) >= p`; kept values are scaled by
//! `1 / (1 - p)` so the expected output equals the input; dropped elements become exactly 0
//! (even an inf or NaN, where PyTorch's `x * mask * scale` would give NaN). The mask
//! is a pure function of `(seed, i)`, so the backward pass recomputes it instead of storing
//! it, and any backend that copies the formula below draws the same mask.
//!
//! # The exact formula (the CUDA port must copy it bit for bit)
//!
//! `uniform(seed, i)` is output number `i + 1` of SplitMix64 seeded with `seed`, cut to
//! 24 bits. All arithmetic is on unsigned 64-bit integers, wrapping modulo 2^64:
//!
//! ```text
//! z    = seed + (i + 1) * 0x9E3779B97F4A7C15
//! z    = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//! z    = (z ^ (z >> 27)) * 0x94D049BB133111EB
//! z    =  z ^ (z >> 31)
//! bits = z >> 40                          (the top 24 bits, 0 ..= 2^24 - 1)
//! uniform(seed, i) = bits * 2^-24         (exact in f32, in [0, 1))
//! ```
//!
//! To make the keep test independent of how `p` is rounded on each device, it is done on
//! integers: `uniform >= p` exactly when `bits >= threshold` with
//! `threshold = ceil(p * 2^24)` (computed in f64 on the host; `p * 2^24` is exact).
//! The scale is `1 / (1 - p)` computed in f64, then rounded to the element type.
//!
//! ```text
//! y[i]  = bits(seed, i) >= threshold ? x[i] * scale : 0
//! dx[i] = bits(seed, i) >= threshold ? dy[i] * scale : 0
//! ```
//!
//! `p = 0` keeps everything with scale 1 (the identity); `p = 1` keeps nothing (all zeros).
//!
//! ```
//! use kernels::{dropout, Storage};
//! let x = Storage::f32(vec![1.0; 8]);
//! assert_eq!(dropout::forward(&x, 0.0, 7).unwrap(), x);
//! assert_eq!(dropout::forward(&x, 1.0, 7).unwrap(), Storage::f32(vec![0.0; 8]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{Element, Error, Result, Storage};

const OP: &str = "dropout";

/// SplitMix64's increment (the golden ratio scaled to 2^64).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The 24 random bits of element `index` under `seed` (see the module docs).
#[inline]
fn random_bits(seed: u64, index: u64) -> u32 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as u32
}

/// The counter RNG: a uniform number in `[0, 1)`, a multiple of 2^-24, that depends only
/// on `(seed, index)`. Public so tests and the CUDA port can check it.
pub fn uniform(seed: u64, index: u64) -> f32 {
    random_bits(seed, index) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The validated probability turned into the integer keep threshold and the scale.
#[derive(Clone, Copy, Debug)]
struct Mask {
    seed: u64,
    /// Keep element `i` iff `random_bits(seed, i) >= threshold`; ranges over `0 ..= 2^24`.
    threshold: u32,
    /// `1 / (1 - p)`, or 0 when `p = 1` (nothing is kept, and 1/0 must not leak out).
    scale: f64,
}

impl Mask {
    fn new(p: f64, seed: u64, operand: &str, len: usize) -> Result<Mask> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                OP,
                format!("probability p must be in [0, 1], got {p} ({operand} of {len} elements)"),
            ));
        }
        let threshold = (p * (1u32 << 24) as f64).ceil() as u32;
        let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        Ok(Mask {
            seed,
            threshold,
            scale,
        })
    }
}

/// Zeroes each element with probability `p` and scales the survivors by `1 / (1 - p)`.
pub fn forward(input: &Storage, p: f64, seed: u64) -> Result<Storage> {
    let mask = Mask::new(p, seed, "input", input.len())?;
    dispatch!(
        OP,
        input,
        cpu::<T> => apply_cpu::<T>(input, "input", &mask),
        cuda(input) => cuda::apply(input, &mask),
    )
}

/// Gradient of [`forward`] with the same `p` and `seed`: the same mask and scale applied
/// to `grad_out`.
pub fn backward(grad_out: &Storage, p: f64, seed: u64) -> Result<Storage> {
    let mask = Mask::new(p, seed, "grad_out", grad_out.len())?;
    dispatch!(
        OP,
        grad_out,
        cpu::<T> => apply_cpu::<T>(grad_out, "grad_out", &mask),
        cuda(grad_out) => cuda::apply(grad_out, &mask),
    )
}

fn apply_cpu<T: Element>(values: &Storage, operand: &str, mask: &Mask) -> Result<Storage> {
    let values = values.host::<T>(OP, operand)?;
    Ok(T::into_storage(cpu::apply(values, mask)))
}
