// Argument checks and sizes shared by the CPU (kan_ops.cpp) and CUDA (cuda/kan_ops_cuda.cu) ops.
#pragma once

#include <ATen/ATen.h>

#include "kan_kinds.h"

namespace kan_mlip {

using at::Tensor;

// functions per input: the basis', plus one for the fused base branch (BASE_SILU)
inline int64_t num_basis(int64_t kind, const Tensor &grid, int64_t order)
{
  const int64_t len = grid.size(-1), base = (kind & BASE_SILU) ? 1 : 0;
  switch (kind & KIND_MASK) {
    case BSPLINE: return len - order - 1 + base;
    case GAUSSIAN: return len + base;
    case FOURIER: return 2 * len + base;
  }
  TORCH_CHECK(false, "kan_mlip: unknown basis kind ", kind, " (0 bspline, 1 gaussian, 2 fourier)");
}

inline void check_inputs(const Tensor &x, const Tensor &grid, const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  TORCH_CHECK((kind & KIND_MASK) != GAUSSIAN || (aux.dim() == 2 && aux.size(0) == x.size(1) && aux.size(1) >= 1),
              "kan_mlip: the gaussian basis needs aux = inverse widths of shape (in, 1), got ", aux.sizes());
  TORCH_CHECK(aux.numel() == 0 || aux.scalar_type() == x.scalar_type(), "kan_mlip: aux dtype differs from x");
  TORCH_CHECK(x.dim() == 2, "kan_mlip: x must be (N, in), got ", x.sizes());
  TORCH_CHECK((kind & ~(KIND_MASK | BASE_SILU)) == 0 && (kind & KIND_MASK) <= 2,
              "kan_mlip: basis kind must be 0, 1 or 2 (+ ", BASE_SILU, " for a fused silu base), got ", kind);
  TORCH_CHECK(deriv >= 0 && order >= 0, "kan_mlip: order and deriv must be >= 0");
  TORCH_CHECK(grid.dim() == 2 ? grid.size(0) == x.size(1) : ((kind & KIND_MASK) == FOURIER && grid.dim() == 1),
              "kan_mlip: grid must be (in, L) (or (L,) for fourier), got ", grid.sizes(), " for x ", x.sizes());
  TORCH_CHECK(grid.scalar_type() == x.scalar_type(), "kan_mlip: grid dtype ", grid.scalar_type(),
              " differs from x dtype ", x.scalar_type());
}

// the optional per-(n, i) weight of kan_forward / kan_coeff_grad: x's shape and dtype
inline void check_weight(const Tensor &x, const Tensor &w)
{
  TORCH_CHECK(!w.defined() || (w.sizes() == x.sizes() && w.scalar_type() == x.scalar_type()),
              "kan_mlip: weight must be like x ", x.sizes(), " ", x.scalar_type(), ", got ", w.sizes(), " ",
              w.scalar_type());
}

}    // namespace kan_mlip
