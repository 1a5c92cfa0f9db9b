// In-place optimizer updates, PyTorch's SGD and Adam step for step; see optim/*.rs.
// The host forms every per-step scalar in f64 (as PyTorch does in Python floats) and
// rounds it once to f32 before the launch, exactly as the CPU code does; the element-wise
// arithmetic below is written in the CPU code's order. Weight decay is skipped entirely
// when it is zero (has_weight_decay = 0), as PyTorch skips the `grad + 0 * p` term.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// p -= lr * (g + wd * p): SGD without momentum.
extern "C" __global__ void sgd_step(float* param, const float* grad, unsigned long long n,
                                    float lr, int has_weight_decay, float weight_decay) {
    GRID_STRIDE(i, n) {
        float p = param[i];
        float g = has_weight_decay ? grad[i] + weight_decay * p : grad[i];
        param[i] = p - lr * g;
    }
}

// SGD with momentum:
//   g   = grad + wd * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g
//   p  -= lr * (nesterov ? g + momentum * buf : buf)
// `first` marks the first step, when the buffer holds nothing yet (its contents are not
// read, so it may be uninitialised).
extern "C" __global__ void sgd_momentum_step(float* param, const float* grad, float* buf,
                                             unsigned long long n, float lr,
                                             int has_weight_decay, float weight_decay,
                                             float momentum, float one_minus_dampening,
                                             int nesterov, int first) {
    GRID_STRIDE(i, n) {
        float p = param[i];
        float g = has_weight_decay ? grad[i] + weight_decay * p : grad[i];
        float b = first ? g : momentum * buf[i] + one_minus_dampening * g;
        buf[i] = b;
        float step = nesterov ? g + momentum * b : b;
        param[i] = p - lr * step;
    }
}

// Adam (L2 weight decay folded into the gradient, not AdamW):
//   g  = grad + wd * p
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g * g
//   p -= step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps))
// with step_size = lr / (1 - beta1^step) and bias_correction2_sqrt = sqrt(1 - beta2^step).
extern "C" __global__ void adam_step(float* param, const float* grad, float* exp_avg,
                                     float* exp_avg_sq, unsigned long long n, float beta1,
                                     float one_minus_beta1, float beta2, float one_minus_beta2,
                                     float step_size, float bias_correction2_sqrt, float eps,
                                     int has_weight_decay, float weight_decay) {
    GRID_STRIDE(i, n) {
        float p = param[i];
        float g = has_weight_decay ? grad[i] + weight_decay * p : grad[i];
        float m = beta1 * exp_avg[i] + one_minus_beta1 * g;
        float v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / bias_correction2_sqrt + eps;
        param[i] = p - step_size * (m / denom);
    }
}
