use rayon::prelude::*;

use super::LinearGeometry;
use crate::gemm::{gemm, worth_parallel};
use crate::Element;

pub fn forward<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &LinearGeometry) -> Vec<T> {
    let (n, i, o) = (g.batch, g.in_features, g.out_features);
    let mut y = vec![T::zero(); n * o];
    // Starting from the bias and accumulating saves a second pass over y.
    if let Some(bias) = bias {
        for row in y.chunks_exact_mut(o.max(1)) {
            row.copy_from_slice(bias);
        }
    }
    gemm(
        n,
        o,
        i,
        x,
        false,
        w,
        true,
        &mut y,
        bias.is_some(),
        worth_parallel(n, o, i),
    );
    y
}

/// `dL/dx = dL/dy W`.
pub fn input_grad<T: Element>(gy: &[T], w: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let mut gx = vec![T::zero(); n * i];
    gemm(
        n,
        i,
        o,
        gy,
        false,
        w,
        false,
        &mut gx,
        false,
        worth_parallel(n, i, o),
    );
    gx
}

/// `dL/dW = dL/dy^T x`.
pub fn weight_grad<T: Element>(gy: &[T], x: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let mut gw = vec![T::zero(); o * i];
    gemm(
        o,
        i,
        n,
        gy,
        true,
        x,
        false,
        &mut gw,
        false,
        worth_parallel(o, i, n),
    );
    gw
}

/// `dL/db`: column sums of `dL/dy`, split over column blocks so each thread streams rows.
pub fn bias_grad<T: Element>(gy: &[T], n: usize, o: usize) -> Vec<T> {
    let mut gb = vec![T::zero(); o];
    if o == 0 {
        return gb;
    }
    gb.par_chunks_mut(256).enumerate().for_each(|(block, gb)| {
        let start = block * 256;
        for row in gy.chunks_exact(o).take(n) {
            for (acc, &v) in gb.iter_mut().zip(&row[start..]) {
                *acc += v;
            }
        }
    });
    gb
}
