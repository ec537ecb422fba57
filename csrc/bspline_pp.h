// Narrow B-spline contractions (out < GEMM_MIN_OUT, e.g. an energy readout) as piecewise polynomials.
// On knot interval m of input i (t_m <= x < t_{m+1}) only the functions m - p .. m are nonzero, so their
// contraction with the coefficients is one polynomial of degree Q = p - d in the interval's position
// v = (x - t_m) / h_m - 1/2 (h_m = t_{m+1} - t_m): its Taylor series at the midpoint c_m,
//   sum_k c[o,i,k] B^(d)_k(x) = sum_e A[i,m,o,e] v^e,  A[i,m,o,e] = h_m^e / e! sum_j c[o,i,m-p+j] B^(d+e)_{m-p+j}(c_m),
// with the derivatives at c_m from Basis::eval_block (any knots; midpoints, so no rounding can place them
// in a neighbouring interval). A is tabulated per call (in x intervals x out x (Q + 1) numbers, a few
// kB); an element then costs Q fused multiply-adds on one row of A: no basis values, no per-function
// gathers of coefficients. Outside the knots (and for NaN) the row is the all-zero interval M. A silu
// base (BASE_SILU: the last of the K functions) is added in the same loop, wb[i, o] silu^(d)(x), from
// values the caller evaluates per input (silu_run, kan_ops.cpp).
#pragma once

#include "kan_basis.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace kan_mlip {

// The p + 1 nonzero functions of every knot interval as polynomials in v: F[i, m, j, e] is the v^e
// coefficient of function m - p + j, derivative d. Used alone (Block::evaluate: the values Basis::eval_block
// gives, without de Boor's divisions on non-uniform knots) and contracted with coefficients (BsplinePP).
// B-splines whose pieces have degree Q = order - deriv <= 5 (higher ones keep the de Boor path)
inline bool pieces_apply(int64_t kind, int64_t order, int64_t deriv, int64_t grid_len)
{
  return (kind & KIND_MASK) == BSPLINE && deriv <= order && order - deriv <= 5 && grid_len >= 2;
}

