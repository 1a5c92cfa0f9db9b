use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

pub fn forward<T: Element>(x: &[T]) -> Vec<T> {
    x.par_iter()
        .with_min_len(PAR_MIN_LEN)
        .map(|&v| if v > T::zero() { v } else { T::zero() })
        .collect()
}

/// `grad_out` where the forward input `x` is positive, zero elsewhere (NaN included).
pub fn backward<T: Element>(x: &[T], grad_out: &[T]) -> Vec<T> {
    x.par_iter()
        .zip(grad_out.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .map(|(&x, &g)| if x > T::zero() { g } else { T::zero() })
        .collect()
}
