// The bias parts of the fully connected layer y = x W^T + b; see linear/mod.rs. The
// products run in cuBLAS; these kernels add the bias and reduce its gradient.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// y[r, c] += bias[c] for a rows x cols row-major y.
extern "C" __global__ void linear_bias_add(float* y, const float* bias, int rows, int cols) {
    GRID_STRIDE(i, (unsigned long long)rows * cols) {
        y[i] += bias[i % (unsigned long long)cols];
    }
}

// gb[c] = sum over rows of gy[r, c] (column sums, accumulated in f64).
// Launch with blockDim = (32, 8): threadIdx.x picks a column, so each row is read
// coalesced, threadIdx.y strides over the rows, and the 8 partial sums of a column are
// added in shared memory. Blocks stride over groups of 32 columns.
template <class T>
__device__ void bias_grad(const T* gy, int rows, int cols, float* gb) {
    __shared__ double partial[8][32];
    for (int base = blockIdx.x * 32; base < cols; base += gridDim.x * 32) {
        int c = base + threadIdx.x;
        double acc = 0.0;
        if (c < cols) {
            for (int r = threadIdx.y; r < rows; r += blockDim.y) {
                acc += (double)widen(gy[(unsigned long long)r * cols + c]);
            }
        }
        partial[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && c < cols) {
            double total = 0.0;
            for (int k = 0; k < (int)blockDim.y; ++k) {
                total += partial[k][threadIdx.x];
            }
            gb[c] = (float)total;
        }
        __syncthreads();
    }
}

extern "C" __global__ void linear_bias_grad(const float* gy, int rows, int cols, float* gb) {
    bias_grad(gy, rows, cols, gb);
}

// The bias gradient from a bf16 output gradient (autocast's), summed as the f32 one.
extern "C" __global__ void linear_bias_grad_bf16(const bf16* gy, int rows, int cols,
                                                 float* gb) {
    bias_grad(gy, rows, cols, gb);
}