template <typename T> struct BsplinePieces {
  int64_t in, M, Q, C, K;                 // M intervals per input; C = p + 1 functions per interval
  std::vector<T> F;                       // (in, M + 1, C, Q + 1); interval M (outside) all zero
  std::vector<T> t0, tl, inv_h;           // per input: first and last knot, 1 / h (uniform knots)
  std::vector<T> inv_hm;                  // (in, M): 1 / h_m (0 for empty intervals)
  const Basis<T> &basis;

  static bool applies(const Basis<T> &b) { return pieces_apply(b.kind, b.order, b.deriv, b.grid_len); }

  explicit BsplinePieces(const Basis<T> &b)
      : in(b.in), M(b.grid_len - 1), Q(b.order - b.deriv), C(b.order + 1), K(b.K - (b.base ? 1 : 0)),
        F(b.in * b.grid_len * (b.order + 1) * (b.order - b.deriv + 1), T(0)), t0(b.in), tl(b.in), inv_h(b.in),
        inv_hm(b.in * (b.grid_len - 1), T(0)), basis(b)
  {
    const int64_t p = b.order;
    // the midpoints of all intervals of all inputs as one block of rows: xT[i * M + m]
    std::vector<T> xT(in * M), hm(in * M);
    for (int64_t i = 0; i < in; i++) {
      const T *t = b.grid + i * b.grid_stride;
      t0[i] = t[0];
      tl[i] = t[M];
      inv_h[i] = b.inv_step[i];
      for (int64_t m = 0; m < M; m++) {
        hm[i * M + m] = t[m + 1] - t[m];
        xT[i * M + m] = t[m] + T(0.5) * (t[m + 1] - t[m]);
        inv_hm[i * M + m] = t[m + 1] > t[m] ? T(1) / (t[m + 1] - t[m]) : T(0);
      }
    }
    std::vector<T> V(in * C * M), s1((std::max(in, p) + 1) * M), s2(std::max(in, p) * M);
    std::vector<int32_t> first(in * M);
    double factorial = 1.0;
    for (int64_t e = 0; e <= Q; e++) {    // term v^e: derivative d + e at the midpoints
      if (e > 0) factorial *= double(e);
      const Basis<T> be(BSPLINE, p, b.deriv + e, K, in, b.grid, b.grid_stride, b.grid_len, nullptr, 0);
      be.eval_block(xT.data(), M, V.data(), first.data(), s1.data(), s2.data());
      for (int64_t i = 0; i < in; i++)
        for (int64_t m = 0; m < M; m++) {
          if (!(hm[i * M + m] > T(0)) || first[i * M + m] != m - p) continue;    // empty: never located
          const double scale = std::pow(double(hm[i * M + m]), double(e)) / factorial;
          for (int64_t j = 0; j < C; j++)
            F[((i * (M + 1) + m) * C + j) * (Q + 1) + e] = T(double(V[(i * C + j) * M + m]) * scale);
        }
    }
  }

  // rows (i * (M + 1) + m) * stride of each row's interval m (M outside the knots, and for NaN) and its
  // position v in it, for rows [0, rows) of input i (x: input-major)
  void locate(const T *__restrict x, int64_t rows, int64_t i, int32_t stride, int32_t *__restrict at,
              T *__restrict v) const
  {
    const T a = t0[i], b = tl[i];
    const int32_t base_row = int32_t(i * (M + 1)), outside = int32_t(M);
    if (basis.uniform[i]) {
      const T s = inv_h[i], last = T(M - 1);
      for (int64_t r = 0; r < rows; r++) {    // branch-free: vectorises
        const auto k = uniform_interval(x[r], a, b, s, last);
        v[r] = k.inside ? k.pos - k.m - T(0.5) : T(0);
        at[r] = (base_row + (k.inside ? int32_t(k.m) : outside)) * stride;
      }
      return;
    }
    const T *t = basis.grid + i * basis.grid_stride;
    const T *ih = inv_hm.data() + i * M;
    for (int64_t r = 0; r < rows; r++) {    // a guess from the mean spacing, then a local search
      const T xr = x[r];
      if (!(xr >= a && xr < b)) {
        v[r] = T(0);
        at[r] = (base_row + outside) * stride;
        continue;
      }
      int64_t m = std::min<int64_t>(M - 1, std::max<int64_t>(0, int64_t((xr - a) / (b - a) * T(M))));
      while (m > 0 && xr < t[m]) m--;
      while (m < M - 1 && xr >= t[m + 1]) m++;
      v[r] = (xr - t[m]) * ih[m] - T(0.5);
      at[r] = (base_row + int32_t(m)) * stride;
    }
  }

  // Basis::eval_block's output from the pieces: V[(i * C + j) * rows + r], first[i * rows + r] (K outside)
  void eval_block(const T *xT, int64_t rows, T *V, int32_t *first, int32_t *at, T *v) const
  {
    const int32_t stride = int32_t(C * (Q + 1));
    for (int64_t i = 0; i < in; i++) {
      locate(xT + i * rows, rows, i, stride, at, v);
      int32_t *f = first + i * rows;
      for (int64_t r = 0; r < rows; r++) {
        const int32_t m = at[r] / stride - int32_t(i * (M + 1));
        f[r] = m == int32_t(M) ? int32_t(K) : m - int32_t(C - 1);
      }
      for (int64_t j = 0; j < C; j++) {
        T *Vj = V + (i * C + j) * rows;
        const T *Fj = F.data() + j * (Q + 1);
        for (int64_t r = 0; r < rows; r++) {
          const T *c = Fj + at[r];
          T y = c[Q];
          for (int64_t q = Q - 1; q >= 0; q--) y = y * v[r] + c[q];
          Vj[r] = y;
        }
      }
    }
  }
};

