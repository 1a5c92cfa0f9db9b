// Cross-entropy of logits against integer labels, with label smoothing and a mean or sum
// over the rows, the softmax kept for the backward pass; see cross_entropy/mod.rs.
//
//   per row:  m = max_j x_j,  p_j = exp(x_j - m) / total,  total = sum_j exp(x_j - m)
//             row_loss = on (m - x[label]) + off sum_j (m - x_j) + ln(total)
//             (on = 1 - smoothing, off = smoothing / cols; the sum is skipped when off = 0)
//   loss    = (sum_r row_loss) / divisor     (summed in f64; divisor = rows, or 1 for a sum)
//   grad    = (p - q) * factor,  q = on_label at the label and off elsewhere,
//             factor = (float)(grad_loss / divisor) in f64
//
// Three launches: cross_entropy_forward (one warp per row: blockDim.x a multiple of 32),
// cross_entropy_reduce (a single block, so the f64 sum is the same on every run) and
// cross_entropy_backward (grid-stride over the elements). The host has already checked
// that every label is below cols; a label out of range is skipped here rather than read.
// cuda/prelude.cuh (GRID_STRIDE, WARP_PER_ROW, warp_sum, warp_max, block_sum) comes first.

// Writes the softmax of each row into probs and its loss term into row_loss[r].
extern "C" __global__ void cross_entropy_forward(const float* logits, const unsigned int* labels,
                                                 int rows, int cols, float on, float off,
                                                 float* probs, float* row_loss) {
    unsigned int lane = threadIdx.x & 31u;
    WARP_PER_ROW(r, rows) {
        const float* x = logits + r * cols;
        float* p = probs + r * cols;
        float m = -F32_INF;
        for (int j = lane; j < cols; j += 32) {
            m = fmaxf(m, x[j]);
        }
        m = warp_max(m);
        float total = 0.0f;
        for (int j = lane; j < cols; j += 32) {
            float e = expf(x[j] - m);
            p[j] = e;
            total += e;
        }
        total = warp_sum(total);
        float spread = 0.0f;
        if (off != 0.0f) {
            for (int j = lane; j < cols; j += 32) {
                spread += m - x[j];
            }
            spread = warp_sum(spread);
        }
        float inv = 1.0f / total;
        for (int j = lane; j < cols; j += 32) {
            p[j] *= inv;
        }
        if (lane == 0) {
            unsigned int label = labels[r];
            // (m - x[label]) is exact for logits of similar size and ln(total) lies in
            // [0, ln cols]: no cancellation even when the label's logit is far below m.
            float loss = on * (m - x[label < (unsigned int)cols ? label : 0]);
            if (off != 0.0f) {
                loss += off * spread;
            }
            row_loss[r] = label < (unsigned int)cols ? loss + logf(total)
                                                     : __int_as_float(0x7fc00000);
        }
    }
}

// loss[0] = (float)(sum_r row_loss[r] / divisor), summed in f64. Launch with a single block
// whose size is a multiple of 32.
extern "C" __global__ void cross_entropy_reduce(const float* row_loss, int rows, double divisor,
                                                float* loss) {
    double acc = 0.0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        acc += (double)row_loss[r];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
        loss[0] = (float)(acc / divisor);
    }
}

// grad = (probs - q) * factor with factor = grad_loss[0] / divisor formed in f64.
// grad_loss stays on the device, so the backward pass needs no copy to the host.
extern "C" __global__ void cross_entropy_backward(const float* probs, const unsigned int* labels,
                                                  const float* grad_loss, int rows, int cols,
                                                  double divisor, float on_label, float off,
                                                  float* grad) {
    float factor = (float)((double)grad_loss[0] / divisor);
    unsigned long long n = (unsigned long long)rows * (unsigned long long)cols;
    GRID_STRIDE(i, n) {
        unsigned long long r = i / (unsigned long long)cols;
        unsigned int j = (unsigned int)(i - r * (unsigned long long)cols);
        float p = probs[i];
        grad[i] = j == labels[r] ? (p - on_label) * factor : (p - off) * factor;
    }
}
