// Basis kinds of the kan_mlip ops (the `basis` argument; python/kan_mlip/nn/ops.py: BASIS_KIND, BASE_SILU)
#pragma once

#include <cstdint>

namespace kan_mlip {

enum BasisKind : int64_t { BSPLINE = 0, GAUSSIAN = 1, FOURIER = 2 };
// Flag on the kind: one more function per input, silu(x), after the K basis functions. It is
// efficient-kan's / FastKAN's base branch, W_base[o, i] silu(x[n, i]), contracted in the same op: in the
// same pass for Gaussian blocks, as a dense term beside the B-spline and Fourier paths (kan_ops.cpp).
constexpr int64_t BASE_SILU = 8, KIND_MASK = 7;

}    // namespace kan_mlip
