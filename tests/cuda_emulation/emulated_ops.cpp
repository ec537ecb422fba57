// The CUDA kernels and launchers of csrc/cuda/kan_kernels.cuh, run on the host (cuda_on_host.h) and
// exposed to ctypes: tests/test_cuda_kernels.py compares them with the CPU ops.
#include "cuda_on_host.h"

#include "../../csrc/cuda/kan_kernels.cuh"

#include <stdexcept>

using kan_mlip::cuda::Problem;

template <typename T>
static int run(int op, const T *x, const T *coeff, const T *weight, const T *grad, const T *grid, const T *aux,
               T *result, int64_t N, int64_t in, int64_t out, int64_t K, int64_t grid_stride, int64_t grid_len,
               int64_t aux_stride, int kind, int order, int deriv)
{
  Problem<T> p{x, coeff, weight, grad, grid, aux, result, N, in, out, K, grid_stride, grid_len, aux_stride,
               int(kind & kan_mlip::KIND_MASK), order, deriv, (kind & kan_mlip::BASE_SILU) != 0};
  try {
    if (op == 0) kan_mlip::cuda::forward(p, cuda_on_host::Launch{});
    else if (op == 1) kan_mlip::cuda::input_grad(p, cuda_on_host::Launch{});
    else kan_mlip::cuda::coeff_grad(p, cuda_on_host::Launch{});
  } catch (const std::exception &) {
    return 1;
  }
  return 0;
}

#define EXPORT(T, name)                                                                                               \
  extern "C" int name(int op, const T *x, const T *coeff, const T *weight, const T *grad, const T *grid, const T *aux, \
                      T *result, int64_t N, int64_t in, int64_t out, int64_t K, int64_t grid_stride, int64_t grid_len, \
                      int64_t aux_stride, int kind, int order, int deriv)                                              \
  {                                                                                                                   \
    return run<T>(op, x, coeff, weight, grad, grid, aux, result, N, in, out, K, grid_stride, grid_len, aux_stride,    \
                  kind, order, deriv);                                                                                \
  }
EXPORT(double, kan_emulated_f64)
EXPORT(float, kan_emulated_f32)
