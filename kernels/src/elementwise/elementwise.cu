// Element-wise arithmetic on equal-length buffers; see elementwise/mod.rs.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// out = a + b
extern "C" __global__ void elementwise_add(const float* a, const float* b, float* out,
                                           unsigned long long n) {
    GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

// out = a * b
extern "C" __global__ void elementwise_mul(const float* a, const float* b, float* out,
                                           unsigned long long n) {
    GRID_STRIDE(i, n) { out[i] = a[i] * b[i]; }
}

// out = a * factor; the host rounds the f64 factor to f32 first, as the CPU code does.
extern "C" __global__ void elementwise_scale(const float* a, float factor, float* out,
                                             unsigned long long n) {
    GRID_STRIDE(i, n) { out[i] = a[i] * factor; }
}

// acc += x, in place (gradient accumulation).
extern "C" __global__ void elementwise_add_assign(float* acc, const float* x,
                                                  unsigned long long n) {
    GRID_STRIDE(i, n) { acc[i] += x[i]; }
}

// acc += weight * (end - acc), in place (a moving average's step); weight rounded to f32
// by the host, as the CPU code does.
extern "C" __global__ void elementwise_lerp_assign(float* acc, const float* end, float weight,
                                                   unsigned long long n) {
    GRID_STRIDE(i, n) { acc[i] += weight * (end[i] - acc[i]); }
}

// out = value everywhere (Storage::full / zeros on the device).
extern "C" __global__ void elementwise_fill(float* out, float value, unsigned long long n) {
    GRID_STRIDE(i, n) { out[i] = value; }
}
