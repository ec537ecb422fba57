// Narrow B-spline contractions (out < GEMM_MIN_OUT, e.g. an energy readout) on uniform knots, as
// piecewise polynomials. On knot interval m of input i (t_m <= x < t_{m+1}, u = (x - t_m) / h) the
// nonzero functions m - p .. m are the p + 1 pieces of one cardinal B-spline of degree p, so their
// contraction with the coefficients is a single polynomial in u of degree Q = p - d:
//   sum_k c[o,i,k] B^(d)_k(x) = h^-d sum_j c[o,i,m-p+j] beta_j^(d)(u) = sum_q A[i,m,o,q] u^q,
// with beta_j piece p - j of the cardinal B-spline. A is tabulated per call (in x intervals x out x
// (Q + 1) numbers, a few kB); evaluating an element is Q fused multiply-adds on one gathered row of A:
// no basis values, no per-function gathers of coefficients. Outside the knots (and for NaN) the row
// index is the all-zero interval M. A silu base (BASE_SILU: the last of the K functions) is added in the
// same loop, wb[i, o] silu^(d)(x), from values the caller evaluates per input (silu_run, kan_ops.cpp).
#pragma once

#include "kan_basis.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace kan_mlip {

template <typename T> struct BsplinePP {
  static constexpr int MAX_DEGREE = 5;    // Q: higher orders keep the de Boor path
  int64_t in, out, M, Q, S;               // M intervals per input; S = out (Q + 1), the row of one interval
  bool base;                              // the last function is silu(x), weights wb
  std::vector<T> A;                       // (in, M + 1, out, Q + 1)
  std::vector<T> wb;                      // (in, out): c[o, i, K - 1] with a base
  std::vector<T> t0, tl, inv_h;           // per input: first and last knot, 1 / h

  static bool applies(const Basis<T> &b, int64_t out)
  {
    if (b.kind != BSPLINE || b.deriv > b.order || b.order - b.deriv > MAX_DEGREE || out < 1) return false;
    return std::all_of(b.uniform.begin(), b.uniform.end(), [](char u) { return u != 0; });
  }

  // pieces of the cardinal B-spline of degree p (support [0, p + 1)) as polynomials in u on [s, s + 1):
  // N_p^(s)(u) = ((s + u) N_{p-1}^(s)(u) + (p + 1 - s - u) N_{p-1}^(s-1)(u)) / p, N_0^(0) = 1;
  // then beta_j = N_p^(p - j), differentiated d times in u. Returns (p + 1) x (p - d + 1) coefficients.
  static std::vector<double> segments(int64_t p, int64_t d)
  {
    std::vector<std::vector<double>> N = {{1.0}};    // N[s][q], degree so far
    for (int64_t deg = 1; deg <= p; deg++) {
      std::vector<std::vector<double>> next(deg + 1, std::vector<double>(deg + 1, 0.0));
      for (int64_t s = 0; s <= deg; s++) {
        if (s < deg)    // (s + u) N_{deg-1}^(s)
          for (int64_t q = 0; q < deg; q++) {
            next[s][q] += s * N[s][q] / deg;
            next[s][q + 1] += N[s][q] / deg;
          }
        if (s >= 1)    // (deg + 1 - s - u) N_{deg-1}^(s-1)
          for (int64_t q = 0; q < deg; q++) {
            next[s][q] += (deg + 1 - s) * N[s - 1][q] / deg;
            next[s][q + 1] -= N[s - 1][q] / deg;
          }
      }
      N = next;
    }
    const int64_t Q = p - d;
    std::vector<double> beta((p + 1) * (Q + 1), 0.0);
    for (int64_t j = 0; j <= p; j++)
      for (int64_t q = 0; q <= Q; q++) {    // d-th derivative of u^(q + d): (q + d)! / q! u^q
        double f = 1.0;
        for (int64_t e = q + 1; e <= q + d; e++) f *= double(e);
        beta[j * (Q + 1) + q] = f * N[p - j][q + d];
      }
    return beta;
  }

  // c: (out, in, K) contiguous
  BsplinePP(const Basis<T> &b, const T *c, int64_t out_)
      : in(b.in), out(out_), M(b.grid_len - 1), Q(b.order - b.deriv), S(out_ * (b.order - b.deriv + 1)), base(b.base),
        A(b.in * (b.grid_len) * out_ * (b.order - b.deriv + 1), T(0)), wb(b.base ? b.in * out_ : 0), t0(b.in),
        tl(b.in), inv_h(b.in)
  {
    const int64_t p = b.order, KC = b.K, K = b.K - (b.base ? 1 : 0);    // KC: c's last dimension
    const std::vector<double> beta = segments(p, b.deriv);
    for (int64_t i = 0; i < in; i++) {
      t0[i] = b.grid[i * b.grid_stride];
      tl[i] = b.grid[i * b.grid_stride + b.grid_len - 1];
      inv_h[i] = b.inv_step[i];
      double scale = 1.0;
      for (int64_t e = 0; e < b.deriv; e++) scale *= double(b.inv_step[i]);
      for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < out; o++) {
          T *a = A.data() + (i * (M + 1) + m) * S + o * (Q + 1);
          for (int64_t q = 0; q <= Q; q++) {
            double sum = 0.0;
            for (int64_t j = 0; j <= p; j++) {
              const int64_t k = m - p + j;
              if (k >= 0 && k < K) sum += double(c[(o * in + i) * KC + k]) * beta[j * (Q + 1) + q];
            }
            a[q] = T(sum * scale);
          }
        }
      if (base)
        for (int64_t o = 0; o < out; o++) wb[i * out + o] = c[(o * in + i) * KC + KC - 1];
    }
  }

  // interval rows (i * (M + 1) + m) * S and positions u of rows [0, rows) of input i (xT: input-major)
  void locate(const T *__restrict x, int64_t rows, int64_t i, int32_t *__restrict at, T *__restrict u) const
  {
    const T a = t0[i], b = tl[i], s = inv_h[i], last = T(M - 1);
    const int32_t base = int32_t(i * (M + 1)), outside = int32_t(M), stride = int32_t(S);
    for (int64_t r = 0; r < rows; r++) {    // as Basis::eval_block: branch-free, vectorises
      const T xr = x[r], pos = (xr - a) * s;
      const T above = pos > T(0) ? pos : T(0), clamped = above < last ? above : last;
      const T m = std::trunc(clamped);
      const bool inside = (xr >= a) & (xr < b);
      u[r] = inside ? pos - m : T(0);
      at[r] = (base + (inside ? int32_t(m) : outside)) * stride;
    }
  }

  // P_{o,i,m(r)}(u_r) by Horner on the gathered row A[at[r] + q], plus b s[r] with a base (BASE)
  template <int QC, bool BASE>
  static inline __attribute__((always_inline)) T value(const T *__restrict A, int32_t at, T u, T b, T s)
  {
    T v = A[at + QC];
    for (int q = QC - 1; q >= 0; q--) v = v * u + A[at + q];
    return BASE ? v + b * s : v;
  }

  // y[r * out + o] += w[r * w_stride] (P_{o,i,m(r)}(u_r) + wb[o] s[r]) for one input i: WEIGHT says w is
  // given, BASE that s (silu^(d) of the inputs) and wb (the base weights of input i) are.
  // Scalar on purpose: vectorised, GCC gathers the rows of A (vgatherdpd), which measured slower than
  // scalar loads (20000 x 64 -> 1, 1 thread, float32 forward: 3.1-3.3 ms gathered, 2.5 ms scalar).
  template <int QC, bool BASE, bool WEIGHT>
  static __attribute__((noinline, optimize("no-tree-vectorize"))) void accumulate(const T *__restrict A, const int32_t *__restrict at,
                                                   const T *__restrict u, const T *__restrict s, const T *__restrict wb,
                                                   const T *__restrict w, int64_t w_stride, int64_t rows, int64_t out,
                                                   T *__restrict y)
  {
    for (int64_t o = 0; o < out; o++) {
      const T *Ao = A + o * (QC + 1), b = BASE ? wb[o] : T(0);
      if (out == 1)
        for (int64_t r = 0; r < rows; r++) {
          const T v = value<QC, BASE>(Ao, at[r], u[r], b, BASE ? s[r] : T(0));
          y[r] += WEIGHT ? w[r * w_stride] * v : v;
        }
      else
        for (int64_t r = 0; r < rows; r++) {
          const T v = value<QC, BASE>(Ao, at[r], u[r], b, BASE ? s[r] : T(0));
          y[r * out + o] += WEIGHT ? w[r * w_stride] * v : v;
        }
    }
  }

  // z[r] = sum_o g[r * out + o] (P_{o,i,m(r)}(u_r) + wb[o] s[r]) for one input i
  template <int QC, bool BASE>
  static __attribute__((noinline, optimize("no-tree-vectorize"))) void contract(const T *__restrict A, const int32_t *__restrict at,
                                                 const T *__restrict u, const T *__restrict s, const T *__restrict wb,
                                                 const T *__restrict g, int64_t rows, int64_t out, T *__restrict z)
  {
    for (int64_t r = 0; r < rows; r++) z[r] = T(0);
    for (int64_t o = 0; o < out; o++) {
      const T *Ao = A + o * (QC + 1), b = BASE ? wb[o] : T(0);
      for (int64_t r = 0; r < rows; r++)
        z[r] += g[r * out + o] * value<QC, BASE>(Ao, at[r], u[r], b, BASE ? s[r] : T(0));
    }
  }

  // fn(std::integral_constant<int, Q>) for this table's degree
  template <typename Fn> void dispatch(Fn &&fn) const
  {
    switch (Q) {
      case 0: return fn(std::integral_constant<int, 0>());
      case 1: return fn(std::integral_constant<int, 1>());
      case 2: return fn(std::integral_constant<int, 2>());
      case 3: return fn(std::integral_constant<int, 3>());
      case 4: return fn(std::integral_constant<int, 4>());
      default: return fn(std::integral_constant<int, 5>());
    }
  }
};

}    // namespace kan_mlip
