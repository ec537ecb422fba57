// Gaussian KAN contractions for narrow outputs (out < GEMM_MIN_OUT, e.g. an energy readout), fused
// end to end: no basis block, no BLAS. A wide output amortises a dense basis block over a GEMM; a
// narrow one does not, and then writing the block costs more than the arithmetic on it.
//
// Per row n, the values phi^(d)_k(x[n, i]) of all inputs and functions go into one short k-major buffer
// ev[k * in + i] (GaussianRows, in SIMD registers); the coefficients are transposed to the same order
// (cT[o, k, i]), so every contraction is a vertical SIMD loop over k * in. One output (an energy readout)
// contracts the values as they are made, in registers, with no row buffer (cP[k * inP + i], zero in the
// padding lanes).
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
  using S = Simd<T>;
  using V = typename S::vec;
  std::vector<T> coeff;    // (out, K, in)
  std::vector<T> cP;       // out == 1: (K, inP)
  GaussianRows<T> rows;     // all K values of a row at once

  // c: coefficients (out, in, K) contiguous, or nullptr (coefficient gradient)
  GaussianNarrow(const Basis<T> &b, const T *c, int64_t out_)
      : basis(b), in(b.in), K(b.K), out(out_), coeff(c ? out_ * b.K * b.in : 0), rows(b)
  {
    if (c)
      for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++)
          for (int64_t k = 0; k < K; k++) coeff[(o * K + k) * in + i] = c[(o * in + i) * K + k];
    if (c && out == 1) {
      cP.assign(K * rows.inP, T(0));
      for (int64_t k = 0; k < K; k++) std::copy(coeff.data() + k * in, coeff.data() + (k + 1) * in, cP.data() + k * rows.inP);
    }
  }

  // rows [n0, n1): y (N, out)
  template <int D> void forward(const T *x, const T *w, int64_t n0, int64_t n1, T *y) const
  {
    if (out == 1) {
      for (int64_t n = n0; n < n1; n++) {
        V acc{};
        rows.template values<D>(x + n * in, w ? w + n * in : nullptr, [&](int64_t k, V v, int64_t i0, int64_t) {
          acc += S::load(cP.data() + k * rows.inP + i0) * v;
        });
        T sum = T(0);
        for (int l = 0; l < S::W; l++) sum += acc[l];
        y[n] = sum;
      }
      return;
    }
    std::vector<T> ev(K * in);
    const int64_t KI = K * in;
    for (int64_t n = n0; n < n1; n++) {
      rows.row(x + n * in, w ? w + n * in : nullptr, ev.data());
      for (int64_t o = 0; o < out; o++) y[n * out + o] = simd_dot(coeff.data() + o * KI, ev.data(), KI);
    }
  }

  // rows [n0, n1): z (N, in)
  template <int D> void input_grad(const T *x, const T *g, int64_t n0, int64_t n1, T *z) const
  {
    if (out == 1) {
      for (int64_t n = n0; n < n1; n++) {
        V acc{};
        rows.template values<D>(
            x + n * in, nullptr, [&](int64_t k, V v, int64_t i0, int64_t) { acc += S::load(cP.data() + k * rows.inP + i0) * v; },
            [&](int64_t i0, int64_t len) {
              S::store_partial(z + n * in + i0, acc * g[n], len);
              acc = V{};
            });
      }
      return;
    }
    std::vector<T> ev(K * in);
    for (int64_t n = n0; n < n1; n++) {
      rows.row(x + n * in, nullptr, ev.data());
      T *zn = z + n * in;
      std::fill(zn, zn + in, T(0));
      for (int64_t o = 0; o < out; o++) k_major_axpy(g[n * out + o], coeff.data() + o * K * in, ev.data(), in, K, zn);
    }
  }

  // rows [n0, n1) added to acc (out, K, in): the caller sums the tasks' and transposes (coeff_layout)
  template <int D> void coeff_grad(const T *x, const T *g, const T *w, int64_t n0, int64_t n1, T *acc) const
  {
    std::vector<T> ev(K * in);
    const int64_t KI = K * in;
    for (int64_t n = n0; n < n1; n++) {
      rows.row(x + n * in, w ? w + n * in : nullptr, ev.data());
      for (int64_t o = 0; o < out; o++) axpy(g[n * out + o], ev.data(), acc + o * KI, KI);
    }
  }

  static void axpy(T a, const T *__restrict v, T *__restrict y, int64_t len)
  {
    for (int64_t j = 0; j < len; j++) y[j] += a * v[j];
  }
  // calls f(std::integral_constant<int, D>) for this basis' derivative order (D = -1: any order)
  template <typename F> void dispatch(F f) const { rows.dispatch_deriv(f); }
};

}    // namespace kan_mlip
