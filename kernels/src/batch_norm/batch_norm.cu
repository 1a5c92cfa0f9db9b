// Batch normalisation over the channels of [N, C, S] input (S = spatial size, 1 for
// [N, C]); see batch_norm/mod.rs for the math. Per-channel sums are accumulated in f64,
// one block per channel (blocks stride over the channels; blockDim.x a multiple of 32).
//
// forward, training:  batch_norm_train_stats   -> mean, inv_std, scale = gamma*inv_std,
//                                                 running statistics updated in place
//                     batch_norm_affine(x, mean, scale, beta)
// forward, eval:      batch_norm_eval_scale    -> scale = gamma / sqrt(running_var + eps)
//                     batch_norm_affine(x, running_mean, scale, beta)
// backward:           batch_norm_backward_{train,eval}_reduce -> dgamma, dbeta and the
//                     per-channel coefficients (a, b, k) of dx = a*dy + b*(x - mean) + k
//                     batch_norm_input_grad
//
// The variance is the exact two-pass one, sum((x - mean)^2) / M, without the cancellation
// of E[x^2] - E[x]^2. Scalars the CPU code forms in f64 (inv_std, gamma*inv_std, the
// running averages, the backward coefficients) are formed in f64 here too and rounded once.
//
// The kernels that read the input or its gradients are written once over their stored type
// T (`*_of<T>`, with an extern "C" wrapper per type): float, or bf16 (under autocast: the
// input, the output and both activation gradients), each value widened as it is read and
// each bf16 result computed in f32 and rounded once as it is stored, as the CPU's bf16 arms.
// Statistics, parameters and their gradients are f32 in both.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// Offset of value j (0 <= j < N*S) of channel c.
__device__ __forceinline__ unsigned long long channel_offset(unsigned long long j, int c, int C,
                                                             int S) {
    unsigned long long n = j / (unsigned long long)S;
    unsigned long long s = j - n * S;
    return (n * C + c) * (unsigned long long)S + s;
}

// Batch statistics of every channel, and the running statistics updated in place:
//   mean_out[c]    = mean_c
//   inv_std_out[c] = 1 / sqrt(var_c + eps)              (biased variance)
//   scale_out[c]   = gamma_c * inv_std_c                 (formed in f64)
//   running_mean   = (1 - momentum) * running_mean + momentum * mean_c
//   running_var    = (1 - momentum) * running_var + momentum * var_c * M / (M - 1)
// The host has checked M = N*S >= 2.
template <class T>
__device__ __forceinline__ void batch_norm_train_stats_of(const T* x, const float* gamma,
                                                          float* running_mean,
                                                          float* running_var, int N, int C,
                                                          int S, double momentum, double eps,
                                                          float* mean_out, float* inv_std_out,
                                                          float* scale_out) {
    unsigned long long count = (unsigned long long)N * S;
    double m = (double)count;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double acc = 0.0;
        for (unsigned long long j = threadIdx.x; j < count; j += blockDim.x) {
            acc += (double)widen(x[channel_offset(j, c, C, S)]);
        }
        double mean = block_sum(acc) / m;
        acc = 0.0;
        for (unsigned long long j = threadIdx.x; j < count; j += blockDim.x) {
            double d = (double)widen(x[channel_offset(j, c, C, S)]) - mean;
            acc += d * d;
        }
        double m2 = block_sum(acc);
        if (threadIdx.x == 0) {
            double biased = m2 / m;
            double unbiased = m2 / (m - 1.0);
            double inv_std = 1.0 / sqrt(biased + eps);
            mean_out[c] = (float)mean;
            inv_std_out[c] = (float)inv_std;
            scale_out[c] = (float)((double)gamma[c] * inv_std);
            running_mean[c] = (float)((1.0 - momentum) * (double)running_mean[c] + momentum * mean);
            running_var[c] =
                (float)((1.0 - momentum) * (double)running_var[c] + momentum * unbiased);
        }
    }
}

extern "C" __global__ void batch_norm_train_stats(const float* x, const float* gamma,
                                                  float* running_mean, float* running_var,
                                                  int N, int C, int S, double momentum,
                                                  double eps, float* mean_out,
                                                  float* inv_std_out, float* scale_out) {
    batch_norm_train_stats_of(x, gamma, running_mean, running_var, N, C, S, momentum, eps,
                              mean_out, inv_std_out, scale_out);
}

