use rayon::prelude::*;

use crate::bf16_values::Stored;
use crate::{Element, PAR_MIN_LEN};

/// `f(a[i], b[i])` into a fresh buffer; the caller has checked the lengths.
pub fn binary<T: Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    a.par_iter()
        .zip(b.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .map(|(&x, &y)| f(x, y))
        .collect()
}

pub fn scale<T: Element>(a: &[T], factor: T) -> Vec<T> {
    a.par_iter()
        .with_min_len(PAR_MIN_LEN)
        .map(|&x| x * factor)
        .collect()
}

pub fn lerp_assign<T: Element>(acc: &mut [T], end: &[T], weight: T) {
    acc.par_iter_mut()
        .zip(end.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .for_each(|(a, &e)| *a += weight * (e - *a));
}

/// `acc[i] += x[i]` in the values' compute type, each sum stored once ([`Stored`]).
pub fn add_assign<T: Stored>(acc: &mut [T], x: &[T]) {
    acc.par_iter_mut()
        .zip(x.par_iter())
        .with_min_len(PAR_MIN_LEN)
        .for_each(|(a, &x)| *a = T::store(a.load() + x.load()));
}
