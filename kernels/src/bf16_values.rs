//! Activations stored in bf16: one value at a time, widened exactly to f32 and rounded
//! back to nearest (ties to even), in branch-free forms the loop vectoriser turns into a
//! shift, an add and a blend.
//!
//! Under autocast a convolution returns bf16 (as PyTorch's does), and the layers between
//! two convolutions (pooling, batch norm, GELU, ReLU) read and write bf16 while computing
//! in f32. Each of their bf16 kernels computes exactly what the op's f32 kernel computes on
//! the widened input and rounds its output once, so its tests compare it bit for bit with
//! the f32 kernel, which is itself tested against independent oracles.
//!
//! ```ignore
//! assert_eq!(widen(narrow(1.0 + 2f32.powi(-9))), 1.0); // a tie goes to the even neighbour
//! ```

use half::bf16;

use crate::{Element, Result, Storage};

/// The f32 with the same value (every bf16 is an f32 with 16 zero low bits).
#[inline(always)]
pub(crate) fn widen(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// `x` rounded to the nearest bf16, ties to even; overflow rounds to infinity and a NaN
/// stays a (quiet) NaN: the bits of `half::bf16::from_f32`.
#[inline(always)]
pub(crate) fn narrow(x: f32) -> bf16 {
    let bits = x.to_bits();
    // Adding 0x7fff (plus the kept half's lowest bit, for ties) carries into the upper
    // half exactly when the dropped half is above one half (or at one half, kept odd).
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = (bits >> 16) as u16 | 0x0040;
    bf16::from_bits(if x.is_nan() { quiet_nan } else { rounded })
}

/// An element type the loops read (and write): f32 and f64 are computed in themselves;
/// bf16, an activation stored under autocast, is widened to f32 as each value is read and
/// rounded once as each output is written, so that a bf16 input costs half the memory
/// traffic of an f32 one and gives the f32 kernel's results on the widened values.
/// (Batch norm, GELU and max pooling read their input through it; their parameters,
/// statistics and gradients are in the compute type.)
pub(crate) trait Stored: Copy + Default + Send + Sync + 'static {
    /// The type computed in: f32 for bf16, the type itself otherwise.
    type Compute: Element + Stored;

    fn load(self) -> Self::Compute;

    fn store(value: Self::Compute) -> Self;

    /// Borrows a host buffer of this type, or says which operand of `op` is wrong.
    fn from_host<'a>(storage: &'a Storage, op: &'static str, operand: &str) -> Result<&'a [Self]>;

    fn to_storage(values: Vec<Self>) -> Storage;
}

impl<T: Element> Stored for T {
    type Compute = T;

    #[inline(always)]
    fn load(self) -> T {
        self
    }

    #[inline(always)]
    fn store(value: T) -> T {
        value
    }

    fn from_host<'a>(storage: &'a Storage, op: &'static str, operand: &str) -> Result<&'a [T]> {
        storage.host(op, operand)
    }

    fn to_storage(values: Vec<T>) -> Storage {
        T::into_storage(values)
    }
}

impl Stored for bf16 {
    type Compute = f32;

    #[inline(always)]
    fn load(self) -> f32 {
        widen(self)
    }

    #[inline(always)]
    fn store(value: f32) -> bf16 {
        narrow(value)
    }

    fn from_host<'a>(storage: &'a Storage, op: &'static str, operand: &str) -> Result<&'a [bf16]> {
        storage.host_bf16(op, operand)
    }

    fn to_storage(values: Vec<bf16>) -> Storage {
        Storage::bf16(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_gives_the_bits_of_half_and_widen_is_exact() {
        // Every 16-bit upper half with a spread of lower halves (Weyl sequence).
        let random =
            (0..1u32 << 20).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i << 12)));
        let special = [
            0.0f32,
            -0.0,
            1.0 + 2f32.powi(-8),     // tie, kept half odd: rounds up
            1.0 + 2f32.powi(-9),     // tie, kept half even: rounds down
            f32::MAX,                // rounds up to infinity
            f32::MIN_POSITIVE / 3.0, // subnormal
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7f80_0001), // signalling NaN, payload only in the low half
            f32::from_bits(0xffc1_2345),
        ];
        for x in special.into_iter().chain(random) {
            let ours = narrow(x);
            let theirs = bf16::from_f32(x);
            assert_eq!(
                ours.to_bits(),
                theirs.to_bits(),
                "narrow({x:e}) bits {:#x}",
                x.to_bits()
            );
            assert_eq!(widen(ours).to_bits(), theirs.to_f32().to_bits());
        }
    }
}
