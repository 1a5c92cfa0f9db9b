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

// y = x rounded to bf16 (Storage::to_dtype on the device; a weight before a bf16 product).
extern "C" __global__ void elementwise_to_bf16(const float* x, bf16* y, unsigned long long n) {
    GRID_STRIDE(i, n) { y[i] = round_bf16(x[i]); }
}

// y = x widened to f32 (exact).
extern "C" __global__ void elementwise_from_bf16(const bf16* x, float* y, unsigned long long n) {
    GRID_STRIDE(i, n) { y[i] = widen(x[i]); }
}

// acc += x for bf16 gradients (two uses of one bf16 activation): added in f32, the sum
// rounded once, as the CPU's add_assign.
extern "C" __global__ void elementwise_add_assign_bf16(bf16* acc, const bf16* x,
                                                       unsigned long long n) {
    GRID_STRIDE(i, n) { acc[i] = round_bf16(widen(acc[i]) + widen(x[i])); }
}
