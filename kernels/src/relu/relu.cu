// ReLU on the GPU; the CPU code and the math are in relu/mod.rs and relu/cpu.rs.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.
//
// Written once over the stored type T: float, or bf16 (an activation stored under
// autocast), compared widened to f32. Both passes copy a value or write +0 (T(0) is +0 in
// both types), so they are exact in either type, as on the CPU.

// y = x > 0 ? x : 0 (a NaN input gives 0, as on the CPU).
template <class T>
__device__ __forceinline__ void relu_forward_of(const T* x, T* y, unsigned long long n) {
    GRID_STRIDE(i, n) {
        T v = x[i];
        y[i] = widen(v) > 0.0f ? v : T(0);
    }
}

// grad_in = x > 0 ? grad_out : 0, from the forward input x.
template <class T>
__device__ __forceinline__ void relu_backward_of(const T* x, const T* grad_out, T* grad_in,
                                                 unsigned long long n) {
    GRID_STRIDE(i, n) {
        grad_in[i] = widen(x[i]) > 0.0f ? grad_out[i] : T(0);
    }
}

extern "C" __global__ void relu_forward(const float* x, float* y, unsigned long long n) {
    relu_forward_of(x, y, n);
}

extern "C" __global__ void relu_backward(const float* x, const float* grad_out, float* grad_in,
                                         unsigned long long n) {
    relu_backward_of(x, grad_out, grad_in, n);
}

extern "C" __global__ void relu_forward_bf16(const bf16* x, bf16* y, unsigned long long n) {
    relu_forward_of(x, y, n);
}

extern "C" __global__ void relu_backward_bf16(const bf16* x, const bf16* grad_out, bf16* grad_in,
                                              unsigned long long n) {
    relu_backward_of(x, grad_out, grad_in, n);
}
