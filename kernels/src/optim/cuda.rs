//! The optimizer steps on the GPU (optim.cu), in place. Every per-step scalar is formed
//! in f64 and rounded once to f32 here, exactly as the CPU code forms its coefficients,
//! and every operand is checked before anything is written, so an `Err` leaves the
//! parameter and the state unchanged.

use super::{AdamConfig, SgdConfig};
use crate::cuda::{wrap, Arg, CudaStorage};
use crate::{Result, Storage};

const FILE: &str = "optim.cu";

pub(super) fn adam(
    param: &mut CudaStorage,
    grad: &Storage,
    exp_avg: &mut Storage,
    exp_avg_sq: &mut Storage,
    step: u64,
    cfg: &AdamConfig,
) -> Result<()> {
    const OP: &str = "adam";
    let device = param.device();
    let gpu = param.backend().clone();
    let grad = grad.cuda(OP, "grad", device)?;
    exp_avg_sq.cuda(OP, "exp_avg_sq", device)?;
    let exp_avg = exp_avg.cuda_mut(OP, "exp_avg", device)?.buffer_mut()?;
    let exp_avg_sq = exp_avg_sq
        .cuda_mut(OP, "exp_avg_sq", device)?
        .buffer_mut()?;
    let n = param.len();
    let param = param.buffer_mut()?;
    let steps = step as f64;
    let bias_correction1 = 1.0 - cfg.beta1.powf(steps);
    let bias_correction2 = 1.0 - cfg.beta2.powf(steps);
    // SAFETY: adam_step(float* param, const float* grad, float* exp_avg, float*
    // exp_avg_sq, unsigned long long n, float beta1, float one_minus_beta1, float beta2,
    // float one_minus_beta2, float step_size, float bias_correction2_sqrt, float eps, int
    // has_weight_decay, float weight_decay); the caller checked that all four buffers
    // hold n elements.
    unsafe {
        gpu.launch(
            OP,
            (FILE, "adam_step"),
            gpu.grid_stride_config(n),
            &[
                Arg::ptr(param, 0),
                grad.arg(),
                Arg::ptr(exp_avg, 0),
                Arg::ptr(exp_avg_sq, 0),
                Arg::U64(n as u64),
                Arg::F32(cfg.beta1 as f32),
                Arg::F32((1.0 - cfg.beta1) as f32),
                Arg::F32(cfg.beta2 as f32),
                Arg::F32((1.0 - cfg.beta2) as f32),
                Arg::F32((cfg.lr / bias_correction1) as f32),
                Arg::F32(bias_correction2.sqrt() as f32),
                Arg::F32(cfg.eps as f32),
                Arg::I32((cfg.weight_decay != 0.0) as i32),
                Arg::F32(cfg.weight_decay as f32),
            ],
        )
    }
}

pub(super) fn sgd(
    param: &mut CudaStorage,
    grad: &Storage,
    momentum_buffer: &mut Option<Storage>,
    cfg: &SgdConfig,
) -> Result<()> {
    const OP: &str = "sgd";
    let device = param.device();
    let gpu = param.backend().clone();
    let grad = grad.cuda(OP, "grad", device)?;
    let n = param.len();
    let decay = [
        Arg::I32((cfg.weight_decay != 0.0) as i32),
        Arg::F32(cfg.weight_decay as f32),
    ];
    let lr = Arg::F32(cfg.lr as f32);
    if cfg.momentum == 0.0 {
        let param = param.buffer_mut()?;
        // SAFETY: sgd_step(float* param, const float* grad, unsigned long long n, float lr,
        // int has_weight_decay, float weight_decay) over the n elements of both.
        return unsafe {
            gpu.launch(
                OP,
                (FILE, "sgd_step"),
                gpu.grid_stride_config(n),
                &[
                    Arg::ptr(param, 0),
                    grad.arg(),
                    Arg::U64(n as u64),
                    lr,
                    decay[0],
                    decay[1],
                ],
            )
        };
    }
    // The first step writes the buffer without reading it: it starts uninitialised.
    let first = momentum_buffer.is_none();
    let mut buffer = match momentum_buffer.take() {
        Some(existing) => existing,
        None => wrap(&gpu, gpu.alloc::<f32>(n)?),
    };
    let result = (|| {
        let buf = buffer
            .cuda_mut(OP, "momentum buffer", device)?
            .buffer_mut()?;
        let param = param.buffer_mut()?;
        // SAFETY: sgd_momentum_step(float* param, const float* grad, float* buf, unsigned
        // long long n, float lr, int has_weight_decay, float weight_decay, float momentum,
        // float one_minus_dampening, int nesterov, int first); the three buffers hold n
        // elements (the caller checked an existing momentum buffer's length).
        unsafe {
            gpu.launch(
                OP,
                (FILE, "sgd_momentum_step"),
                gpu.grid_stride_config(n),
                &[
                    Arg::ptr(param, 0),
                    grad.arg(),
                    Arg::ptr(buf, 0),
                    Arg::U64(n as u64),
                    lr,
                    decay[0],
                    decay[1],
                    Arg::F32(cfg.momentum as f32),
                    Arg::F32((1.0 - cfg.dampening) as f32),
                    Arg::I32(cfg.nesterov as i32),
                    Arg::I32(first as i32),
                ],
            )
        }
    })();
    // An existing buffer goes back whatever happened; a new one only once it is written.
    if !first || result.is_ok() {
        *momentum_buffer = Some(buffer);
    }
    result
}
