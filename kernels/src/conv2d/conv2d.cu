// The non-GEMM parts of 2-D convolution; see conv2d/mod.rs for the math. The products
// themselves run in cuBLAS, on the same lowering as the CPU code:
//
//   col  = im2col(x)                 [C_in*KH*KW, N*OH*OW]   (column (n, oy, ox))
//   wide = W * col                   [C_out, N*OH*OW]        (cuBLAS)
//   y    = conv2d_cnp_to_ncp(wide) + b                       [N, C_out, OH, OW]
//
//   gy_wide = conv2d_ncp_to_cnp(dL/dy)                       [C_out, N*OH*OW]
//   dL/dW   = gy_wide * col^T        (cuBLAS)
//   gcol    = W^T * gy_wide          (cuBLAS)
//   dL/dx   = conv2d_col2im(gcol)
//   dL/db   = conv2d_bias_grad(dL/dy)
//
// `images` lets the host unroll a slice of the batch at a time (x then points at the
// slice's first image and col holds images*OH*OW columns).
//
// Under autocast (bf16) the same lowering runs with col, W and gy_wide in bf16 and the
// products summed in f32 by cuBLAS (conv2d/cuda_bf16.rs): each kernel is written once over
// the types it reads and stores (prelude's widen / store), with an extern "C" entry point
// per combination; the f32 entry points compute exactly what they always have.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// col[(ci*KH + ky)*KW + kx, n*OH*OW + oy*OW + ox] = x[n, ci, oy*SH + ky - PH, ox*SW + kx - PW],
// zero where that falls in the padding. One thread per element of col, so the writes are
// coalesced.
template <class TX, class TC>
__device__ void im2col(const TX* x, TC* col, int images, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int OH, int OW) {
    unsigned long long p = (unsigned long long)OH * OW;
    unsigned long long cols = (unsigned long long)images * p;
    unsigned long long rows = (unsigned long long)C * KH * KW;
    GRID_STRIDE(i, rows * cols) {
        unsigned long long row = i / cols;
        unsigned long long column = i - row * cols;
        int kx = (int)(row % KW);
        int ky = (int)((row / KW) % KH);
        int ci = (int)(row / ((unsigned long long)KW * KH));
        unsigned long long n = column / p;
        int o = (int)(column - n * p);
        int iy = (o / OW) * SH + ky - PH;
        int ix = (o % OW) * SW + kx - PW;
        float v = 0.0f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
            v = widen(x[((n * C + ci) * H + iy) * W + ix]);
        }
        store(&col[i], v);
    }
}

