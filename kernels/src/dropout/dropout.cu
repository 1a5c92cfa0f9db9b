// Inverted dropout with the stateless counter-based mask of dropout/mod.rs, copied bit for
// bit so that the CPU and the GPU draw the same mask for the same (seed, index):
//
//   z    = seed + (i + 1) * 0x9E3779B97F4A7C15          (all u64, wrapping)
//   z    = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//   z    = (z ^ (z >> 27)) * 0x94D049BB133111EB
//   z    =  z ^ (z >> 31)
//   bits = z >> 40                                      (top 24 bits)
//   keep i  <=>  bits >= threshold,  threshold = ceil(p * 2^24) computed on the host
//
// The host also computes scale = 1 / (1 - p) in f64 (0 when p = 1) and rounds it to f32.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// The 24 random bits of element `index` under `seed`.
__device__ __forceinline__ unsigned int dropout_bits(unsigned long long seed,
                                                     unsigned long long index) {
    unsigned long long z = seed + (index + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (unsigned int)(z >> 40);
}

// y = bits(seed, i) >= threshold ? x * scale : 0. The same kernel is the backward pass
// (x = grad_out, y = grad_in) with the same seed, threshold and scale.
extern "C" __global__ void dropout_apply(const float* x, float* y, unsigned long long n,
                                         unsigned long long seed, unsigned int threshold,
                                         float scale) {
    GRID_STRIDE(i, n) {
        y[i] = dropout_bits(seed, i) >= threshold ? x[i] * scale : 0.0f;
    }
}

// out[i] = uniform(seed, i) = bits * 2^-24, the public `dropout::uniform` of the CPU code:
// lets a test compare the two generators value for value.
extern "C" __global__ void dropout_uniform(float* out, unsigned long long n,
                                           unsigned long long seed) {
    GRID_STRIDE(i, n) {
        out[i] = (float)dropout_bits(seed, i) * (1.0f / 16777216.0f);
    }
}
