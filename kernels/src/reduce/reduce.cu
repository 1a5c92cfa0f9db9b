// Whole-buffer sum and its backward broadcast; see reduce/mod.rs.
//
// The sum accumulates in f64 like the CPU code, in two launches so that the result does
// not depend on scheduling: reduce_sum_partials writes one f64 partial sum per block (each
// thread strides over the buffer in a fixed order), reduce_sum_finish adds the partials in
// one block. For a given grid size the result is the same on every run.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// partials[blockIdx.x] = sum of the elements this block strides over, in f64.
extern "C" __global__ void reduce_sum_partials(const float* x, unsigned long long n,
                                               double* partials) {
    double acc = 0.0;
    GRID_STRIDE(i, n) { acc += (double)x[i]; }
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = acc;
    }
}

// out[0] = (float)(sum of `count` partials). Launch with a single block.
extern "C" __global__ void reduce_sum_finish(const double* partials, unsigned int count,
                                             float* out) {
    double acc = 0.0;
    for (unsigned int i = threadIdx.x; i < count; i += blockDim.x) {
        acc += partials[i];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
        out[0] = (float)acc;
    }
}

// out[i] = scalar[0] * factor, multiplied in f64 and rounded once (as the CPU code).
extern "C" __global__ void reduce_broadcast_scalar(const float* scalar, double factor,
                                                   float* out, unsigned long long n) {
    float value = (float)((double)scalar[0] * factor);
    GRID_STRIDE(i, n) { out[i] = value; }
}
