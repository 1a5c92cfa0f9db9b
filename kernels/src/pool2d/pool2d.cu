// 2-D max and average pooling over NCHW planes with PyTorch's rules; see pool2d/mod.rs.
//
// Window (oh, ow) covers input rows oh*SH - PH .. oh*SH - PH + KH (clipped to 0..H) and
// likewise columns; the host has checked PH <= KH/2, so every window holds an input cell.
//   max: the window's first maximum in row-major order; a NaN beats any number and a
//        later NaN beats an earlier one (PyTorch's CPU kernel).
//   avg: sum / divisor, divisor = KH*KW if count_include_pad else the in-bounds cells.
// The backward kernels gather instead of scattering: one thread per input cell adds the
// gradients of the windows that route to it, in row-major window order, so no atomics are
// needed and the sums are added in the same order as the CPU code's scatter.
// `planes` is N*C; all kernels grid-stride over their output elements.
// Max pooling is written once over the stored type T of x, y and the gradients: float, or
// bf16 (an activation stored under autocast), compared widened to f32 and copied as it is
// (so the bf16 kernels pick the cells and values the f32 ones pick on the widened input),
// its gradients summed in f32 and rounded once, as the CPU's bf16 arms. Average pooling has
// no bf16 kernel, as on the CPU.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

struct Window {
    int r0, r1, c0, c1;  // in-bounds rows r0..r1 and columns c0..c1 (ends exclusive)
};

__device__ __forceinline__ Window pool_window(int oh, int ow, int H, int W, int KH, int KW,
                                              int SH, int SW, int PH, int PW) {
    Window w;
    int top = oh * SH - PH;
    int left = ow * SW - PW;
    w.r0 = top > 0 ? top : 0;
    w.r1 = top + KH < H ? top + KH : H;
    w.c0 = left > 0 ? left : 0;
    w.c1 = left + KW < W ? left + KW : W;
    return w;
}

// Index within the plane of the window's first maximum (NaN wins, the last NaN wins).
template <class T>
__device__ __forceinline__ int window_argmax(const T* plane, Window w, int W) {
    int best_index = w.r0 * W + w.c0;
    float best = widen(plane[best_index]);
    for (int h = w.r0; h < w.r1; ++h) {
        for (int c = w.c0; c < w.c1; ++c) {
            float v = widen(plane[h * W + c]);
            if (v > best || v != v) {
                best = v;
                best_index = h * W + c;
            }
        }
    }
    return best_index;
}

__device__ __forceinline__ float window_divisor(Window w, int KH, int KW, int count_include_pad) {
    int cells = count_include_pad ? KH * KW : (w.r1 - w.r0) * (w.c1 - w.c0);
    return (float)cells;
}

// The windows (along one axis) that contain input index i: o_lo ..= o_hi.
__device__ __forceinline__ void covering(int i, int K, int S, int P, int O, int* o_lo,
                                         int* o_hi) {
    // o*S - P <= i < o*S - P + K   <=>   (i + P - K + 1) / S <= o <= (i + P) / S
    int t = i + P - K + 1;
    *o_lo = t <= 0 ? 0 : (t + S - 1) / S;
    int hi = (i + P) / S;
    *o_hi = hi < O - 1 ? hi : O - 1;
}

// y = the window's first maximum, copied as it is stored.
template <class T>
__device__ __forceinline__ void max_pool2d_forward_of(const T* x, T* y, int planes, int H,
                                                      int W, int KH, int KW, int SH, int SW,
                                                      int PH, int PW, int OH, int OW) {
    unsigned long long out_plane = (unsigned long long)OH * OW;
    GRID_STRIDE(i, (unsigned long long)planes * out_plane) {
        unsigned long long plane = i / out_plane;
        int o = (int)(i - plane * out_plane);
        Window w = pool_window(o / OW, o % OW, H, W, KH, KW, SH, SW, PH, PW);
        const T* xp = x + plane * (unsigned long long)H * W;
        y[i] = xp[window_argmax(xp, w, W)];
    }
}