extern "C" __global__ void batch_norm_train_stats_bf16(const bf16* x, const float* gamma,
                                                       float* running_mean, float* running_var,
                                                       int N, int C, int S, double momentum,
                                                       double eps, float* mean_out,
                                                       float* inv_std_out, float* scale_out) {
    batch_norm_train_stats_of(x, gamma, running_mean, running_var, N, C, S, momentum, eps,
                              mean_out, inv_std_out, scale_out);
}

// scale_out[c] = gamma_c / sqrt(running_var_c + eps), formed in f64 (inference).
extern "C" __global__ void batch_norm_eval_scale(const float* gamma, const float* running_var,
                                                 int C, double eps, float* scale_out) {
    GRID_STRIDE(c, (unsigned long long)C) {
        double inv_std = 1.0 / sqrt((double)running_var[c] + eps);
        scale_out[c] = (float)((double)gamma[c] * inv_std);
    }
}

// y = (x - center_c) * scale_c + shift_c. The mean is subtracted first (not folded into
// the shift) so that f32 outputs stay accurate when a channel's mean is large.
template <class T>
__device__ __forceinline__ void batch_norm_affine_of(const T* x, const float* center,
                                                     const float* scale, const float* shift,
                                                     int N, int C, int S, T* y) {
    GRID_STRIDE(i, (unsigned long long)N * C * S) {
        int c = (int)((i / (unsigned long long)S) % (unsigned long long)C);
        store(&y[i], (widen(x[i]) - center[c]) * scale[c] + shift[c]);
    }
}

extern "C" __global__ void batch_norm_affine(const float* x, const float* center,
                                             const float* scale, const float* shift, int N,
                                             int C, int S, float* y) {
    batch_norm_affine_of(x, center, scale, shift, N, C, S, y);
}

extern "C" __global__ void batch_norm_affine_bf16(const bf16* x, const float* center,
                                                  const float* scale, const float* shift, int N,
                                                  int C, int S, bf16* y) {
    batch_norm_affine_of(x, center, scale, shift, N, C, S, y);
}

// (sum(dy), sum(dy * (x - mean_c))) of channel c, in f64, returned to every thread.
template <class T>
__device__ void grad_sums(const T* x, const T* dy, double mean, int c, int N, int C, int S,
                          double* sum_dy, double* sum_dy_xc) {
    unsigned long long count = (unsigned long long)N * S;
    double s = 0.0, sx = 0.0;
    for (unsigned long long j = threadIdx.x; j < count; j += blockDim.x) {
        unsigned long long k = channel_offset(j, c, C, S);
        double d = (double)widen(dy[k]);
        s += d;
        sx += d * ((double)widen(x[k]) - mean);
    }
    *sum_dy = block_sum(s);
    *sum_dy_xc = block_sum(sx);
}

// Backward of the training forward, given the saved mean and inv_std:
//   dbeta_c  = sum(dy),  dgamma_c = sum(dy * (x - mean_c)) * inv_std_c
//   coef[3c..3c+3] = (a, b, k) with a = gamma*inv_std, b = -a*inv_std*dgamma/M,
//   k = -a*dbeta/M, so that dx = a*dy + b*(x - mean) + k (batch_norm_input_grad).
template <class T>
__device__ __forceinline__ void batch_norm_backward_train_reduce_of(
    const T* x, const T* dy, const float* gamma, const float* mean, const float* inv_std, int N,
    int C, int S, float* dgamma, float* dbeta, float* coef) {
    double m = (double)N * (double)S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double sum_dy, sum_dy_xc;
        grad_sums(x, dy, (double)mean[c], c, N, C, S, &sum_dy, &sum_dy_xc);
        if (threadIdx.x == 0) {
            double is = (double)inv_std[c];
            double dg = sum_dy_xc * is;
            double a = (double)gamma[c] * is;
            double b = -a * is * dg / m;
            double k = -a * sum_dy / m;
            dgamma[c] = (float)dg;
            dbeta[c] = (float)sum_dy;
            coef[3 * c] = (float)a;
            coef[3 * c + 1] = (float)b;
            coef[3 * c + 2] = (float)k;
        }
    }
}

