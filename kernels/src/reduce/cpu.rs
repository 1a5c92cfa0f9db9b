use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

/// Sum in f64: blocks of `PAR_MIN_LEN` summed in parallel, block totals added in order.
pub fn sum<T: Element>(x: &[T]) -> f64 {
    if x.len() <= PAR_MIN_LEN {
        return block_sum(x);
    }
    let blocks: Vec<f64> = x.par_chunks(PAR_MIN_LEN).map(block_sum).collect();
    blocks.iter().sum()
}

/// Eight independent f64 accumulators: the adds pipeline and vectorise (a single running
/// total is one long dependency chain), and each lane sums only an eighth of the block.
fn block_sum<T: Element>(x: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v.to_f64_lossy();
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f64_lossy()).sum();
    acc.iter().sum::<f64>() + tail
}