extern "C" __global__ void max_pool2d_forward(const float* x, float* y, int planes, int H, int W,
                                              int KH, int KW, int SH, int SW, int PH, int PW,
                                              int OH, int OW) {
    max_pool2d_forward_of(x, y, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool2d_forward_bf16(const bf16* x, bf16* y, int planes, int H,
                                                   int W, int KH, int KW, int SH, int SW, int PH,
                                                   int PW, int OH, int OW) {
    max_pool2d_forward_of(x, y, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void avg_pool2d_forward(const float* x, float* y, int planes, int H, int W,
                                              int KH, int KW, int SH, int SW, int PH, int PW,
                                              int OH, int OW, int count_include_pad) {
    unsigned long long out_plane = (unsigned long long)OH * OW;
    GRID_STRIDE(i, (unsigned long long)planes * out_plane) {
        unsigned long long plane = i / out_plane;
        int o = (int)(i - plane * out_plane);
        Window w = pool_window(o / OW, o % OW, H, W, KH, KW, SH, SW, PH, PW);
        const float* xp = x + plane * (unsigned long long)H * W;
        float acc = 0.0f;
        for (int h = w.r0; h < w.r1; ++h) {
            for (int c = w.c0; c < w.c1; ++c) {
                acc += xp[h * W + c];
            }
        }
        y[i] = acc / window_divisor(w, KH, KW, count_include_pad);
    }
}

// dx[cell] = sum of dy over the windows whose first maximum is this cell, added in f32 to
// +0 in row-major window order (the CPU's scatter order), rounded once where T is bf16.
template <class T>
__device__ __forceinline__ void max_pool2d_backward_of(const T* x, const T* dy, T* dx,
                                                       int planes, int H, int W, int KH, int KW,
                                                       int SH, int SW, int PH, int PW, int OH,
                                                       int OW) {
    unsigned long long in_plane = (unsigned long long)H * W;
    GRID_STRIDE(i, (unsigned long long)planes * in_plane) {
        unsigned long long plane = i / in_plane;
        int cell = (int)(i - plane * in_plane);
        int ih = cell / W, iw = cell % W;
        int oh_lo, oh_hi, ow_lo, ow_hi;
        covering(ih, KH, SH, PH, OH, &oh_lo, &oh_hi);
        covering(iw, KW, SW, PW, OW, &ow_lo, &ow_hi);
        const T* xp = x + plane * in_plane;
        const T* dyp = dy + plane * (unsigned long long)OH * OW;
        float acc = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                Window w = pool_window(oh, ow, H, W, KH, KW, SH, SW, PH, PW);
                if (window_argmax(xp, w, W) == cell) {
                    acc += widen(dyp[oh * OW + ow]);
                }
            }
        }
        store(&dx[i], acc);
    }
}

extern "C" __global__ void max_pool2d_backward(const float* x, const float* dy, float* dx,
                                               int planes, int H, int W, int KH, int KW, int SH,
                                               int SW, int PH, int PW, int OH, int OW) {
    max_pool2d_backward_of(x, dy, dx, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void max_pool2d_backward_bf16(const bf16* x, const bf16* dy, bf16* dx,
                                                    int planes, int H, int W, int KH, int KW,
                                                    int SH, int SW, int PH, int PW, int OH,
                                                    int OW) {
    max_pool2d_backward_of(x, dy, dx, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// dx[cell] = sum over the windows containing the cell of dy / divisor.
extern "C" __global__ void avg_pool2d_backward(const float* dy, float* dx, int planes, int H,
                                               int W, int KH, int KW, int SH, int SW, int PH,
                                               int PW, int OH, int OW, int count_include_pad) {
    unsigned long long in_plane = (unsigned long long)H * W;
    GRID_STRIDE(i, (unsigned long long)planes * in_plane) {
        unsigned long long plane = i / in_plane;
        int cell = (int)(i - plane * in_plane);
        int ih = cell / W, iw = cell % W;
        int oh_lo, oh_hi, ow_lo, ow_hi;
        covering(ih, KH, SH, PH, OH, &oh_lo, &oh_hi);
        covering(iw, KW, SW, PW, OW, &ow_lo, &ow_hi);
        const float* dyp = dy + plane * (unsigned long long)OH * OW;
        float acc = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                Window w = pool_window(oh, ow, H, W, KH, KW, SH, SW, PH, PW);
                acc += dyp[oh * OW + ow] / window_divisor(w, KH, KW, count_include_pad);
            }
        }
        dx[i] = acc;
    }
}
