use super::{random_bits, Mask};
use crate::output::filled_in_parallel;
use crate::{Element, PAR_MIN_LEN};

/// Elements per block; each block knows its first global index, so the mask of every
/// element is computed from its position alone and the blocks can run in any order.
const BLOCK: usize = 4096;

pub fn apply<T: Element>(x: &[T], mask: &Mask) -> Vec<T> {
    let Mask {
        seed,
        threshold,
        scale,
    } = *mask;
    let (scale, zero) = (T::of(scale), T::zero());
    filled_in_parallel(x.len(), BLOCK, PAR_MIN_LEN / BLOCK, |block, y: &mut [T]| {
        let first = block * BLOCK;
        for (offset, (y, &x)) in y.iter_mut().zip(&x[first..]).enumerate() {
            let kept = random_bits(seed, (first + offset) as u64) >= threshold;
            // Indexing rather than `if`: the mask is random, and a branch would
            // mispredict half the time. Dropped elements are exactly 0, even inf or NaN.
            *y = [zero, x * scale][kept as usize];
        }
    })
}
