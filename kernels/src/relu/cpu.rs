//! ReLU on the host, written once for every stored type: `is_positive` reads a value (a
//! bf16 activation widened to f32, f32 and f64 as they are), and the forward copies the
//! value itself, so it is exact in every type. `T::default()` is +0 in all of them.

use rayon::prelude::*;

use crate::PAR_MIN_LEN;

/// `x` where it is positive, +0 elsewhere (NaN included).
pub fn forward<T: Copy + Default + Send + Sync>(
    x: &[T],
    is_positive: impl Fn(T) -> bool + Sync + Send,
) -> Vec<T> {
    x.par_iter()
        .with_min_len(PAR_MIN_LEN)
        .map(|&v| if is_positive(v) { v } else { T::default() })
        .collect()
}

/// `grad_out` where the forward input `x` is positive, zero elsewhere (NaN included).
pub fn backward<T: Copy + Sync, G: Copy + Default + Send + Sync>(
    x: &[T],
    grad_out: &[G],
    is_positive: impl Fn(T) -> bool + Sync + Send,
) -> Vec<G> {
    x.par_iter()
        .zip(grad_out.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .map(|(&x, &g)| if is_positive(x) { g } else { G::default() })
        .collect()
}
