// ReLU on the GPU; the CPU code and the math are in relu/mod.rs and relu/cpu.rs.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// y = x > 0 ? x : 0 (a NaN input gives 0, as on the CPU).
extern "C" __global__ void relu_forward(const float* x, float* y, unsigned long long n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

// grad_in = x > 0 ? grad_out : 0, from the forward input x.
extern "C" __global__ void relu_backward(const float* x, const float* grad_out, float* grad_in,
                                         unsigned long long n) {
    GRID_STRIDE(i, n) {
        grad_in[i] = x[i] > 0.0f ? grad_out[i] : 0.0f;
    }
}
