//! Batch normalisation on the GPU (batch_norm.cu): one block per channel for the f64
//! statistics and gradient sums, then one grid-stride pass for the element-wise part.
//!
//! The input, the output and the activation gradients are f32 or, under autocast, bf16
//! ([`Activation`]); the parameters, statistics and their gradients are f32 either way, as
//! on the CPU. Each pass is the same kernel body for both, named per stored type.

use super::{BatchNormGeometry, BatchNormGrads, BatchStats, OP};
use crate::cuda::{to_i32, wrap, Arg, CudaBuffer, CudaElement, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "batch_norm.cu";

/// The kernels that read or write input-shaped buffers, one set per stored type.
pub(super) struct Kernels {
    train_stats: &'static str,
    affine: &'static str,
    backward_train_reduce: &'static str,
    backward_eval_reduce: &'static str,
    input_grad: &'static str,
}

/// A type batch norm's input, output and activation gradients are stored in on the GPU:
/// f32, or bf16 (as bits) under autocast, which the kernels widen as they read and round
/// once as they write.
pub(super) trait Activation: CudaElement {
    /// The kernels declaring this type's `T*` parameters.
    const KERNELS: Kernels;
}

impl Activation for f32 {
    const KERNELS: Kernels = Kernels {
        train_stats: "batch_norm_train_stats",
        affine: "batch_norm_affine",
        backward_train_reduce: "batch_norm_backward_train_reduce",
        backward_eval_reduce: "batch_norm_backward_eval_reduce",
        input_grad: "batch_norm_input_grad",
    };
}

impl Activation for u16 {
    const KERNELS: Kernels = Kernels {
        train_stats: "batch_norm_train_stats_bf16",
        affine: "batch_norm_affine_bf16",
        backward_train_reduce: "batch_norm_backward_train_reduce_bf16",
        backward_eval_reduce: "batch_norm_backward_eval_reduce_bf16",
        input_grad: "batch_norm_input_grad_bf16",
    };
}

/// `N, C, S` as the kernels take them.
fn ncs(g: &BatchNormGeometry) -> Result<[Arg; 3]> {
    Ok([
        Arg::I32(to_i32(OP, "batch", g.batch)?),
        Arg::I32(to_i32(OP, "channels", g.channels)?),
        Arg::I32(to_i32(OP, "spatial size", g.spatial)?),
    ])
}

fn ptr(buffer: &CudaBuffer<f32>) -> Arg {
    Arg::ptr(buffer, 0)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn forward_train<T: Activation>(
    input: &CudaStorage<T>,
    gamma: &Storage,
    beta: &Storage,
    running_mean: &mut Storage,
    running_var: &mut Storage,
    momentum: f64,
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<(Storage, BatchStats)> {
    let device = input.device();
    let gpu = input.backend();
    let dims = ncs(g)?;
    let gamma = gamma.cuda(OP, "gamma", device)?;
    let beta = beta.cuda(OP, "beta", device)?;
    // Both running buffers are checked before either is written.
    running_var.cuda(OP, "running_var", device)?;
    let running_mean = running_mean
        .cuda_mut(OP, "running_mean", device)?
        .buffer_mut()?;
    let running_var = running_var
        .cuda_mut(OP, "running_var", device)?
        .buffer_mut()?;
    let c = g.channels;
    let (mean, inv_std, scale) = (gpu.alloc(c)?, gpu.alloc(c)?, gpu.alloc(c)?);
    let y = gpu.alloc::<T>(input.len())?;
    let mut stats_args = vec![
        input.arg(),
        gamma.arg(),
        ptr(running_mean),
        ptr(running_var),
    ];
    stats_args.extend(dims);
    stats_args.extend([
        Arg::F64(momentum),
        Arg::F64(eps),
        ptr(&mean),
        ptr(&inv_std),
        ptr(&scale),
    ]);
    let mut affine_args = vec![input.arg(), ptr(&mean), ptr(&scale), beta.arg()];
    affine_args.extend(dims);
    affine_args.push(Arg::ptr(&y, 0));
    // SAFETY: batch_norm_train_stats[_bf16](const T* x, const float* gamma, float*
    // running_mean, float* running_var, int N, int C, int S, double momentum, double eps,
    // float* mean_out, float* inv_std_out, float* scale_out) and batch_norm_affine[_bf16](
    // const T* x, const float* center, const float* scale, const float* shift, int N, int
    // C, int S, T* y), T float or bf16 as the input and y are: x and y hold N*C*S elements,
    // every per-channel buffer C (checked by the caller), and M = N*S >= 2.
    unsafe {
        gpu.launch(
            OP,
            (FILE, T::KERNELS.train_stats),
            gpu.block_per_item_config(c),
            &stats_args,
        )?;
        gpu.launch(
            OP,
            (FILE, T::KERNELS.affine),
            gpu.grid_stride_config(input.len()),
            &affine_args,
        )?;
    }
    let stats = BatchStats {
        mean: wrap(gpu, mean),
        inv_std: wrap(gpu, inv_std),
    };
    Ok((wrap(gpu, y), stats))
}

pub(super) fn forward_eval<T: Activation>(
    input: &CudaStorage<T>,
    (gamma, beta): (&Storage, &Storage),
    (running_mean, running_var): (&Storage, &Storage),
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<Storage> {
    let device = input.device();
    let gpu = input.backend();
    let dims = ncs(g)?;
    let gamma = gamma.cuda(OP, "gamma", device)?;
    let beta = beta.cuda(OP, "beta", device)?;
    let running_mean = running_mean.cuda(OP, "running_mean", device)?;
    let running_var = running_var.cuda(OP, "running_var", device)?;
    let c = g.channels;
    let scale = gpu.alloc::<f32>(c)?;
    let y = gpu.alloc::<T>(input.len())?;
    let mut affine_args = vec![input.arg(), running_mean.arg(), ptr(&scale), beta.arg()];
    affine_args.extend(dims);
    affine_args.push(Arg::ptr(&y, 0));
    // SAFETY: batch_norm_eval_scale(const float* gamma, const float* running_var, int C,
    // double eps, float* scale_out) over C channels, then batch_norm_affine[_bf16] as in
    // forward_train; the sizes were checked by the caller.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "batch_norm_eval_scale"),
            gpu.grid_stride_config(c),
            &[
                gamma.arg(),
                running_var.arg(),
                dims[1],
                Arg::F64(eps),
                ptr(&scale),
            ],
        )?;
        gpu.launch(
            OP,
            (FILE, T::KERNELS.affine),
            gpu.grid_stride_config(input.len()),
            &affine_args,
        )?;
    }
    Ok(wrap(gpu, y))
}

/// Launches `batch_norm_input_grad[_bf16]` with the per-channel `(a, b, k)` coefficients:
/// `dx = a*dy + b*(x - center) + k`.
fn input_grad<T: Activation>(
    input: &CudaStorage<T>,
    grad_out: &CudaStorage<T>,
    center: Arg,
    coef: &CudaBuffer<f32>,
    dims: [Arg; 3],
) -> Result<CudaBuffer<T>> {
    let gpu = input.backend();
    let dx = gpu.alloc::<T>(input.len())?;
    let mut args = vec![input.arg(), grad_out.arg(), center, ptr(coef)];
    args.extend(dims);
    args.push(Arg::ptr(&dx, 0));
    // SAFETY: batch_norm_input_grad[_bf16](const T* x, const T* dy, const float* mean,
    // const float* coef, int N, int C, int S, T* dx), T float or bf16 as x, dy and dx
    // are: they hold N*C*S elements, mean C and coef 3*C (checked by the callers).
    unsafe {
        gpu.launch(
            OP,
            (FILE, T::KERNELS.input_grad),
            gpu.grid_stride_config(input.len()),
            &args,
        )?;
    }
    Ok(dx)
}

pub(super) fn backward_train<T: Activation>(
    input: &CudaStorage<T>,
    gamma: &Storage,
    stats: &BatchStats,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    let device = input.device();
    let gpu = input.backend();
    let dims = ncs(g)?;
    let gamma = gamma.cuda(OP, "gamma", device)?;
    let mean = stats.mean.cuda(OP, "stats.mean", device)?;
    let inv_std = stats.inv_std.cuda(OP, "stats.inv_std", device)?;
    let grad_out = T::operand(grad_out, OP, "grad_out", device)?;
    let c = g.channels;
    let (dgamma, dbeta, coef) = (gpu.alloc(c)?, gpu.alloc(c)?, gpu.alloc(3 * c)?);
    let mut args = vec![
        input.arg(),
        grad_out.arg(),
        gamma.arg(),
        mean.arg(),
        inv_std.arg(),
    ];
    args.extend(dims);
    args.extend([ptr(&dgamma), ptr(&dbeta), ptr(&coef)]);
    // SAFETY: batch_norm_backward_train_reduce[_bf16](const T* x, const T* dy, const
    // float* gamma, const float* mean, const float* inv_std, int N, int C, int S, float*
    // dgamma, float* dbeta, float* coef), T float or bf16 as x and dy are: per-channel
    // buffers of C (coef 3*C), x and dy of N*C*S, all checked by the caller.
    unsafe {
        gpu.launch(
            OP,
            (FILE, T::KERNELS.backward_train_reduce),
            gpu.block_per_item_config(c),
            &args,
        )?;
    }
    let dx = input_grad(input, grad_out, mean.arg(), &coef, dims)?;
    Ok(BatchNormGrads {
        input: wrap(gpu, dx),
        gamma: wrap(gpu, dgamma),
        beta: wrap(gpu, dbeta),
    })
}

pub(super) fn backward_eval<T: Activation>(
    input: &CudaStorage<T>,
    gamma: &Storage,
    (running_mean, running_var): (&Storage, &Storage),
    eps: f64,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    let device = input.device();
    let gpu = input.backend();
    let dims = ncs(g)?;
    let gamma = gamma.cuda(OP, "gamma", device)?;
    let running_mean = running_mean.cuda(OP, "running_mean", device)?;
    let running_var = running_var.cuda(OP, "running_var", device)?;
    let grad_out = T::operand(grad_out, OP, "grad_out", device)?;
    let c = g.channels;
    let (dgamma, dbeta, coef) = (gpu.alloc(c)?, gpu.alloc(c)?, gpu.alloc(3 * c)?);
    let mut args = vec![
        input.arg(),
        grad_out.arg(),
        gamma.arg(),
        running_mean.arg(),
        running_var.arg(),
        Arg::F64(eps),
    ];
    args.extend(dims);
    args.extend([ptr(&dgamma), ptr(&dbeta), ptr(&coef)]);
    // SAFETY: batch_norm_backward_eval_reduce[_bf16](const T* x, const T* dy, const
    // float* gamma, const float* running_mean, const float* running_var, double eps, int
    // N, int C, int S, float* dgamma, float* dbeta, float* coef), T as in backward_train,
    // sizes as in backward_train.
    unsafe {
        gpu.launch(
            OP,
            (FILE, T::KERNELS.backward_eval_reduce),
            gpu.block_per_item_config(c),
            &args,
        )?;
    }
    let dx = input_grad(input, grad_out, running_mean.arg(), &coef, dims)?;
    Ok(BatchNormGrads {
        input: wrap(gpu, dx),
        gamma: wrap(gpu, dgamma),
        beta: wrap(gpu, dbeta),
    })
}
