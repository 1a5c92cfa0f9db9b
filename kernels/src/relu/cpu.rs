use rayon::prelude::*;

use crate::{Element, PAR_MIN_LEN};

pub fn forward<T: Element>(x: &[T]) -> Vec<T> {
    x.par_iter()
        .with_min_len(PAR_MIN_LEN)
        .map(|&v| if v > T::zero() { v } else { T::zero() })
        .collect()
}

pub fn backward<T: Element>(y: &[T], grad_out: &[T]) -> Vec<T> {
    y.par_iter()
        .zip(grad_out.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .map(|(&y, &g)| if y > T::zero() { g } else { T::zero() })
        .collect()
}
