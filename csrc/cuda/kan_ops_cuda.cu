// CUDA implementations of the kan_mlip ops (kan_kernels.cuh). Built into libkan_mlip_ops when the
// installed torch has CUDA (CMakeLists.txt); the Autograd and Meta registrations of kan_ops.cpp serve
// both devices, so forces and force training on the GPU take the same exact derivatives.
#include "../kan_checks.h"
#include "kan_kernels.cuh"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace kan_mlip {
namespace {

void check_cuda(const Tensor &x, int64_t K, int64_t kind, int64_t order, int64_t deriv,
                std::initializer_list<std::pair<const char *, const Tensor *>> operands)
{
  for (const auto &[name, t] : operands)
    TORCH_CHECK(!t->defined() || t->numel() == 0 || t->device() == x.device(), "kan_mlip: ", name, " is on ",
                t->device(), " but x is on ", x.device());
  TORCH_CHECK(K <= cuda::MAX_K, "kan_mlip: at most ", cuda::MAX_K, " basis functions per input, got ", K);
  TORCH_CHECK((kind & KIND_MASK) != BSPLINE || order <= cuda::MAX_ORDER, "kan_mlip (CUDA): B-spline order at most ",
              cuda::MAX_ORDER, ", got ", order);
  TORCH_CHECK(!(kind & BASE_SILU) || deriv <= cuda::MAX_DERIV, "kan_mlip (CUDA): derivative order of the silu base at most ",
              cuda::MAX_DERIV, ", got ", deriv);
}

template <typename T>
cuda::Problem<T> problem(const Tensor &x, const Tensor &coeff, const Tensor &w, const Tensor &grad, const Tensor &grid,
                         const Tensor &aux, int64_t kind, int64_t order, int64_t deriv, int64_t out, Tensor &result)
{
  cuda::Problem<T> p{};
  p.x = x.data_ptr<T>();
  p.coeff = coeff.defined() ? coeff.data_ptr<T>() : nullptr;
  p.weight = w.defined() ? w.data_ptr<T>() : nullptr;
  p.grad = grad.defined() ? grad.data_ptr<T>() : nullptr;
  p.grid = grid.data_ptr<T>();
  p.aux = aux.numel() ? aux.data_ptr<T>() : nullptr;
  p.result = result.data_ptr<T>();
  p.N = x.size(0);
  p.in = x.size(1);
  p.out = out;
  p.K = num_basis(kind, grid, order);
  p.grid_stride = grid.dim() == 2 ? grid.size(1) : 0;
  p.grid_len = grid.size(-1);
  p.aux_stride = aux.numel() ? (aux.dim() == 2 ? aux.size(1) : 0) : 0;
  p.kind = int(kind & KIND_MASK);
  p.order = int(order);
  p.deriv = int(deriv);
  p.base = (kind & BASE_SILU) != 0;
  return p;
}

// kernel<<<blocks, threads, shared, current stream>>>(args...), with torch's launch check
struct StreamLaunch {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, int64_t blocks, int threads, size_t shared, Args... args) const
  {
    kernel<<<dim3(unsigned(blocks)), dim3(unsigned(threads)), shared, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

Tensor optional_weight(const c10::optional<Tensor> &w) { return w.has_value() && w->defined() ? w->contiguous() : Tensor(); }

Tensor kan_forward_cuda(const Tensor &x_, const Tensor &coeff_, const c10::optional<Tensor> &w_, const Tensor &grid_,
                        const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), coeff = coeff_.contiguous(), grid = grid_.contiguous(), aux = aux_.contiguous();
  const Tensor w = optional_weight(w_);
  check_weight(x, w);
  const int64_t K = num_basis(kind, grid, order);
  TORCH_CHECK(coeff.dim() == 3 && coeff.size(1) == x.size(1) && coeff.size(2) == K,
              "kan_mlip::kan_forward: coeff must be (out, ", x.size(1), ", ", K, "), got ", coeff.sizes());
  check_cuda(x, K, kind, order, deriv, {{"coeff", &coeff}, {"weight", &w}, {"grid", &grid}, {"aux", &aux}});
  Tensor y = at::zeros({x.size(0), coeff.size(0)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_forward_cuda", [&] {
    cuda::forward(problem<scalar_t>(x, coeff, w, Tensor(), grid, aux, kind, order, deriv, coeff.size(0), y), StreamLaunch{});
  });
  return y;
}

Tensor kan_input_grad_cuda(const Tensor &x_, const Tensor &coeff_, const Tensor &g_, const Tensor &grid_,
                           const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), coeff = coeff_.contiguous(), g = g_.contiguous(), grid = grid_.contiguous(),
               aux = aux_.contiguous();
  const int64_t K = num_basis(kind, grid, order);
  TORCH_CHECK(coeff.dim() == 3 && coeff.size(1) == x.size(1) && coeff.size(2) == K,
              "kan_mlip::kan_input_grad: coeff must be (out, ", x.size(1), ", ", K, "), got ", coeff.sizes());
  TORCH_CHECK(g.dim() == 2 && g.size(0) == x.size(0) && g.size(1) == coeff.size(0),
              "kan_mlip::kan_input_grad: grad_out must be (", x.size(0), ", ", coeff.size(0), "), got ", g.sizes());
  check_cuda(x, K, kind, order, deriv, {{"coeff", &coeff}, {"grad_out", &g}, {"grid", &grid}, {"aux", &aux}});
  Tensor z = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_input_grad_cuda", [&] {
    cuda::input_grad(problem<scalar_t>(x, coeff, Tensor(), g, grid, aux, kind, order, deriv, coeff.size(0), z),
                     StreamLaunch{});
  });
  return z;
}

Tensor kan_coeff_grad_cuda(const Tensor &x_, const Tensor &g_, const c10::optional<Tensor> &w_, const Tensor &grid_,
                           const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const c10::cuda::CUDAGuard guard(x_.device());
  const Tensor x = x_.contiguous(), g = g_.contiguous(), grid = grid_.contiguous(), aux = aux_.contiguous();
  const Tensor w = optional_weight(w_);
  check_weight(x, w);
  const int64_t K = num_basis(kind, grid, order);
  TORCH_CHECK(g.dim() == 2 && g.size(0) == x.size(0),
              "kan_mlip::kan_coeff_grad: grad_out must be (", x.size(0), ", out), got ", g.sizes());
  check_cuda(x, K, kind, order, deriv, {{"grad_out", &g}, {"weight", &w}, {"grid", &grid}, {"aux", &aux}});
  Tensor G = at::zeros({g.size(1), x.size(1), K}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_coeff_grad_cuda", [&] {
    cuda::coeff_grad(problem<scalar_t>(x, Tensor(), w, g, grid, aux, kind, order, deriv, g.size(1), G), StreamLaunch{});
  });
  return G;
}

}    // namespace

TORCH_LIBRARY_IMPL(kan_mlip, CUDA, m)
{
  m.impl("kan_forward", kan_forward_cuda);
  m.impl("kan_input_grad", kan_input_grad_cuda);
  m.impl("kan_coeff_grad", kan_coeff_grad_cuda);
}

}    // namespace kan_mlip
