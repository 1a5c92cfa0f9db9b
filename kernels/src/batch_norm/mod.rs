//! Batch normalisation over the channel dimension of `[N, C, ...]` input (PyTorch's
//! `BatchNorm1d` / `BatchNorm2d` / `F.batch_norm`).
//!
//! Every channel `c` is normalised over its `M = N * spatial` values (`spatial` is the
//! product of the dimensions after the channel, 1 for `[N, C]`):
//!
//! ```text
//! training:  mean_c = sum(x) / M
//!            var_c  = sum((x - mean_c)^2) / M                  (biased: used to normalise)
//!            running_mean = (1 - momentum) * running_mean + momentum * mean_c
//!            running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)
//!                                                              (unbiased, as PyTorch)
//! eval:      mean_c, var_c = running_mean, running_var
//! both:      inv_std_c = 1 / sqrt(var_c + eps)
//!            y = gamma_c * (x - mean_c) * inv_std_c + beta_c
//! ```
//!
//! Backward, with `xhat = (x - mean_c) * inv_std_c` and sums over the channel's values:
//!
//! ```text
//! dbeta_c  = sum(dy)
//! dgamma_c = sum(dy * xhat)
//! training: dx = gamma_c * inv_std_c * (dy - dbeta_c / M - xhat * dgamma_c / M)
//!           (the batch mean and variance depend on x)
//! eval:     dx = gamma_c * inv_std_c * dy
//! ```
//!
//! Statistics and the per-channel sums are accumulated in f64 whatever the element type.
//! The variance is computed without the cancellation of `E[x^2] - E[x]^2`: each
//! `(n, c)` plane gets an exact two-pass mean and squared deviation while it sits in cache,
//! and planes are merged with Chan et al.'s pairwise update, so the input is read from
//! memory once.
//!
//! Training with a single value per channel (`M == 1`) is refused, as in PyTorch: the
//! variance would be 0 and the unbiased variance undefined.
//!
//! Under autocast the input (a convolution's output) may be bf16, on the CPU or the GPU,
//! with f32 parameters and running statistics, as in PyTorch, whose batch norm keeps its
//! parameters and statistics in f32: the output is then bf16 and the statistics f32. Every gradient
//! has its tensor's dtype, as in PyTorch: the backward of a bf16 input takes the bf16
//! gradient of the (bf16) output and returns a bf16 gradient of the input, with f32
//! gradients of gamma and beta. Each bf16 value is widened as it is read and each bf16
//! result rounded once as it is written, so the results are bit for bit those of the f32
//! kernel on the widened values, the bf16 ones rounded once; the input and the gradients
//! flowing through it cost half the memory traffic of f32 ones.

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use half::bf16;

use crate::bf16_values::Stored;
use crate::{fmt_shape, Element, Error, Result, Storage};

const OP: &str = "batch_norm";

/// The three sizes batch norm works with: `input = [batch, channels, spatial...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormGeometry {
    pub batch: usize,
    pub channels: usize,
    /// Product of the dimensions after the channel dimension (1 for a 2-D input).
    pub spatial: usize,
}

impl BatchNormGeometry {
    /// Reads `[N, C]`, `[N, C, L]` or `[N, C, H, W]` and checks `C == num_features`.
    pub fn new(input: &[usize], num_features: usize) -> Result<BatchNormGeometry> {
        if !(2..=4).contains(&input.len()) {
            return Err(Error::shape(
                OP,
                format!(
                    "expected input [N, C], [N, C, L] or [N, C, H, W], got {}",
                    fmt_shape(input)
                ),
            ));
        }
        if input[1] != num_features {
            return Err(Error::shape(
                OP,
                format!(
                    "input {} has {} channels, expected num_features = {num_features}",
                    fmt_shape(input),
                    input[1]
                ),
            ));
        }
        if input
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .is_none()
        {
            return Err(Error::shape(
                OP,
                format!("input {} has too many elements", fmt_shape(input)),
            ));
        }
        Ok(BatchNormGeometry {
            batch: input[0],
            channels: input[1],
            spatial: input[2..].iter().product(),
        })
    }

    /// `[batch, channels, spatial]`, for messages.
    fn shape(&self) -> [usize; 3] {
        [self.batch, self.channels, self.spatial]
    }

    /// Number of input elements; refuses a hand-built geometry whose product overflows.
    fn len(&self) -> Result<usize> {
        self.batch
            .checked_mul(self.channels)
            .and_then(|n| n.checked_mul(self.spatial))
            .ok_or_else(|| {
                Error::shape(
                    OP,
                    format!("input {} has too many elements", fmt_shape(&self.shape())),
                )
            })
    }

