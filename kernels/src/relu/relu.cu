// ReLU on the GPU; the CPU code and the math are in relu/mod.rs and relu/cpu.rs.
// Compiled at run time by NVRTC, which has no libc headers: nothing is #included.

#define GRID_STRIDE(i, n)                                                          \
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

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