extern "C" __global__ void conv2d_im2col(const float* x, float* col, int images, int C, int H,
                                         int W, int KH, int KW, int SH, int SW, int PH, int PW,
                                         int OH, int OW) {
    im2col(x, col, images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// An f32 input's columns rounded to bf16 for the bf16 products.
extern "C" __global__ void conv2d_im2col_f32_to_bf16(const float* x, bf16* col, int images,
                                                     int C, int H, int W, int KH, int KW,
                                                     int SH, int SW, int PH, int PW, int OH,
                                                     int OW) {
    im2col(x, col, images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// A bf16 input's columns, as they are (widening and rounding back is exact).
extern "C" __global__ void conv2d_im2col_bf16(const bf16* x, bf16* col, int images, int C,
                                              int H, int W, int KH, int KW, int SH, int SW,
                                              int PH, int PW, int OH, int OW) {
    im2col(x, col, images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// The adjoint of im2col, gathered: dx[n, ci, iy, ix] = sum of the col entries read from
// that pixel, over (ky, kx) in ascending order (the CPU code's order). Overwrites dx.
template <class TD>
__device__ void col2im(const float* col, TD* dx, int images, int C, int H, int W, int KH,
                       int KW, int SH, int SW, int PH, int PW, int OH, int OW) {
    unsigned long long p = (unsigned long long)OH * OW;
    unsigned long long cols = (unsigned long long)images * p;
    unsigned long long plane = (unsigned long long)H * W;
    GRID_STRIDE(i, (unsigned long long)images * C * plane) {
        unsigned long long nc = i / plane;
        int cell = (int)(i - nc * plane);
        int ci = (int)(nc % C);
        unsigned long long n = nc / C;
        int iy = cell / W, ix = cell % W;
        float acc = 0.0f;
        for (int ky = 0; ky < KH; ++ky) {
            int ty = iy + PH - ky;  // = oy * SH for the output row that read this pixel
            if (ty < 0 || ty % SH != 0 || ty / SH >= OH) {
                continue;
            }
            int oy = ty / SH;
            for (int kx = 0; kx < KW; ++kx) {
                int tx = ix + PW - kx;
                if (tx < 0 || tx % SW != 0 || tx / SW >= OW) {
                    continue;
                }
                int ox = tx / SW;
                unsigned long long row = ((unsigned long long)ci * KH + ky) * KW + kx;
                acc += col[row * cols + n * p + (unsigned long long)oy * OW + ox];
            }
        }
        store(&dx[i], acc);
    }
}

extern "C" __global__ void conv2d_col2im(const float* col, float* dx, int images, int C, int H,
                                         int W, int KH, int KW, int SH, int SW, int PH, int PW,
                                         int OH, int OW) {
    col2im(col, dx, images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// A bf16 input's gradient: the f32 sums rounded once.
extern "C" __global__ void conv2d_col2im_to_bf16(const float* col, bf16* dx, int images, int C,
                                                 int H, int W, int KH, int KW, int SH, int SW,
                                                 int PH, int PW, int OH, int OW) {
    col2im(col, dx, images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// dst[n, c, p] = src[c, n, p] (+ bias[c] when has_bias): the product's [C, N, P] layout
// back to NCHW, with the bias added on the way. `bias` may be any valid pointer when
// has_bias is 0.
template <class TD>
__device__ void cnp_to_ncp(const float* src, const float* bias, int has_bias, TD* dst, int N,
                           int C, int P) {
    unsigned long long np = (unsigned long long)N * P;
    GRID_STRIDE(i, (unsigned long long)C * np) {
        // i indexes dst = [n, c, p]
        unsigned long long n = i / ((unsigned long long)C * P);
        unsigned long long rest = i - n * C * (unsigned long long)P;
        unsigned long long c = rest / P;
        unsigned long long q = rest - c * P;
        float v = src[c * np + n * P + q];
        store(&dst[i], has_bias ? v + bias[c] : v);
    }
}

extern "C" __global__ void conv2d_cnp_to_ncp(const float* src, const float* bias, int has_bias,
                                             float* dst, int N, int C, int P) {
    cnp_to_ncp(src, bias, has_bias, dst, N, C, P);
}

// Autocast's bf16 output: the f32 sum plus the bias, rounded once.
extern "C" __global__ void conv2d_cnp_to_ncp_bf16(const float* src, const float* bias,
                                                  int has_bias, bf16* dst, int N, int C, int P) {
    cnp_to_ncp(src, bias, has_bias, dst, N, C, P);
}

// dst[c, n, p] = src[n, c, p]: NCHW gradients into the [C, N*P] layout of the products.
template <class TS, class TD>
__device__ void ncp_to_cnp(const TS* src, TD* dst, int N, int C, int P) {
    unsigned long long np = (unsigned long long)N * P;
    GRID_STRIDE(i, (unsigned long long)C * np) {
        // i indexes dst = [c, n, p]
        unsigned long long c = i / np;
        unsigned long long rest = i - c * np;
        unsigned long long n = rest / P;
        unsigned long long q = rest - n * P;
        store(&dst[i], widen(src[(n * C + c) * P + q]));
    }
}

extern "C" __global__ void conv2d_ncp_to_cnp(const float* src, float* dst, int N, int C, int P) {
    ncp_to_cnp(src, dst, N, C, P);
}

// An f32 output gradient rounded to bf16 for the bf16 products.
extern "C" __global__ void conv2d_ncp_to_cnp_f32_to_bf16(const float* src, bf16* dst, int N,
                                                         int C, int P) {
    ncp_to_cnp(src, dst, N, C, P);
}

// A bf16 output gradient (autocast's), as it is.
extern "C" __global__ void conv2d_ncp_to_cnp_bf16(const bf16* src, bf16* dst, int N, int C,
                                                  int P) {
    ncp_to_cnp(src, dst, N, C, P);
}

// gb[c] = sum over n and p of gy[n, c, p], accumulated in f64. One block per channel
// (blocks stride over the channels).
template <class T>
__device__ void bias_grad(const T* gy, int N, int C, int P, float* gb) {
    unsigned long long np = (unsigned long long)N * P;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double acc = 0.0;
        for (unsigned long long j = threadIdx.x; j < np; j += blockDim.x) {
            unsigned long long n = j / P;
            unsigned long long q = j - n * P;
            acc += (double)widen(gy[(n * C + c) * P + q]);
        }
        acc = block_sum(acc);
        if (threadIdx.x == 0) {
            gb[c] = (float)acc;
        }
    }
}

extern "C" __global__ void conv2d_bias_grad(const float* gy, int N, int C, int P, float* gb) {
    bias_grad(gy, N, C, P, gb);
}

extern "C" __global__ void conv2d_bias_grad_bf16(const bf16* gy, int N, int C, int P, float* gb) {
    bias_grad(gy, N, C, P, gb);
}
