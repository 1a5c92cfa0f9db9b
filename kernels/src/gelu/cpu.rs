//! GELU on the host: one pass over the elements in parallel pieces, each a loop the
//! compiler vectorises (16 f32 lanes where the CPU has AVX-512).

use super::{normal, OP};
use crate::output::filled_in_parallel;
use crate::simd::{has_avx512, wide_loop};
use crate::{Element, Result, Storage, PAR_MIN_LEN};

/// The normal cdf and density at the precision of the element type.
pub trait Gaussian: Element {
    fn cdf(self) -> Self;
    fn pdf(self) -> Self;
}

impl Gaussian for f32 {
    #[inline(always)]
    fn cdf(self) -> f32 {
        normal::cdf_f32(self)
    }
    #[inline(always)]
    fn pdf(self) -> f32 {
        normal::pdf_f32(self)
    }
}

impl Gaussian for f64 {
    fn cdf(self) -> f64 {
        normal::cdf_f64(self)
    }
    fn pdf(self) -> f64 {
        normal::pdf_f64(self)
    }
}

wide_loop! {
    fn forward_piece<T: Gaussian>(x: &[T], y: &mut [T]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * x.cdf();
        }
    }
}

wide_loop! {
    fn backward_piece<T: Gaussian>(x: &[T], grad_out: &[T], grad_in: &mut [T]) {
        for ((g, &x), &dy) in grad_in.iter_mut().zip(x).zip(grad_out) {
            *g = dy * (x.cdf() + x * x.pdf());
        }
    }
}

pub fn forward<T: Gaussian>(x: &Storage) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    let wide = has_avx512();
    Ok(T::into_storage(filled_in_parallel(
        x.len(),
        PAR_MIN_LEN,
        1,
        |piece, y| {
            let start = piece * PAR_MIN_LEN;
            forward_piece(wide, &x[start..start + y.len()], y)
        },
    )))
}

pub fn backward<T: Gaussian>(x: &Storage, grad_out: &Storage) -> Result<Storage> {
    let x = x.host::<T>(OP, "input")?;
    let grad_out = grad_out.host::<T>(OP, "grad_out")?;
    let wide = has_avx512();
    Ok(T::into_storage(filled_in_parallel(
        x.len(),
        PAR_MIN_LEN,
        1,
        |piece, g| {
            let range = piece * PAR_MIN_LEN..piece * PAR_MIN_LEN + g.len();
            backward_piece(wide, &x[range.clone()], &grad_out[range], g)
        },
    )))
}
