// Log-softmax along the rows of a rows x cols matrix; see log_softmax/mod.rs.
//
//   y[r, j] = x[r, j] - lse(x[r, :]),  lse(x) = m + ln(sum_j exp(x_j - m)),  m = max_j x_j
//   (when m is not finite the shift is skipped: lse = ln(sum_j exp(x_j)), as the CPU code)
//   grad_x[k] = g[k] - exp(y[k]) * sum_j g[j]
//
// One warp per row: blockDim.x must be a multiple of 32; launch with at least
// rows / (blockDim.x / 32) blocks or fewer (the warps stride over the rows).
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

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
    WARP_PER_ROW(r, rows) {
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
    WARP_PER_ROW(r, rows) {
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
