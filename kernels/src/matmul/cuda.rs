//! Matrix product on the GPU: cuBLAS for the forward product and both gradients.

use super::{MatmulGeometry, OP};
use crate::cuda::{wrap, CudaStorage};
use crate::{Result, Storage};

pub(super) fn forward(a: &CudaStorage, b: &Storage, g: &MatmulGeometry) -> Result<Storage> {
    let gpu = a.backend();
    let b = b.cuda(OP, "b", a.device())?;
    let mut c = gpu.alloc::<f32>(g.m * g.n)?;
    gpu.sgemm(
        g.m,
        g.n,
        g.k,
        &a.buffer().view(),
        false,
        &b.buffer().view(),
        false,
        &mut c.view_mut(),
        false,
    )?;
    Ok(wrap(gpu, c))
}

pub(super) fn backward(
    a: &CudaStorage,
    b: &Storage,
    grad_out: &Storage,
    g: &MatmulGeometry,
) -> Result<(Storage, Storage)> {
    let gpu = a.backend();
    let b = b.cuda(OP, "b", a.device())?;
    let gc = grad_out.cuda(OP, "grad_out", a.device())?;
    let MatmulGeometry { m, k, n } = *g;
    // dL/da = dL/dc b^T: [m, n] x [n, k].
    let mut ga = gpu.alloc::<f32>(m * k)?;
    gpu.sgemm(
        m,
        k,
        n,
        &gc.buffer().view(),
        false,
        &b.buffer().view(),
        true,
        &mut ga.view_mut(),
        false,
    )?;
    // dL/db = a^T dL/dc: [k, m] x [m, n].
    let mut gb = gpu.alloc::<f32>(k * n)?;
    gpu.sgemm(
        k,
        n,
        m,
        &a.buffer().view(),
        true,
        &gc.buffer().view(),
        false,
        &mut gb.view_mut(),
        false,
    )?;
    Ok((wrap(gpu, ga), wrap(gpu, gb)))
}
