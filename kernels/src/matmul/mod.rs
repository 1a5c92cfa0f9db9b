//! Matrix product `c = a b`, a `[m, k]`, b `[k, n]`, row-major.
//!
//! ```text
//! dL/da = dL/dc b^T        [m, n] x [n, k]
//! dL/db = a^T dL/dc        [k, m] x [m, n]
//! ```
//!
//! ```
//! use kernels::{matmul, Storage};
//! let g = matmul::MatmulGeometry::new(&[1, 2], &[2, 1]).unwrap();
//! let c = matmul::forward(&Storage::f32(vec![1.0, 2.0]), &Storage::f32(vec![3.0, 4.0]), &g).unwrap();
//! assert_eq!(c, Storage::f32(vec![11.0]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{fmt_shape, Element, Error, Result, Storage};

const OP: &str = "matmul";

/// The sizes of one matrix product, validated by [`MatmulGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulGeometry {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl MatmulGeometry {
    /// Checks `a` `[m, k]` against `b` `[k, n]`.
    pub fn new(a: &[usize], b: &[usize]) -> Result<MatmulGeometry> {
        let (&[m, k], &[k_b, n]) = (a, b) else {
            return Err(Error::shape(
                OP,
                format!(
                    "both operands must be 2-D, got {} and {}",
                    fmt_shape(a),
                    fmt_shape(b)
                ),
            ));
        };
        if k != k_b {
            return Err(Error::shape(
                OP,
                format!(
                    "inner dimensions differ: {} x {}",
                    fmt_shape(a),
                    fmt_shape(b)
                ),
            ));
        }
        let g = MatmulGeometry { m, k, n };
        g.sizes()?;
        Ok(g)
    }

    /// Element counts of a, b and c, or an error if they overflow.
    fn sizes(&self) -> Result<[usize; 3]> {
        let MatmulGeometry { m, k, n } = *self;
        match (m.checked_mul(k), k.checked_mul(n), m.checked_mul(n)) {
            (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
            _ => Err(Error::invalid(
                OP,
                format!("the matrices would be too large to address ({self:?})"),
            )),
        }
    }
}

/// `c = a b`, an `[m, n]` buffer.
pub fn forward(a: &Storage, b: &Storage, g: &MatmulGeometry) -> Result<Storage> {
    check_operands(a, b, g)?;
    dispatch!(
        OP,
        a,
        cpu::<T> => forward_cpu::<T>(a, b, g),
        cuda(a) => cuda::forward(a, b, g),
    )
}

/// `(dL/da, dL/db)` given `grad_out` `[m, n]`.
pub fn backward(
    a: &Storage,
    b: &Storage,
    grad_out: &Storage,
    g: &MatmulGeometry,
) -> Result<(Storage, Storage)> {
    let [_, _, c_len] = check_operands(a, b, g)?;
    grad_out.expect_len(OP, "grad_out", c_len)?;
    dispatch!(
        OP,
        a,
        cpu::<T> => backward_cpu::<T>(a, b, grad_out, g),
        cuda(a) => cuda::backward(a, b, grad_out, g),
    )
}

fn check_operands(a: &Storage, b: &Storage, g: &MatmulGeometry) -> Result<[usize; 3]> {
    let sizes = g.sizes()?;
    a.expect_len(OP, "a", sizes[0])?;
    b.expect_len(OP, "b", sizes[1])?;
    Ok(sizes)
}

fn forward_cpu<T: Element>(a: &Storage, b: &Storage, g: &MatmulGeometry) -> Result<Storage> {
    let a = a.host::<T>(OP, "a")?;
    let b = b.host::<T>(OP, "b")?;
    Ok(T::into_storage(cpu::forward(a, b, g)))
}

fn backward_cpu<T: Element>(
    a: &Storage,
    b: &Storage,
    grad_out: &Storage,
    g: &MatmulGeometry,
) -> Result<(Storage, Storage)> {
    let a = a.host::<T>(OP, "a")?;
    let b = b.host::<T>(OP, "b")?;
    let gc = grad_out.host::<T>(OP, "grad_out")?;
    let (ga, gb) = cpu::backward(a, b, gc, g);
    Ok((T::into_storage(ga), T::into_storage(gb)))
}
