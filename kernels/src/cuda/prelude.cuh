// What every kernel file shares, put in front of each .cu file before it is compiled: by
// NVRTC at run time (cuda/compile.rs) and by g++ for the CPU emulator (cuda/emulated_tests.rs),
// both through cuda::compilation_unit. NVRTC has no libc headers: nothing is #included.

// `i` over 0..n, each thread taking every (gridDim.x * blockDim.x)-th element from its own
// global index, in 64 bits.
#define GRID_STRIDE(i, n)                                                          \
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// One warp per row: `r` over 0..rows, the warps of the grid striding over the rows.
// blockDim.x must be a multiple of 32.
#define WARP_PER_ROW(r, rows)                                                          \
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); \
         r < (rows); r += (long long)gridDim.x * (blockDim.x >> 5))

#define F32_INF __int_as_float(0x7f800000)

// A bf16 (an activation or its gradient stored under autocast) travels as its bits. Kernels
// compute in f32: `widen` is exact, and `round_bf16` rounds to nearest, ties to even, with
// the integer arithmetic of kernels/src/bf16_values.rs (half::bf16::from_f32's bits, a NaN
// kept quiet with its sign), so the GPU, the emulator and the CPU round alike, and no
// cuda_bf16.h is needed. Kernels written once over the stored type `T` read through
// `widen` and write through `store`, which both overload for float (no rounding).
typedef unsigned short bf16;

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(bf16 v) { return __uint_as_float((unsigned)v << 16); }

__device__ __forceinline__ bf16 round_bf16(float v) {
    unsigned bits = __float_as_uint(v);
    unsigned short rounded = (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    unsigned short quiet_nan = (unsigned short)((bits >> 16) | 0x0040u);
    return v != v ? quiet_nan : rounded;
}

__device__ __forceinline__ void store(float* out, float v) { *out = v; }
__device__ __forceinline__ void store(bf16* out, float v) { *out = round_bf16(v); }

// Sum of `v` over the warp, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// Largest `v` of the warp, in every lane. fmaxf ignores a NaN operand, like Rust's f32::max
// used by the CPU folds.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// Sum of `v` over the block, returned to every thread: the warps' sums (in shuffle order),
// then their sum in warp 0, so the result does not depend on scheduling. Every thread of the
// block must call it; blockDim.x must be a multiple of 32.
__device__ double block_sum(double v) {
    __shared__ double warp_sums[32];
    __shared__ double total;
    unsigned int lane = threadIdx.x & 31u;
    unsigned int warp = threadIdx.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    __syncthreads();  // the previous call's readers are done with warp_sums and total
    if (lane == 0) {
        warp_sums[warp] = v;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) {
            v += __shfl_down_sync(0xffffffffu, v, offset);
        }
        if (lane == 0) {
            total = v;
        }
    }
    __syncthreads();
    return total;
}