    /// Values each channel is normalised over.
    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// Checks the input-shaped buffers and the per-channel parameter buffers.
    fn check(&self, inputs: &[(&Storage, &str)], per_channel: &[(&Storage, &str)]) -> Result<()> {
        let len = self.len()?;
        for (storage, name) in inputs {
            storage.expect_len(OP, name, len).map_err(|_| {
                Error::shape(
                    OP,
                    format!(
                        "{name} has {} elements, expected {len} for input [N, C, spatial] = {}",
                        storage.len(),
                        fmt_shape(&self.shape())
                    ),
                )
            })?;
        }
        for (storage, name) in per_channel {
            if storage.len() != self.channels {
                return Err(Error::shape(
                    OP,
                    format!(
                        "{name} has {} elements, expected one per channel ({}) for input [N, C, spatial] = {}",
                        storage.len(),
                        self.channels,
                        fmt_shape(&self.shape())
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Per-channel statistics saved by the forward pass for the backward pass.
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// Batch mean of each channel, in the input's dtype (f32 for a bf16 input).
    pub mean: Storage,
    /// `1 / sqrt(biased batch variance + eps)` of each channel, in the input's dtype (f32
    /// for a bf16 input).
    pub inv_std: Storage,
}

/// Gradients of batch norm with respect to its input and affine parameters, each in its
/// tensor's dtype: `input` in the input's, `gamma` and `beta` in the parameters' (f32 for
/// a bf16 input, whose parameters are f32).
#[derive(Clone, Debug)]
pub struct BatchNormGrads {
    pub input: Storage,
    pub gamma: Storage,
    pub beta: Storage,
}

fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            OP,
            format!("eps must be positive and finite, got {eps}"),
        ))
    }
}

fn check_momentum(momentum: f64) -> Result<()> {
    if (0.0..=1.0).contains(&momentum) {
        Ok(())
    } else {
        Err(Error::invalid(
            OP,
            format!("momentum must be in [0, 1], got {momentum}"),
        ))
    }
}

/// Normalises with the batch statistics and updates the running statistics in place
/// (biased variance to normalise, unbiased variance into `running_var`).
///
/// Every operand has the input's dtype, except that a bf16 input takes f32 parameters and
/// running statistics (on its device); the output then is bf16 and the statistics f32.
/// Any other mix is an [`Error::Mismatch`] naming the operand.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
    input: &Storage,
    gamma: &Storage,
    beta: &Storage,
    running_mean: &mut Storage,
    running_var: &mut Storage,
    momentum: f64,
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<(Storage, BatchStats)> {
    check_momentum(momentum)?;
    check_eps(eps)?;
    g.check(
        &[(input, "input")],
        &[
            (gamma, "gamma"),
            (beta, "beta"),
            (running_mean, "running_mean"),
            (running_var, "running_var"),
        ],
    )?;
    if g.per_channel() < 2 {
        return Err(Error::invalid(
            OP,
            format!(
                "expected more than 1 value per channel when training, got input [N, C, spatial] = {}",
                fmt_shape(&g.shape())
            ),
        ));
    }
    dispatch!(
        OP,
        input,
        cpu::<T> => forward_train_cpu::<T>(
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
            g,
        ),
        bf16 => forward_train_cpu::<bf16>(
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
            g,
        ),
        cuda(input) => cuda::forward_train(
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
            g,
        ),
        cuda_bf16(input) => cuda::forward_train(
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
            g,
        ),
    )
}

/// Normalises with the running statistics (inference). Dtypes as in [`forward_train`].
pub fn forward_eval(
    input: &Storage,
    gamma: &Storage,
    beta: &Storage,
    running_mean: &Storage,
    running_var: &Storage,
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<Storage> {
    check_eps(eps)?;
    g.check(
        &[(input, "input")],
        &[
            (gamma, "gamma"),
            (beta, "beta"),
            (running_mean, "running_mean"),
            (running_var, "running_var"),
        ],
    )?;
    dispatch!(
        OP,
        input,
        cpu::<T> => forward_eval_cpu::<T>(input, gamma, beta, running_mean, running_var, eps, g),
        bf16 => forward_eval_cpu::<bf16>(input, gamma, beta, running_mean, running_var, eps, g),
        cuda(input) => cuda::forward_eval(input, (gamma, beta), (running_mean, running_var), eps, g),
        cuda_bf16(input) => cuda::forward_eval(input, (gamma, beta), (running_mean, running_var), eps, g),
    )
}

/// Backward of forward_train: the batch statistics depend on the input.
///
/// Every operand has the input's dtype, except that a bf16 input (the saved forward input
/// under autocast, on the CPU or the GPU) takes f32 `gamma` and `stats`: its `grad_out` (the
/// gradient of the bf16 output) and the gradient of the input then are bf16, those of
/// gamma and beta f32. Any other mix, an f32 `grad_out` for a bf16 input included, is an
/// [`Error::Mismatch`] naming the operand and the dtype expected.
pub fn backward_train(
    input: &Storage,
    gamma: &Storage,
    stats: &BatchStats,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    g.check(
        &[(input, "input"), (grad_out, "grad_out")],
        &[
            (gamma, "gamma"),
            (&stats.mean, "stats.mean"),
            (&stats.inv_std, "stats.inv_std"),
        ],
    )?;
    dispatch!(
        OP,
        input,
        cpu::<T> => backward_train_cpu::<T>(input, gamma, stats, grad_out, g),
        bf16 => backward_train_cpu::<bf16>(input, gamma, stats, grad_out, g),
        cuda(input) => cuda::backward_train(input, gamma, stats, grad_out, g),
        cuda_bf16(input) => cuda::backward_train(input, gamma, stats, grad_out, g),
    )
}

/// Backward of forward_eval: the running statistics are constants. Dtypes as in
/// [`backward_train`].
pub fn backward_eval(
    input: &Storage,
    gamma: &Storage,
    running_mean: &Storage,
    running_var: &Storage,
    eps: f64,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    check_eps(eps)?;
    g.check(
        &[(input, "input"), (grad_out, "grad_out")],
        &[
            (gamma, "gamma"),
            (running_mean, "running_mean"),
            (running_var, "running_var"),
        ],
    )?;
    dispatch!(
        OP,
        input,
        cpu::<T> => backward_eval_cpu::<T>(input, gamma, running_mean, running_var, eps, grad_out, g),
        bf16 => backward_eval_cpu::<bf16>(input, gamma, running_mean, running_var, eps, grad_out, g),
        cuda(input) => cuda::backward_eval(input, gamma, (running_mean, running_var), eps, grad_out, g),
        cuda_bf16(input) => cuda::backward_eval(input, gamma, (running_mean, running_var), eps, grad_out, g),
    )
}

/// `1 / sqrt(var + eps)` per channel, in f64.
fn inv_std_of<T: Element>(var: &[T], eps: f64) -> Vec<f64> {
    var.iter()
        .map(|&v| 1.0 / (v.to_f64_lossy() + eps).sqrt())
        .collect()
}

fn to_f64<T: Element>(values: &[T]) -> Vec<f64> {
    values.iter().map(|&v| v.to_f64_lossy()).collect()
}

fn from_f64<T: Element>(values: &[f64]) -> Storage {
    T::into_storage(values.iter().map(|&v| T::of(v)).collect())
}

/// The generic CPU kernels below take `T`, the input's element type (f32, f64 or bf16),
/// which is also that of the output, `grad_out` and the gradient of the input; parameters,
/// statistics and their gradients are in `T::Compute` (f32 for bf16).
#[allow(clippy::too_many_arguments)]
fn forward_train_cpu<T: Stored>(
    input: &Storage,
    gamma: &Storage,
    beta: &Storage,
    running_mean: &mut Storage,
    running_var: &mut Storage,
    momentum: f64,
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<(Storage, BatchStats)> {
    let x = T::from_host(input, OP, "input")?;
    let gamma = to_f64(gamma.host::<T::Compute>(OP, "gamma")?);
    let beta = to_f64(beta.host::<T::Compute>(OP, "beta")?);
    // Borrow both running buffers before touching either, so a dtype error leaves them unchanged.
    let running_var = running_var.host_mut::<T::Compute>(OP, "running_var")?;
    let running_mean = running_mean.host_mut::<T::Compute>(OP, "running_mean")?;

    let moments = cpu::channel_moments(x, g);
    let m = g.per_channel() as f64;
    let of = <T::Compute as Element>::of;
    let mut inv_std = Vec::with_capacity(g.channels);
    for (c, &(mean, m2)) in moments.iter().enumerate() {
        let biased = m2 / m;
        let unbiased = m2 / (m - 1.0);
        inv_std.push(1.0 / (biased + eps).sqrt());
        running_mean[c] = of((1.0 - momentum) * running_mean[c].to_f64_lossy() + momentum * mean);
        running_var[c] = of((1.0 - momentum) * running_var[c].to_f64_lossy() + momentum * unbiased);
    }
    let mean: Vec<f64> = moments.iter().map(|&(mean, _)| mean).collect();
    let y = cpu::affine(x, &affine_coefficients(&gamma, &beta, &mean, &inv_std), g);
    let stats = BatchStats {
        mean: from_f64::<T::Compute>(&mean),
        inv_std: from_f64::<T::Compute>(&inv_std),
    };
    Ok((T::to_storage(y), stats))
}

/// `y = (x - mean) * scale + beta` with `scale = gamma * inv_std`, per channel.
fn affine_coefficients(
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    inv_std: &[f64],
) -> Vec<(f64, f64, f64)> {
    (0..gamma.len())
        .map(|c| (mean[c], gamma[c] * inv_std[c], beta[c]))
        .collect()
}

fn forward_eval_cpu<T: Stored>(
    input: &Storage,
    gamma: &Storage,
    beta: &Storage,
    running_mean: &Storage,
    running_var: &Storage,
    eps: f64,
    g: &BatchNormGeometry,
) -> Result<Storage> {
    let x = T::from_host(input, OP, "input")?;
    let gamma = to_f64(gamma.host::<T::Compute>(OP, "gamma")?);
    let beta = to_f64(beta.host::<T::Compute>(OP, "beta")?);
    let mean = to_f64(running_mean.host::<T::Compute>(OP, "running_mean")?);
    let inv_std = inv_std_of(running_var.host::<T::Compute>(OP, "running_var")?, eps);
    let y = cpu::affine(x, &affine_coefficients(&gamma, &beta, &mean, &inv_std), g);
    Ok(T::to_storage(y))
}

fn backward_train_cpu<T: Stored>(
    input: &Storage,
    gamma: &Storage,
    stats: &BatchStats,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    let x = T::from_host(input, OP, "input")?;
    let dy = T::from_host(grad_out, OP, "grad_out")?;
    let gamma = to_f64(gamma.host::<T::Compute>(OP, "gamma")?);
    let mean = to_f64(stats.mean.host::<T::Compute>(OP, "stats.mean")?);
    let inv_std = to_f64(stats.inv_std.host::<T::Compute>(OP, "stats.inv_std")?);

    let sums = cpu::grad_sums(x, dy, &mean, g);
    let m = g.per_channel() as f64;
    let mut dgamma = Vec::with_capacity(g.channels);
    let mut dbeta = Vec::with_capacity(g.channels);
    // dx = a*dy + b*(x - mean) + k, the training formula with its per-channel factors
    // gathered: a = gamma*inv_std, b = -a*inv_std*dgamma/M, k = -a*dbeta/M.
    let coefficients: Vec<(f64, f64, f64, f64)> = sums
        .iter()
        .enumerate()
        .map(|(c, &(sum_dy, sum_dy_xc))| {
            let dg = sum_dy_xc * inv_std[c];
            dgamma.push(dg);
            dbeta.push(sum_dy);
            let a = gamma[c] * inv_std[c];
            let b = -a * inv_std[c] * dg / m;
            (mean[c], a, b, -a * sum_dy / m)
        })
        .collect();
    Ok(BatchNormGrads {
        input: T::to_storage(cpu::input_grad(x, dy, &coefficients, g)),
        gamma: from_f64::<T::Compute>(&dgamma),
        beta: from_f64::<T::Compute>(&dbeta),
    })
}

fn backward_eval_cpu<T: Stored>(
    input: &Storage,
    gamma: &Storage,
    running_mean: &Storage,
    running_var: &Storage,
    eps: f64,
    grad_out: &Storage,
    g: &BatchNormGeometry,
) -> Result<BatchNormGrads> {
    let x = T::from_host(input, OP, "input")?;
    let dy = T::from_host(grad_out, OP, "grad_out")?;
    let gamma = to_f64(gamma.host::<T::Compute>(OP, "gamma")?);
    let mean = to_f64(running_mean.host::<T::Compute>(OP, "running_mean")?);
    let inv_std = inv_std_of(running_var.host::<T::Compute>(OP, "running_var")?, eps);

    let sums = cpu::grad_sums(x, dy, &mean, g);
    let dgamma: Vec<f64> = sums
        .iter()
        .zip(&inv_std)
        .map(|(&(_, s), &is)| s * is)
        .collect();
    let dbeta: Vec<f64> = sums.iter().map(|&(s, _)| s).collect();
    // dx = gamma*inv_std*dy: a per-channel scaling of dy, no term in x.
    let coefficients: Vec<(f64, f64, f64)> = gamma
        .iter()
        .zip(&inv_std)
        .map(|(&gm, &is)| (0.0, gm * is, 0.0))
        .collect();
    Ok(BatchNormGrads {
        input: T::to_storage(cpu::affine(dy, &coefficients, g)),
        gamma: from_f64::<T::Compute>(&dgamma),
        beta: from_f64::<T::Compute>(&dbeta),
    })
}
