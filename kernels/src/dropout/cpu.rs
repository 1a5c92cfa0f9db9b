use rayon::prelude::*;

use super::{random_bits, Mask};
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
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .enumerate()
        .with_min_len((PAR_MIN_LEN / BLOCK).max(1))
        .for_each(|(block, (y, x))| {
            let first = (block * BLOCK) as u64;
            for (offset, (y, &x)) in y.iter_mut().zip(x).enumerate() {
                let kept = random_bits(seed, first + offset as u64) >= threshold;
                // Indexing rather than `if`: the mask is random, and a branch would
                // mispredict half the time. Dropped elements are exactly 0, even inf or NaN.
                *y = [zero, x * scale][kept as usize];
            }
        });
    y
}
