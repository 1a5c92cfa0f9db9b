//! Element-wise arithmetic on same-length buffers: `a + b`, `a * b`, `a * factor`, the
//! in-place `acc += x` that accumulates gradients when a tensor feeds several ops, and the
//! in-place `acc += w (end - acc)` of a moving average (airbench94's lookahead).
//!
//! No broadcasting: callers (the autograd layer) hand over operands of equal length, and a
//! length mismatch is an error naming the op and both lengths.
//!
//! ```
//! use kernels::{elementwise, Storage};
//! let a = Storage::f32(vec![1.0, 2.0]);
//! let b = Storage::f32(vec![10.0, 20.0]);
//! assert_eq!(elementwise::add(&a, &b).unwrap(), Storage::f32(vec![11.0, 22.0]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{Element, Error, Result, Storage};

/// `a[i] + b[i]`.
pub fn add(a: &Storage, b: &Storage) -> Result<Storage> {
    const OP: &str = "add";
    same_len(OP, a, b)?;
    dispatch!(
        OP,
        a,
        cpu::<T> => binary_cpu::<T>(OP, a, b, |x, y| x + y),
        cuda(a) => cuda::binary(OP, "elementwise_add", a, b),
    )
}

/// `a[i] * b[i]`.
pub fn mul(a: &Storage, b: &Storage) -> Result<Storage> {
    const OP: &str = "mul";
    same_len(OP, a, b)?;
    dispatch!(
        OP,
        a,
        cpu::<T> => binary_cpu::<T>(OP, a, b, |x, y| x * y),
        cuda(a) => cuda::binary(OP, "elementwise_mul", a, b),
    )
}

/// `a[i] * factor`, with `factor` rounded to the buffer's element type.
pub fn scale(a: &Storage, factor: f64) -> Result<Storage> {
    const OP: &str = "scale";
    dispatch!(
        OP,
        a,
        cpu::<T> => scale_cpu::<T>(OP, a, factor),
        cuda(a) => cuda::scale(OP, a, factor),
    )
}

/// `acc[i] += x[i]`, in place (gradient accumulation without a new buffer). Both have the
/// same dtype; bf16 values (the gradients of two uses of a bf16 activation) are added in
/// f32 and the sum rounded once.
pub fn add_assign(acc: &mut Storage, x: &Storage) -> Result<()> {
    const OP: &str = "add_assign";
    same_len(OP, acc, x)?;
    dispatch!(
        OP,
        acc,
        cpu::<T> => add_assign_cpu::<T>(OP, acc, x),
        bf16 => {
            let x = x.host_bf16(OP, "x")?;
            cpu::add_assign(acc.host_bf16_mut(OP, "acc")?, x);
            Ok(())
        },
        cuda(acc) => cuda::add_assign(OP, "elementwise_add_assign", acc, x),
        cuda_bf16(acc) => cuda::add_assign(OP, "elementwise_add_assign_bf16", acc, x),
    )
}

/// `acc[i] += weight * (end[i] - acc[i])`, in place: PyTorch's `acc.lerp_(end, weight)` for
/// `weight` below 1/2, the step of an exponential moving average towards `end`.
pub fn lerp_assign(acc: &mut Storage, end: &Storage, weight: f64) -> Result<()> {
    const OP: &str = "lerp";
    same_len(OP, acc, end)?;
    if !weight.is_finite() {
        return Err(Error::invalid(
            OP,
            format!("weight must be finite, got {weight}"),
        ));
    }
    dispatch!(
        OP,
        acc,
        cpu::<T> => lerp_assign_cpu::<T>(OP, acc, end, weight),
        cuda(acc) => cuda::lerp_assign(OP, acc, end, weight),
    )
}

fn same_len(op: &'static str, a: &Storage, b: &Storage) -> Result<()> {
    if a.len() == b.len() {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!(
                "operands must have the same length, got {} and {} elements",
                a.len(),
                b.len()
            ),
        ))
    }
}

fn binary_cpu<T: Element>(
    op: &'static str,
    a: &Storage,
    b: &Storage,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Storage> {
    let a = a.host::<T>(op, "lhs")?;
    let b = b.host::<T>(op, "rhs")?;
    Ok(T::into_storage(cpu::binary(a, b, f)))
}

fn scale_cpu<T: Element>(op: &'static str, a: &Storage, factor: f64) -> Result<Storage> {
    let a = a.host::<T>(op, "input")?;
    Ok(T::into_storage(cpu::scale(a, T::of(factor))))
}

fn lerp_assign_cpu<T: Element>(
    op: &'static str,
    acc: &mut Storage,
    end: &Storage,
    weight: f64,
) -> Result<()> {
    let end = end.host::<T>(op, "end")?;
    cpu::lerp_assign(acc.host_mut::<T>(op, "acc")?, end, T::of(weight));
    Ok(())
}

fn add_assign_cpu<T: Element>(op: &'static str, acc: &mut Storage, x: &Storage) -> Result<()> {
    let x = x.host::<T>(op, "x")?;
    cpu::add_assign(acc.host_mut::<T>(op, "acc")?, x);
    Ok(())
}
