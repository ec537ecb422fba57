// Gaussian KAN contractions for narrow outputs (out < GEMM_MIN_OUT, e.g. an energy readout), fused
// end to end: no basis block, no BLAS. A wide output amortises a dense basis block over a GEMM; a
// narrow one does not, and then writing the block costs more than the arithmetic on it.
//
// Per row n, the values of all functions of all inputs come from GaussianRows (ev[k * in + i], SIMD over
// i); the coefficients are transposed to match (cT[o, k, i]), so every loop over i is vertical SIMD.
//   forward     y[n, o]    = sum_i sum_k c[o, i, k] w[n, i] phi_k(x[n, i])
//   input grad  z[n, i]    = sum_k phi_k(x[n, i]) sum_o g[n, o] c[o, i, k]
//   coeff grad  G[o, i, k] = sum_n g[n, o] w[n, i] phi_k(x[n, i])
#pragma once

#include "gaussian_rows.h"
#include "kan_basis.h"

#include <algorithm>
#include <type_traits>
#include <vector>

namespace kan_mlip {

template <typename T> struct GaussianNarrow {
  const Basis<T> &basis;
  int64_t in, K, out;
  GaussianRows<T> rows;
  std::vector<T> coeff;    // (out, K, in)

  // c: coefficients (out, in, K) contiguous, or nullptr (coefficient gradient)
  GaussianNarrow(const Basis<T> &b, const T *c, int64_t out_)
      : basis(b), in(b.in), K(b.K), out(out_), rows(b), coeff(c ? out_ * b.K * b.in : 0)
  {
    if (c)
      for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++)
          for (int64_t k = 0; k < K; k++) coeff[(o * K + k) * in + i] = c[(o * in + i) * K + k];
  }

  // rows [n0, n1): y (N, out)
  template <int D> void forward(const T *x, const T *w, int64_t n0, int64_t n1, T *y) const
  {
    std::vector<T> ev(K * in), scratch(4 * in), acc(in);
    for (int64_t n = n0; n < n1; n++) {
      rows.template values<D>(x + n * in, w ? w + n * in : nullptr, ev.data(), scratch.data());
      for (int64_t o = 0; o < out; o++) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t k = 0; k < K; k++) {
          const T *c = coeff.data() + (o * K + k) * in, *e = ev.data() + k * in;
          for (int64_t i = 0; i < in; i++) acc[i] += c[i] * e[i];
        }
        T sum = T(0);
        for (int64_t i = 0; i < in; i++) sum += acc[i];
        y[n * out + o] = sum;
      }
    }
  }

  // rows [n0, n1): z (N, in)
  template <int D> void input_grad(const T *x, const T *g, int64_t n0, int64_t n1, T *z) const
  {
    std::vector<T> ev(K * in), scratch(4 * in);
    for (int64_t n = n0; n < n1; n++) {
      rows.template values<D>(x + n * in, nullptr, ev.data(), scratch.data());
      T *zn = z + n * in;
      std::fill(zn, zn + in, T(0));
      for (int64_t o = 0; o < out; o++) {
        const T go = g[n * out + o];
        for (int64_t k = 0; k < K; k++) {
          const T *c = coeff.data() + (o * K + k) * in, *e = ev.data() + k * in;
          for (int64_t i = 0; i < in; i++) zn[i] += go * c[i] * e[i];
        }
      }
    }
  }

  // rows [n0, n1) added to acc (out, K, in): the caller sums the tasks' and transposes (coeff_layout)
  template <int D> void coeff_grad(const T *x, const T *g, const T *w, int64_t n0, int64_t n1, T *acc) const
  {
    std::vector<T> ev(K * in), scratch(4 * in);
    for (int64_t n = n0; n < n1; n++) {
      rows.template values<D>(x + n * in, w ? w + n * in : nullptr, ev.data(), scratch.data());
      for (int64_t o = 0; o < out; o++) {
        const T go = g[n * out + o];
        T *a = acc + o * K * in;
        for (int64_t e = 0; e < K * in; e++) a[e] += go * ev[e];
      }
    }
  }

  // calls f(std::integral_constant<int, D>) for this basis' derivative order (D = -1: any order)
  template <typename F> void dispatch(F f) const
  {
    switch (basis.deriv) {
      case 0: return f(std::integral_constant<int, 0>());
      case 1: return f(std::integral_constant<int, 1>());
      case 2: return f(std::integral_constant<int, 2>());
      default: return f(std::integral_constant<int, -1>());
    }
  }
};

}    // namespace kan_mlip
