use super::MatmulGeometry;
use crate::gemm::{gemm, worth_parallel};
use crate::Element;

pub fn forward<T: Element>(a: &[T], b: &[T], g: &MatmulGeometry) -> Vec<T> {
    let MatmulGeometry { m, k, n } = *g;
    let mut c = vec![T::zero(); m * n];
    gemm(
        m,
        n,
        k,
        a,
        false,
        b,
        false,
        &mut c,
        false,
        worth_parallel(m, n, k),
    );
    c
}

pub fn backward<T: Element>(a: &[T], b: &[T], gc: &[T], g: &MatmulGeometry) -> (Vec<T>, Vec<T>) {
    let MatmulGeometry { m, k, n } = *g;
    let mut ga = vec![T::zero(); m * k];
    gemm(
        m,
        k,
        n,
        gc,
        false,
        b,
        true,
        &mut ga,
        false,
        worth_parallel(m, k, n),
    );
    let mut gb = vec![T::zero(); k * n];
    gemm(
        k,
        n,
        m,
        a,
        true,
        gc,
        false,
        &mut gb,
        false,
        worth_parallel(k, n, m),
    );
    (ga, gb)
}
