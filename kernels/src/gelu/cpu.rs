//! GELU on the host: one pass over the elements in parallel pieces, each a loop the
//! compiler vectorises (16 f32 lanes where the CPU has AVX-512).
//!
//! The loops read the input as it is stored ([`Activation`]): f32 and f64 as themselves,
//! bf16 (an activation under autocast) widened to f32 value by value inside the loop, so
//! that a bf16 tensor costs half the reads and (forward) half the writes of an f32 one and
//! gives the f32 kernel's values on the widened input, the output rounded once. The
//! backward reads and writes the gradients the same way (a bf16 activation's gradient is
//! bf16, as under PyTorch's autocast).

use super::normal;
use crate::bf16_values::Stored;
use crate::output::filled_in_parallel;
use crate::simd::{has_avx512, wide_loop};
use crate::{Element, PAR_MIN_LEN};

/// The normal cdf and density at the precision of the element type.
pub trait Gaussian: Element {
    fn cdf(self) -> Self;
    /// [`Gaussian::cdf`], bit for bit, where [`Gaussian::is_central`] holds; cheaper
    /// where the type has a cheaper form there.
    fn cdf_central(self) -> Self;
    fn is_central(self) -> bool;
    fn pdf(self) -> Self;
}

impl Gaussian for f32 {
    #[inline(always)]
    fn cdf(self) -> f32 {
        normal::cdf_f32(self)
    }
    #[inline(always)]
    fn cdf_central(self) -> f32 {
        normal::cdf_f32_central(self)
    }
    #[inline(always)]
    fn is_central(self) -> bool {
        self.abs() <= normal::CENTRAL_MAX
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
    fn cdf_central(self) -> f64 {
        normal::cdf_f64(self)
    }
    fn is_central(self) -> bool {
        true
    }
    fn pdf(self) -> f64 {
        normal::pdf_f64(self)
    }
}

/// How the loops load an input value and store a forward output ([`Stored`]): f32 and f64
/// compute in their own precision; bf16 computes in f32, widened exactly and rounded once
/// on the way out. Gradients are stored as their activation is.
pub(crate) trait Activation: Stored<Compute: Gaussian> {}

impl<T: Stored<Compute: Gaussian>> Activation for T {}

/// Values per block: one AVX-512 register of f32. A block whose values are all central
/// (as after batch norm, nearly every block) skips the far-tail fit, which a vectorised
/// loop would otherwise compute for every value and then discard.
const BLOCK: usize = 16;

/// Whether every value of `x` is central, as one vectorisable count (no early exit).
#[inline(always)]
fn all_central<T: Activation>(x: &[T]) -> bool {
    x.iter()
        .map(|&v| v.load().is_central() as usize)
        .sum::<usize>()
        == x.len()
}

wide_loop! {
    pub(super) fn forward_piece<T: Activation>(x: &[T], y: &mut [T]) {
        for (y, x) in y.chunks_mut(BLOCK).zip(x.chunks(BLOCK)) {
            if all_central(x) {
                for (y, &x) in y.iter_mut().zip(x) {
                    let x = x.load();
                    *y = T::store(x * x.cdf_central());
                }
            } else {
                for (y, &x) in y.iter_mut().zip(x) {
                    let x = x.load();
                    *y = T::store(x * x.cdf());
                }
            }
        }
    }
}

wide_loop! {
    pub(super) fn backward_piece<T: Activation>(
        x: &[T],
        grad_out: &[T],
        grad_in: &mut [T],
    ) {
        let blocks = grad_in.chunks_mut(BLOCK).zip(x.chunks(BLOCK)).zip(grad_out.chunks(BLOCK));
        for ((g, x), dy) in blocks {
            if all_central(x) {
                for ((g, &x), &dy) in g.iter_mut().zip(x).zip(dy) {
                    let x = x.load();
                    *g = T::store(dy.load() * (x.cdf_central() + x * x.pdf()));
                }
            } else {
                for ((g, &x), &dy) in g.iter_mut().zip(x).zip(dy) {
                    let x = x.load();
                    *g = T::store(dy.load() * (x.cdf() + x * x.pdf()));
                }
            }
        }
    }
}

/// GELU of every element of `x`, stored as `x` is.
pub fn forward<T: Activation>(x: &[T]) -> Vec<T> {
    let wide = has_avx512();
    filled_in_parallel(x.len(), PAR_MIN_LEN, 1, |piece, y| {
        let start = piece * PAR_MIN_LEN;
        forward_piece(wide, &x[start..start + y.len()], y)
    })
}

/// The input gradient of GELU at `x` given the output gradient (same length, checked by
/// the caller), both stored as `x` is: a bf16 gradient is widened as it is read and the
/// result rounded once.
pub fn backward<T: Activation>(x: &[T], grad_out: &[T]) -> Vec<T> {
    let wide = has_avx512();
    filled_in_parallel(x.len(), PAR_MIN_LEN, 1, |piece, g| {
        let range = piece * PAR_MIN_LEN..piece * PAR_MIN_LEN + g.len();
        backward_piece(wide, &x[range.clone()], &grad_out[range], g)
    })
}