template <typename T> struct BsplinePP {
  BsplinePieces<T> pieces;                // its sizes: in, M intervals, degree Q
  int64_t out, S;                         // S = out (Q + 1), the row of one interval
  std::vector<T> A;                       // (in, M + 1, out, Q + 1)
  std::vector<T> wb;                      // (in, out): c[o, i, K - 1] with a silu base, else empty

  // c: (out, in, K) contiguous
  BsplinePP(const Basis<T> &b, const T *c, int64_t out_)
      : pieces(b), out(out_), S(out_ * (pieces.Q + 1)), A(b.in * b.grid_len * S, T(0)), wb(b.base ? b.in * out_ : 0)
  {
    const int64_t in = pieces.in, M = pieces.M, Q = pieces.Q, C = pieces.C, K = pieces.K;
    const int64_t p = C - 1, KC = b.K;    // KC: c's last dimension
    for (int64_t i = 0; i < in; i++)
      for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < out; o++)
          for (int64_t e = 0; e <= Q; e++) {
            double sum = 0.0;
            for (int64_t j = 0; j < C; j++) {
              const int64_t k = m - p + j;
              if (k >= 0 && k < K)
                sum += double(c[(o * in + i) * KC + k]) * double(pieces.F[((i * (M + 1) + m) * C + j) * (Q + 1) + e]);
            }
            A[((i * (M + 1) + m) * out + o) * (Q + 1) + e] = T(sum);
          }
    if (b.base)
      for (int64_t i = 0; i < in; i++)
        for (int64_t o = 0; o < out; o++) wb[i * out + o] = c[(o * in + i) * KC + KC - 1];
  }

  bool base() const { return !wb.empty(); }
  const T *base_weights(int64_t i) const { return base() ? wb.data() + i * out : nullptr; }

  void locate(const T *x, int64_t rows, int64_t i, int32_t *at, T *v) const
  {
    pieces.locate(x, rows, i, int32_t(S), at, v);
  }

  // P_{o,i,m}(u) by Horner on the row A[at + q] (u: the position v that locate gives), plus b s with a base
  template <int QC, bool BASE>
  static inline __attribute__((always_inline)) T value(const T *__restrict A, int32_t at, T u, T b, T s)
  {
    T v = A[at + QC];
    for (int q = QC - 1; q >= 0; q--) v = v * u + A[at + q];
    return BASE ? v + b * s : v;
  }

  // For one input i: y[r * out + o] += w[r * w_stride] (P_{o,i,m(r)}(u_r) + wb[o] s[r]); w is nullptr
  // without a weight, wb (base_weights(i)) without a base, and then s is not read.
  template <int QC> static void accumulate(const T *A, const int32_t *at, const T *u, const T *s, const T *wb,
                                           const T *w, int64_t w_stride, int64_t rows, int64_t out, T *y)
  {
    // compiled per case: runtime tests of w and wb in the loop made it ~15% slower (2.5 -> 2.9-3.0 ms)
    if (wb)
      w ? accumulate_rows<QC, true, true>(A, at, u, s, wb, w, w_stride, rows, out, y)
        : accumulate_rows<QC, true, false>(A, at, u, s, wb, w, w_stride, rows, out, y);
    else
      w ? accumulate_rows<QC, false, true>(A, at, u, s, wb, w, w_stride, rows, out, y)
        : accumulate_rows<QC, false, false>(A, at, u, s, wb, w, w_stride, rows, out, y);
  }

  // z[r] = sum_o g[r * out + o] (P_{o,i,m(r)}(u_r) + wb[o] s[r]) for one input i (wb, s as accumulate)
  template <int QC> static void contract(const T *A, const int32_t *at, const T *u, const T *s, const T *wb,
                                         const T *g, int64_t rows, int64_t out, T *z)
  {
    wb ? contract_rows<QC, true>(A, at, u, s, wb, g, rows, out, z) : contract_rows<QC, false>(A, at, u, s, wb, g, rows, out, z);
  }

  // The loops, scalar on purpose: vectorised, GCC gathers the rows of A (vgatherdpd), which measured
  // slower than scalar loads (20000 x 64 -> 1, 1 thread, float32 forward: 3.1-3.3 ms gathered, 2.5 ms scalar).
  template <int QC, bool BASE, bool WEIGHT>
  static __attribute__((noinline, optimize("no-tree-vectorize"))) void
  accumulate_rows(const T *__restrict A, const int32_t *__restrict at, const T *__restrict u, const T *__restrict s,
                  const T *__restrict wb, const T *__restrict w, int64_t w_stride, int64_t rows, int64_t out,
                  T *__restrict y)
  {
    for (int64_t o = 0; o < out; o++) {
      const T *Ao = A + o * (QC + 1), b = BASE ? wb[o] : T(0);
      for (int64_t r = 0; r < rows; r++) {
        const T v = value<QC, BASE>(Ao, at[r], u[r], b, BASE ? s[r] : T(0));
        y[r * out + o] += WEIGHT ? w[r * w_stride] * v : v;
      }
    }
  }

  template <int QC, bool BASE>
  static __attribute__((noinline, optimize("no-tree-vectorize"))) void
  contract_rows(const T *__restrict A, const int32_t *__restrict at, const T *__restrict u, const T *__restrict s,
                const T *__restrict wb, const T *__restrict g, int64_t rows, int64_t out, T *__restrict z)
  {
    for (int64_t r = 0; r < rows; r++) z[r] = T(0);
    for (int64_t o = 0; o < out; o++) {
      const T *Ao = A + o * (QC + 1), b = BASE ? wb[o] : T(0);
      for (int64_t r = 0; r < rows; r++) z[r] += g[r * out + o] * value<QC, BASE>(Ao, at[r], u[r], b, BASE ? s[r] : T(0));
    }
  }

  // One output on uniform knots: the M + 1 <= 2W interval polynomials of an input fit two registers per
  // coefficient, so every lane finds its interval's coefficients by a permute (vpermt2pd / vpermt2ps)
  // instead of a load per row (the loops above are scalar because gathers were slower than loads)
  bool permutes(int64_t i) const { return out == 1 && pieces.M + 1 <= 2 * Simd<T>::W && pieces.basis.uniform[i]; }

  // Input i (permutes(i)), rows [0, rows) of x (input-major): y[r] += P_i(x[r]) + wb s[r], or with GRAD
  // y[r] = g[r] (P_i(x[r]) + wb s[r]); s (silu^(d)) is read with a base only
  template <int QC, bool GRAD> void permuted(int64_t i, const T *x, const T *s, const T *g, int64_t rows, T *y) const
  {
    if (base()) permuted_rows<QC, true, GRAD>(i, x, s, g, rows, y);
    else permuted_rows<QC, false, GRAD>(i, x, s, g, rows, y);
  }

  // permuted() for a base or none; the interval and position as locate() finds them
  template <int QC, bool BASE, bool GRAD>
  void permuted_rows(int64_t i, const T *x, const T *s, const T *g, int64_t rows, T *y) const
  {
    using V = Simd<T>;
    using vec = typename V::vec;
    using ivec = typename V::lanes;
    constexpr int W = V::W;
    const int64_t M = pieces.M;
    vec lo[QC + 1], hi[QC + 1];    // coefficient e of intervals 0 .. M (M: outside, all zero)
    for (int e = 0; e <= QC; e++) {
      T column[2 * W] = {};
      for (int64_t m = 0; m <= M; m++) column[m] = A[(i * (M + 1) + m) * (QC + 1) + e];
      lo[e] = V::load(column);
      hi[e] = V::load(column + W);
    }
    const T a = pieces.t0[i], b = pieces.tl[i], h = pieces.inv_h[i], last = T(M - 1), wbi = BASE ? wb[i] : T(0);
    for (int64_t r = 0; r < rows; r += W) {
      const int64_t n = std::min<int64_t>(W, rows - r);
      const vec xv = V::load_partial(x + r, n, vec{});
      const auto k = uniform_interval(xv, V::broadcast(a), V::broadcast(b), V::broadcast(h), last);
      const vec u = k.inside ? k.pos - k.m - T(0.5) : vec{};
      const ivec idx = k.inside ? __builtin_convertvector(k.m, ivec) : ivec{} + typename V::lane(M);
      vec v = __builtin_shuffle(lo[QC], hi[QC], idx);
      for (int e = QC - 1; e >= 0; e--) v = v * u + __builtin_shuffle(lo[e], hi[e], idx);
      if constexpr (BASE) v += wbi * V::load_partial(s + r, n, vec{});
      if constexpr (GRAD) V::store_partial(y + r, V::load_partial(g + r, n, vec{}) * v, n);
      else V::store_partial(y + r, V::load_partial(y + r, n, vec{}) + v, n);
    }
  }

  // fn(std::integral_constant<int, Q>) for this table's degree
  template <typename Fn> void dispatch(Fn &&fn) const
  {
    switch (pieces.Q) {
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
