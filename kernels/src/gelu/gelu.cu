// GELU on the GPU; the math is in gelu/mod.rs, the CPU code in gelu/cpu.rs, and the normal
// cdf below repeats gelu/normal.rs line for line (same coefficients; the polynomials in
// explicit fmaf, correctly rounded like Rust's mul_add; every other multiply and add plain,
// as NVRTC compiles with --fmad=false), so both give the same bits.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

__device__ __forceinline__ float gelu_exp(float q) {
    const float ROUND = 12582912.0f;  // 1.5 * 2^23: x + ROUND - ROUND rounds to an integer
    const float LN2_HI = 0.69314575f;
    const float LN2_LO = 1.4286068e-6f;
    float clamped = fminf(fmaxf(q, -87.0f), 88.0f);
    float k = (clamped * 1.44269504f + ROUND) - ROUND;
    float r = (clamped - k * LN2_HI) - k * LN2_LO;
    float two_to_k = __int_as_float(((int)k + 127) << 23);
    float p = 0.0013836846f;
    p = fmaf(p, r, 0.008374816f);
    p = fmaf(p, r, 0.041668225f);
    p = fmaf(p, r, 0.1666642f);
    p = fmaf(p, r, 0.4999999f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    float value = p * two_to_k;
    return q < -87.0f ? 0.0f : value;
}

// The standard normal cdf (gelu/normal.rs: cdf_f32).
__device__ __forceinline__ float gelu_cdf(float x) {
    float z = x * 0.70710677f;
    float t = fabsf(z);
    float s = z * z;
    float p = 7.8538615e-05f;
    p = fmaf(p, s, -8.0101937e-04f);
    p = fmaf(p, s, 0.0051883277f);
    p = fmaf(p, s, -0.026853813f);
    p = fmaf(p, s, 0.112835854f);
    p = fmaf(p, s, -0.37612626f);
    p = fmaf(p, s, 1.1283791f);
    float near_zero = 0.5f + 0.5f * (z * p);

    float u = fminf(t, 4.0f) - 2.5f;
    float q = 1.5998156e-06f;
    q = fmaf(q, u, -1.33017065e-05f);
    q = fmaf(q, u, 7.745493e-05f);
    q = fmaf(q, u, -4.2017314e-04f);
    q = fmaf(q, u, 0.0021650814f);
    q = fmaf(q, u, -0.010858487f);
    q = fmaf(q, u, -0.9438936f);
    q = fmaf(q, u, -5.3526807f);
    q = fmaf(q, u, -7.806815f);
    float mid = gelu_exp(q);

    float far = fmaxf(t, 4.0f);
    float inverse = 1.0f / far;
    float r = -0.4389333f;
    r = fmaf(r, inverse, 0.4947549f);
    r = fmaf(r, inverse, -0.0027940057f);
    r = fmaf(r, inverse, -0.28270334f);
    r = fmaf(r, inverse, 7.857222e-05f);
    r = fmaf(r, inverse, 0.5641868f);
    float tail = gelu_exp(-(far * far)) * (inverse * r);

    float half_erfc = 0.5f * (t <= 4.0f ? mid : tail);
    float away = x > 0.0f ? 1.0f - half_erfc : half_erfc;
    return t <= 1.0f ? near_zero : away;
}

// The standard normal density (gelu/normal.rs: pdf_f32).
__device__ __forceinline__ float gelu_pdf(float x) {
    return gelu_exp(-0.5f * (x * x)) * 0.3989423f;
}

// The passes, written once over the stored type T of x, y and the gradients: float, or bf16
// (an activation stored under autocast) widened as it is read, each result computed in f32
// and rounded once as it is stored, the CPU's bf16 kernels' bits (gelu/table.rs).

// y = x * cdf(x)
template <class T>
__device__ __forceinline__ void gelu_forward_of(const T* x, T* y, unsigned long long n) {
    GRID_STRIDE(i, n) {
        float v = widen(x[i]);
        store(&y[i], v * gelu_cdf(v));
    }
}

// grad_in = grad_out * (cdf(x) + x * pdf(x)), from the forward *input* x.
template <class T>
__device__ __forceinline__ void gelu_backward_of(const T* x, const T* grad_out, T* grad_in,
                                                 unsigned long long n) {
    GRID_STRIDE(i, n) {
        float v = widen(x[i]);
        store(&grad_in[i], widen(grad_out[i]) * (gelu_cdf(v) + v * gelu_pdf(v)));
    }
}

extern "C" __global__ void gelu_forward(const float* x, float* y, unsigned long long n) {
    gelu_forward_of(x, y, n);
}

extern "C" __global__ void gelu_backward(const float* x, const float* grad_out, float* grad_in,
                                         unsigned long long n) {
    gelu_backward_of(x, grad_out, grad_in, n);
}

extern "C" __global__ void gelu_forward_bf16(const bf16* x, bf16* y, unsigned long long n) {
    gelu_forward_of(x, y, n);
}

extern "C" __global__ void gelu_backward_bf16(const bf16* x, const bf16* grad_out, bf16* grad_in,
                                              unsigned long long n) {
    gelu_backward_of(x, grad_out, grad_in, n);
}
