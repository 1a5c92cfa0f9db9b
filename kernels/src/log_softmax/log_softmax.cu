// Log-softmax along the rows of a rows x cols matrix; see log_softmax/mod.rs.
//
//   y[r, j] = x[r, j] - lse(x[r, :]),  lse(x) = m + ln(sum_j exp(x_j - m)),  m = max_j x_j
//   (when m is not finite the shift is skipped: lse = ln(sum_j exp(x_j)), as the CPU code)
//   grad_x[k] = g[k] - exp(y[k]) * sum_j g[j]
//
// One warp per row: blockDim.x must be a multiple of 32; launch with at least
// rows / (blockDim.x / 32) blocks or fewer (the warps stride over the rows).
// Compiled at run time by NVRTC, which has no libc headers: nothing is #included.

#define F32_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// fmaxf ignores a NaN operand, like Rust's f32::max used by the CPU fold.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// log-sum-exp of one row, the same in every lane of the warp.
__device__ float row_logsumexp(const float* x, int cols, unsigned int lane) {
    float m = -F32_INF;
    for (int j = lane; j < cols; j += 32) {
        m = fmaxf(m, x[j]);
    }
    m = warp_max(m);
    float total = 0.0f;
    if (fabsf(m) < F32_INF) {
        for (int j = lane; j < cols; j += 32) {
            total += expf(x[j] - m);
        }
        return m + logf(warp_sum(total));
    }
    // All -inf (the sum is 0 and the result -inf), or a +inf / NaN: no shift makes sense.
    for (int j = lane; j < cols; j += 32) {
        total += expf(x[j]);
    }
    return logf(warp_sum(total));
}

extern "C" __global__ void log_softmax_forward(const float* x, float* y, int rows, int cols) {
    unsigned int lane = threadIdx.x & 31u;
    long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += warps) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float lse = row_logsumexp(xr, cols, lane);
        for (int j = lane; j < cols; j += 32) {
            yr[j] = xr[j] - lse;
        }
    }
}

extern "C" __global__ void log_softmax_backward(const float* y, const float* grad_out,
                                                float* grad_in, int rows, int cols) {
    unsigned int lane = threadIdx.x & 31u;
    long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += warps) {
        const float* yr = y + r * cols;
        const float* gr = grad_out + r * cols;
        float* dr = grad_in + r * cols;
        float total = 0.0f;
        for (int j = lane; j < cols; j += 32) {
            total += gr[j];
        }
        total = warp_sum(total);
        for (int j = lane; j < cols; j += 32) {
            dr[j] = gr[j] - expf(yr[j]) * total;
        }
    }
}
