// A CPU stand-in for the small part of CUDA C that the kernels in kernels/src/*/*.cu use,
// so that their arithmetic and indexing are tested on machines without a GPU (CI included)
// against the CPU kernels. Used only by kernels/src/cuda/emulated_tests.rs, which compiles
// this header and every .cu file into one shared library with g++.
//
// Blocks run one after another; the threads of a block run as real threads, so that
// __syncthreads() and the warp shuffles synchronise as on a GPU. Shared memory is a static
// variable (one block at a time uses it). Math functions are the C library's, not CUDA's,
// so exp/log results may differ from a GPU's in the last bit.
#pragma once

#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emu_block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>>* emu_warp_barriers;
inline uint64_t emu_lanes[32][32];  // [warp][lane], the values being shuffled

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}

inline float __uint_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}

inline unsigned __float_as_uint(float f) {
    unsigned v;
    std::memcpy(&v, &f, sizeof v);
    return v;
}

inline unsigned emu_thread() { return threadIdx.x + threadIdx.y * blockDim.x; }

// Every lane of the warp publishes its value, then reads lane `src`'s (its own when `src`
// is outside the warp, as CUDA does).
template <class T>
T emu_shuffle(T v, int src) {
    unsigned t = emu_thread(), lane = t % 32, warp = t / 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emu_lanes[warp][lane] = bits;
    (*emu_warp_barriers)[warp]->arrive_and_wait();
    T out = v;
    if (src >= 0 && src < 32) std::memcpy(&out, &emu_lanes[warp][src], sizeof(T));
    (*emu_warp_barriers)[warp]->arrive_and_wait();
    return out;
}

template <class T>
T __shfl_down_sync(unsigned, T v, int offset) {
    return emu_shuffle(v, (int)(emu_thread() % 32) + offset);
}

template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
    return emu_shuffle(v, (int)(emu_thread() % 32) ^ mask);
}

// Runs `kernel` over a grid of `grid` blocks of `block.x * block.y` threads.
inline void emu_run(unsigned grid, dim3 block, const std::function<void()>& kernel) {
    gridDim = dim3{grid, 1, 1};
    blockDim = block;
    unsigned threads = block.x * block.y;
    std::barrier<> block_barrier(threads);
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (unsigned w = 0; w * 32 < threads; ++w) {
        unsigned lanes = threads - w * 32 < 32 ? threads - w * 32 : 32;
        warps.emplace_back(new std::barrier<>(lanes));
    }
    emu_block_barrier = &block_barrier;
    emu_warp_barriers = &warps;
    for (unsigned b = 0; b < grid; ++b) {
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t) {
            pool.emplace_back([&, b, t] {
                blockIdx = dim3{b, 0, 0};
                threadIdx = dim3{t % block.x, t / block.x, 0};
                kernel();
            });
        }
        for (auto& thread : pool) thread.join();
    }
}

// Calls `f` with the arguments cuLaunchKernel would pass: args[i] points at argument i.
template <class... A, std::size_t... I>
void emu_call_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <class... A>
void emu_call(void (*f)(A...), void** args) {
    emu_call_with(f, args, std::index_sequence_for<A...>{});
}
