//! Whole-buffer reductions: `sum(x)`, and its backward `broadcast_scalar`, which spreads a
//! scalar gradient over every element (`mean` is `sum` followed by a scale of `1/len`, and
//! its backward is `broadcast_scalar` with `factor = 1/len`).
//!
//! The sum accumulates in f64 whatever the element type, in fixed-size blocks added in a
//! fixed order: an f32 sum of ten million 0.1s is then correct to f32 rounding (a running
//! f32 total drifts by percents), and the result does not depend on rayon's scheduling.
//!
//! ```
//! use kernels::{reduce, Storage};
//! let s = reduce::sum(&Storage::f64(vec![1.0, 2.0, 3.5])).unwrap();
//! assert_eq!(s, Storage::f64(vec![6.5]));
//! let g = reduce::broadcast_scalar(&s, 2, 0.5).unwrap();
//! assert_eq!(g, Storage::f64(vec![3.25, 3.25]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{Element, Error, Result, Storage};

/// Sum of all elements, as a 1-element buffer of the input's dtype (0 for an empty input).
pub fn sum(x: &Storage) -> Result<Storage> {
    dispatch!(
        "sum",
        x,
        cpu::<T> => sum_cpu::<T>(x),
        cuda(x) => cuda::sum(x),
    )
}

/// A buffer of `len` elements, each `scalar[0] * factor`, of the scalar's dtype.
/// `scalar` must hold exactly one element.
pub fn broadcast_scalar(scalar: &Storage, len: usize, factor: f64) -> Result<Storage> {
    const OP: &str = "broadcast_scalar";
    if scalar.len() != 1 {
        return Err(Error::shape(
            OP,
            format!(
                "scalar has {} elements, expected 1 (broadcasting to {len} elements)",
                scalar.len()
            ),
        ));
    }
    dispatch!(
        OP,
        scalar,
        cpu::<T> => broadcast_cpu::<T>(OP, scalar, len, factor),
        cuda(scalar) => cuda::broadcast_scalar(OP, scalar, len, factor),
    )
}

fn sum_cpu<T: Element>(x: &Storage) -> Result<Storage> {
    let x = x.host::<T>("sum", "input")?;
    Ok(T::into_storage(vec![T::of(cpu::sum(x))]))
}

fn broadcast_cpu<T: Element>(
    op: &'static str,
    scalar: &Storage,
    len: usize,
    factor: f64,
) -> Result<Storage> {
    // Multiplied in f64 and rounded once, so an f32 result is the correctly rounded product.
    let value = scalar.host::<T>(op, "scalar")?[0].to_f64_lossy() * factor;
    Ok(T::into_storage(vec![T::of(value); len]))
}