extern "C" __global__ void batch_norm_backward_train_reduce(const float* x, const float* dy,
                                                            const float* gamma, const float* mean,
                                                            const float* inv_std, int N, int C,
                                                            int S, float* dgamma, float* dbeta,
                                                            float* coef) {
    batch_norm_backward_train_reduce_of(x, dy, gamma, mean, inv_std, N, C, S, dgamma, dbeta,
                                        coef);
}

extern "C" __global__ void batch_norm_backward_train_reduce_bf16(
    const bf16* x, const bf16* dy, const float* gamma, const float* mean, const float* inv_std,
    int N, int C, int S, float* dgamma, float* dbeta, float* coef) {
    batch_norm_backward_train_reduce_of(x, dy, gamma, mean, inv_std, N, C, S, dgamma, dbeta,
                                        coef);
}

// Backward of the eval forward (running statistics are constants):
//   dbeta_c = sum(dy),  dgamma_c = sum(dy * (x - running_mean_c)) * inv_std_c,
//   coef = (gamma*inv_std, 0, 0): dx = gamma * inv_std * dy.
template <class T>
__device__ __forceinline__ void batch_norm_backward_eval_reduce_of(
    const T* x, const T* dy, const float* gamma, const float* running_mean,
    const float* running_var, double eps, int N, int C, int S, float* dgamma, float* dbeta,
    float* coef) {
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double sum_dy, sum_dy_xc;
        grad_sums(x, dy, (double)running_mean[c], c, N, C, S, &sum_dy, &sum_dy_xc);
        if (threadIdx.x == 0) {
            double is = 1.0 / sqrt((double)running_var[c] + eps);
            dgamma[c] = (float)(sum_dy_xc * is);
            dbeta[c] = (float)sum_dy;
            coef[3 * c] = (float)((double)gamma[c] * is);
            coef[3 * c + 1] = 0.0f;
            coef[3 * c + 2] = 0.0f;
        }
    }
}

extern "C" __global__ void batch_norm_backward_eval_reduce(const float* x, const float* dy,
                                                           const float* gamma,
                                                           const float* running_mean,
                                                           const float* running_var, double eps,
                                                           int N, int C, int S, float* dgamma,
                                                           float* dbeta, float* coef) {
    batch_norm_backward_eval_reduce_of(x, dy, gamma, running_mean, running_var, eps, N, C, S,
                                       dgamma, dbeta, coef);
}

extern "C" __global__ void batch_norm_backward_eval_reduce_bf16(
    const bf16* x, const bf16* dy, const float* gamma, const float* running_mean,
    const float* running_var, double eps, int N, int C, int S, float* dgamma, float* dbeta,
    float* coef) {
    batch_norm_backward_eval_reduce_of(x, dy, gamma, running_mean, running_var, eps, N, C, S,
                                       dgamma, dbeta, coef);
}

// dx = a_c * dy + b_c * (x - mean_c) + k_c with coef[3c..3c+3] = (a_c, b_c, k_c).
template <class T>
__device__ __forceinline__ void batch_norm_input_grad_of(const T* x, const T* dy,
                                                         const float* mean, const float* coef,
                                                         int N, int C, int S, T* dx) {
    GRID_STRIDE(i, (unsigned long long)N * C * S) {
        int c = (int)((i / (unsigned long long)S) % (unsigned long long)C);
        float a = coef[3 * c], b = coef[3 * c + 1], k = coef[3 * c + 2];
        store(&dx[i], a * widen(dy[i]) + b * (widen(x[i]) - mean[c]) + k);
    }
}

extern "C" __global__ void batch_norm_input_grad(const float* x, const float* dy,
                                                 const float* mean, const float* coef, int N,
                                                 int C, int S, float* dx) {
    batch_norm_input_grad_of(x, dy, mean, coef, N, C, S, dx);
}

extern "C" __global__ void batch_norm_input_grad_bf16(const bf16* x, const bf16* dy,
                                                      const float* mean, const float* coef,
                                                      int N, int C, int S, bf16* dx) {
    batch_norm_input_grad_of(x, dy, mean, coef, N, C, S, dx);
}
