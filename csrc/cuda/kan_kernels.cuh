// CUDA kernels of the three KAN primitives (kan_ops.cpp has the math and the CPU versions):
//   forward     y[n,o]   = sum_{i,k} c[o,i,k] w[n,i] phi^(d)_k(x[n,i])
//   input grad  z[n,i]   = sum_{o,k} g[n,o] c[o,i,k] phi^(d)_k(x[n,i])
//   coeff grad  G[o,i,k] = sum_n     g[n,o] w[n,i] phi^(d)_k(x[n,i])
// The basis tensor is never written to global memory: the forward and the coefficient gradient keep a
// tile of it in shared memory, the input gradient one element's K values in registers.
//
// The kernels use only threadIdx / blockIdx / blockDim / gridDim, __syncthreads, atomicAdd and
// KAN_SHARED: tests/cuda_emulation/cuda_on_host.h supplies those on the host, and runs these very
// kernels and launchers against the CPU ops on machines without a GPU.
#pragma once

#include "kan_element.cuh"

#include <algorithm>

#if defined(__CUDACC__)
#define KAN_SHARED(T, name)                                    \
  extern __shared__ __align__(16) unsigned char kan_shared[]; \
  T *name = reinterpret_cast<T *>(kan_shared)
#endif

namespace kan_mlip {
namespace cuda {

constexpr int THREADS = 128;             // per block
constexpr int64_t FORWARD_ROWS = 32;     // rows of a forward block
constexpr int64_t FORWARD_COLUMNS = 128; // basis columns (whole inputs) per shared-memory tile: 32 kB in float64
constexpr int64_t COEFF_ROWS = 32;       // rows summed by one coefficient-gradient block before its atomics
constexpr int64_t MAX_BLOCKS = 1 << 20;  // grid-stride loops beyond

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Block b: rows [32 b, 32 b + 32). For each tile of whole inputs, threads write the tile's basis values
// (weighted) into shared memory, then each thread owns (row, output) pairs and adds their dot products
// with the matching coefficient run c[o, i0:i1, :] (contiguous) to y.
template <typename T> __global__ void forward_kernel(Problem<T> p, int64_t tile_inputs)
{
  KAN_SHARED(T, phi);    // (FORWARD_ROWS, tile_inputs * K)
  const int64_t K = p.K, n0 = int64_t(blockIdx.x) * FORWARD_ROWS;
  const int64_t rows = p.N - n0 < FORWARD_ROWS ? p.N - n0 : FORWARD_ROWS;
  for (int64_t i0 = 0; i0 < p.in; i0 += tile_inputs) {
    const int64_t ni = p.in - i0 < tile_inputs ? p.in - i0 : tile_inputs, cols = ni * K;
    for (int64_t e = threadIdx.x; e < rows * ni; e += blockDim.x) {
      const int64_t r = e / ni, i = i0 + e % ni, at = (n0 + r) * p.in + i;
      T *v = phi + r * cols + (i - i0) * K;
      eval_element(p, i, p.x[at], v);
      if (p.weight)
        for (int64_t k = 0; k < K; k++) v[k] *= p.weight[at];
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < rows * p.out; e += blockDim.x) {
      const int64_t r = e / p.out, o = e % p.out;
      const T *v = phi + r * cols, *c = p.coeff + (o * p.in + i0) * K;
      T acc = T(0);
      for (int64_t j = 0; j < cols; j++) acc += v[j] * c[j];
      p.result[(n0 + r) * p.out + o] += acc;    // this thread's pair in every tile: no race
    }
    __syncthreads();    // the tile is overwritten next
  }
}

// One thread per (n, i): its K values in registers, contracted with g[n, :] and c[:, i, :]
template <typename T> __global__ void input_grad_kernel(Problem<T> p)
{
  T v[MAX_K];
  const int64_t K = p.K, total = p.N * p.in;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = e / p.in, i = e % p.in;
    eval_element(p, i, p.x[e], v);
    T acc = T(0);
    for (int64_t o = 0; o < p.out; o++) {
      const T *c = p.coeff + (o * p.in + i) * K;
      T dot = T(0);
      for (int64_t k = 0; k < K; k++) dot += c[k] * v[k];
      acc += p.grad[n * p.out + o] * dot;
    }
    p.result[e] = acc;
  }
}

// Block (chunk, i): the basis of input i on rows [32 chunk, 32 chunk + 32) in shared memory; each thread
// sums its (o, k) over those rows and adds the sum to G with one atomic
template <typename T> __global__ void coeff_grad_kernel(Problem<T> p)
{
  KAN_SHARED(T, phi);    // (COEFF_ROWS, K)
  const int64_t K = p.K, i = int64_t(blockIdx.x) % p.in, n0 = int64_t(blockIdx.x) / p.in * COEFF_ROWS;
  const int64_t rows = p.N - n0 < COEFF_ROWS ? p.N - n0 : COEFF_ROWS;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t at = (n0 + r) * p.in + i;
    eval_element(p, i, p.x[at], phi + r * K);
    if (p.weight)
      for (int64_t k = 0; k < K; k++) phi[r * K + k] *= p.weight[at];
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < p.out * K; e += blockDim.x) {
    const int64_t o = e / K, k = e % K;
    T acc = T(0);
    for (int64_t r = 0; r < rows; r++) acc += p.grad[(n0 + r) * p.out + o] * phi[r * K + k];
    atomicAdd(p.result + (o * p.in + i) * K + k, acc);
  }
}

// Launchers: p.result zeroed by the caller. `launch(kernel, blocks, threads, shared_bytes, args...)`
// starts a kernel: on a CUDA stream (kan_ops_cuda.cu) or emulated on the host (tests).
template <typename T, typename Launch> void forward(const Problem<T> &p, Launch &&launch)
{
  if (p.N == 0 || p.out == 0 || p.in == 0) return;
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(p.in, FORWARD_COLUMNS / p.K));
  launch(forward_kernel<T>, ceil_div(p.N, FORWARD_ROWS), THREADS, size_t(FORWARD_ROWS * tile * p.K) * sizeof(T), p,
         tile);
}

template <typename T, typename Launch> void input_grad(const Problem<T> &p, Launch &&launch)
{
  if (p.N == 0 || p.in == 0) return;
  launch(input_grad_kernel<T>, std::min(MAX_BLOCKS, ceil_div(p.N * p.in, THREADS)), THREADS, size_t(0), p);
}

template <typename T, typename Launch> void coeff_grad(const Problem<T> &p, Launch &&launch)
{
  if (p.N == 0 || p.in == 0 || p.out == 0) return;
  launch(coeff_grad_kernel<T>, ceil_div(p.N, COEFF_ROWS) * p.in, THREADS, size_t(COEFF_ROWS * p.K) * sizeof(T), p);
}

}    // namespace cuda
}    // namespace kan_mlip
