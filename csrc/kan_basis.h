// Univariate KAN bases and their derivatives of any order, evaluated for one scalar input.
//
//   bspline  : B-splines of degree `order` on knots t[0..nk); K = nk - order - 1 functions. Only the
//              order + 1 functions of the knot interval holding x are nonzero: they come from de Boor's
//              triangular scheme (The NURBS Book, A2.2) at degree order - d, raised to the d-th
//              derivative by B'_{j,p} = p (B_{j,p-1}/(t_{j+p}-t_j) - B_{j+1,p-1}/(t_{j+p+1}-t_{j+1})).
//   gaussian : exp(-z^2), z = (x - c_k) s;  d^d/dx^d = (-s)^d H_d(z) exp(-z^2)  (Hermite H_d).
//              Evaluated a row at a time in SIMD (gaussian_rows.h): a product recurrence on uniform
//              centres, else one exp per value; values below exp(flush_arg()) are 0.
//   fourier  : [cos(f x), sin(f x)] over frequencies f;  d-th derivative = f^d (cos|sin)(f x + d pi/2).
//              Frequencies 1..K/2 (the default): two trig calls per input and angle addition.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kan_kinds.h"
#include "simd.h"
#include "vec_exp.h"

namespace kan_mlip {


template <typename T> inline T safe_div(T a, T b) { return b != T(0) ? a / b : T(0); }    // 0/0 terms are 0

// Where x lies on uniform knots t0 + j h, j = 0 .. last + 1 (tl the last knot): its position pos =
// (x - t0) / h, its interval m = floor(pos) clamped to [0, last] (a whole number, as a V), and whether
// t0 <= x < tl (false for NaN; m and pos then mean nothing). Branch-free on a scalar (the loops around
// it vectorise) or on a SIMD vector of T (the knot values then vectors too). m by truncation, floor
// of the clamped pos >= 0: on scalars std::trunc, which GCC 12 if-converts next to these selects
// where it leaves an integer conversion as a branch.
template <typename V> struct KnotInterval {
  V pos, m;
  decltype(V{} < V{}) inside;
};

template <typename V, typename T>
inline __attribute__((always_inline)) KnotInterval<V> uniform_interval(V x, V t0, V tl, V inv_h, T last)
{
  const V pos = (x - t0) * inv_h;
  const V above = pos > T(0) ? pos : V{}, clamped = above < last ? above : V{} + last;
  V m;
  if constexpr (std::is_floating_point<V>::value) m = std::trunc(clamped);
  else m = __builtin_convertvector(__builtin_convertvector(clamped, Int32Lanes<T>), V);
  KnotInterval<V> at;
  at.pos = pos;
  at.m = m;
  at.inside = (x >= t0) & (x < tl);
  return at;
}

// Per-call view of a basis (grid buffers, derived constants), evaluated a block of rows at a time.
template <typename T> struct Basis {
  int64_t kind, order, deriv, K, in;    // K: functions per input, the base function included
  bool base;                            // the last function is silu (BASE_SILU)
  std::vector<T> sigmoid_d, sigmoid_d1; // deriv >= 3: Q_{d-1}, Q_{d-2} of sigmoid^(n) = s (1 - s) Q_{n-1}(s) (silu)
  const T *grid;         // (in, grid_len) or (grid_len,) shared (fourier)
  int64_t grid_stride, grid_len;
  const T *aux;          // gaussian inverse widths (in, aux_stride)
  int64_t aux_stride;
  std::vector<T> padded;       // bspline: knots extended by `order` on both sides, (in, grid_len + 2 order)
  std::vector<char> uniform;   // bspline, per input: uniform knots (the closed-form fast path)
  std::vector<T> step, inv_step;    // bspline, per input: knot spacing h and 1 / h
  bool fourier_harmonic = false;

  Basis(int64_t kind_, int64_t order_, int64_t deriv_, int64_t K_, int64_t in_, const T *grid_, int64_t grid_stride_,
        int64_t grid_len_, const T *aux_, int64_t aux_stride_)
      : kind(kind_ & KIND_MASK), order(order_), deriv(deriv_), K(K_), in(in_), base((kind_ & BASE_SILU) != 0),
        grid(grid_), grid_stride(grid_stride_), grid_len(grid_len_), aux(aux_), aux_stride(aux_stride_)
  {
    if (base && deriv >= 3) {
      // Q_0 = 1, Q_m = (1 - 2 s) Q_{m-1} + s (1 - s) Q_{m-1}': coefficients in s
      std::vector<T> q = {T(1)};
      for (int64_t m = 1; m < deriv; m++) {
        std::vector<T> r(q.size() + 1, T(0));
        for (size_t j = 0; j < q.size(); j++) {
          r[j] += T(1 + j) * q[j];
          r[j + 1] -= T(2 + j) * q[j];
        }
        if (m == deriv - 1) sigmoid_d1 = q;
        q = r;
      }
      sigmoid_d = q;
    }
    if (kind == BSPLINE) {
      const int64_t P = grid_len + 2 * order;
      padded.resize(in * P);
      uniform.resize(in);
      step.resize(in);
      inv_step.resize(in);
      for (int64_t i = 0; i < in; i++) {
        const T *t = grid + i * grid_stride;
        T *p = padded.data() + i * P;
        const T h0 = grid_len > 1 ? t[1] - t[0] : T(1), h1 = grid_len > 1 ? t[grid_len - 1] - t[grid_len - 2] : T(1);
        // knots beyond the ends only shape functions outside the basis, which are discarded
        for (int64_t j = 0; j < order; j++) p[j] = t[0] - T(order - j) * h0;
        for (int64_t j = 0; j < grid_len; j++) p[order + j] = t[j];
        for (int64_t j = 0; j < order; j++) p[order + grid_len + j] = t[grid_len - 1] + T(j + 1) * h1;
        bool u = h0 > T(0);
        for (int64_t j = 1; j + 1 < grid_len && u; j++) u = std::abs((t[j + 1] - t[j]) - h0) <= uniform_tol() * h0;
        uniform[i] = u;
        step[i] = h0;
        inv_step[i] = T(1) / h0;
      }
    } else {
      fourier_harmonic = true;
      for (int64_t k = 0; k < K / 2; k++) fourier_harmonic = fourier_harmonic && grid[k] == T(k + 1);
    }
  }

  // exp arguments below this give exact zeros: exp(-500) ~ 7e-218, exp(-60) ~ 9e-27 (float32), far
  // above the subnormal range even after products with coefficients and Hermite factors
  static T flush_arg() { return sizeof(T) == 8 ? T(-500) : T(-60); }

  // spacings equal to this relative tolerance count as uniform (rounding of arange / linspace)
  static T uniform_tol() { return sizeof(T) == 8 ? T(1e-10) : T(1e-5); }

  // values per element a block holds: order + 1 for B-splines (0 beyond the degree), K otherwise
  int64_t count() const { return kind == BSPLINE ? (deriv > order ? 0 : order + 1) : K; }

  // ---- B-spline block evaluation: rows [0, rows) of xT (input-major: xT[i * rows + r]) ----
  // V[(i * C + j) * rows + r] = value j of (r, i), first[i * rows + r] its first basis index (K: all
  // zero); C = count(). Every loop runs over rows, so it vectorises: uniform knots give the de Boor
  // distances in closed form, other knots gather them (scratch: s1 (order + 1) * rows, s2 order * rows).
  void eval_block(const T *xT, int64_t rows, T *V, int32_t *first, T *s1, T *s2) const
  {
    const int64_t C = count();
    if (C == 0) {
      for (int64_t e = 0; e < in * rows; e++) first[e] = int32_t(K);
      return;
    }
    for (int64_t i = 0; i < in; i++) {
      const T *x = xT + i * rows;
      int32_t *f = first + i * rows;
      T *Vi = V + i * C * rows;
      const T *t = grid + i * grid_stride;
      const T *p = padded.data() + i * (grid_len + 2 * order) + order;    // p[j] == t[j], valid for j in [-order, ...)
      const T t0 = t[0], tl = t[grid_len - 1], h = step[i], inv_h = inv_step[i];
      const bool uni = uniform[i];    // a local: a char read in the loops below could alias their stores
      // knot interval t[m] <= x < t[m + 1], kept in f until the end (outside: m = 0, values zeroed below)
      T *left = s1, *right = s2, *u = s1 + order * rows;    // left[(j - 1) * rows + r]; u: uniform knots
      if (uni) {    // m and the position u = (x - t[m]) / h in the interval, in closed form
        T *mT = left;    // m as a T (-1 outside) in an all-T loop, which vectorises; then m as an integer
        const T last = T(grid_len - 2);
        for (int64_t r = 0; r < rows; r++) {
          const auto at = uniform_interval(x[r], t0, tl, inv_h, last);
          mT[r] = at.inside ? at.m : T(-1);
          u[r] = at.inside ? at.pos - at.m : T(0);
        }
        for (int64_t r = 0; r < rows; r++) f[r] = int32_t(mT[r]);
      } else {
        for (int64_t r = 0; r < rows; r++) {
          const T xr = x[r];
          const bool inside = xr >= t0 && xr < tl;
          // a guess from the mean spacing, then a local search
          int64_t m = inside ? std::max<int64_t>(0, int64_t((xr - t0) / (tl - t0) * T(grid_len - 1))) : 0;
          m = std::min<int64_t>(m, grid_len - 2);
          while (m > 0 && xr < t[m]) m--;
          while (m < grid_len - 2 && xr >= t[m + 1]) m++;
          f[r] = inside ? int32_t(m) : -1;
        }
      }
      if (uni && order == 3) {    // efficient-kan's default: closed-form cubics, one pass
        cubic_uniform(u, rows, Vi, inv_h);
      } else {
        de_boor(x, rows, Vi, f, p, left, right, u, uni, h, inv_h);
      }
      for (int64_t j = 0; j < C; j++) {    // outside every support: exact zeros
        T *v = Vi + j * rows;
        for (int64_t r = 0; r < rows; r++) v[r] = f[r] < 0 ? T(0) : v[r];
      }
      for (int64_t r = 0; r < rows; r++) f[r] = f[r] < 0 ? int32_t(K) : f[r] - int32_t(order);
    }
  }

  // all cubic B-splines of uniform knots are one shape: values in closed form (CubicRows, bspline_wide.h)
  bool dense_cubic() const
  {
    if (kind != BSPLINE || order != 3 || deriv > 3) return false;
    for (int64_t i = 0; i < in; i++)
      if (!uniform[i]) return false;
    return true;
  }

  // Uniform cubic B-splines at u = (x - t[m]) / h in [0, 1): functions m - 3 .. m are
  //   (1 - u)^3 / 6,  (3u^3 - 6u^2 + 4) / 6,  (-3u^3 + 3u^2 + 3u + 1) / 6,  u^3 / 6
  // and v[j] their D-th derivatives d^D/du^D (D <= 3), on a scalar or a SIMD vector; d/dx = h^-1 d/du.
  template <int D, typename V> static inline __attribute__((always_inline)) void cubic_pieces(V u, V (&v)[4])
  {
    const V b = T(1) - u, u2 = u * u;
    if constexpr (D == 0) {
      const T sixth = T(1) / T(6);
      v[0] = b * b * b * sixth;
      v[1] = (T(3) * u2 * u - T(6) * u2 + T(4)) * sixth;
      v[2] = (T(-3) * u2 * u + T(3) * u2 + T(3) * u + T(1)) * sixth;
      v[3] = u2 * u * sixth;
    } else if constexpr (D == 1) {
      v[0] = -b * b * T(0.5);
      v[1] = (T(3) * u - T(4)) * u * T(0.5);
      v[2] = ((T(-3) * u + T(2)) * u + T(1)) * T(0.5);
      v[3] = u2 * T(0.5);
    } else if constexpr (D == 2) {
      v[0] = b;
      v[1] = T(3) * u - T(2);
      v[2] = T(1) - T(3) * u;
      v[3] = u;
    } else {
      v[0] = V{} - T(1);
      v[1] = V{} + T(3);
      v[2] = V{} - T(3);
      v[3] = V{} + T(1);
    }
  }

  // cubic_pieces for rows [0, rows) of u, times the chain-rule factor h^-deriv (count() is 0 beyond 3)
  void cubic_uniform(const T *__restrict u, int64_t rows, T *__restrict V, T inv_h) const
  {
    switch (deriv) {
      case 0: return cubic_rows<0>(u, rows, V, T(1));
      case 1: return cubic_rows<1>(u, rows, V, inv_h);
      case 2: return cubic_rows<2>(u, rows, V, inv_h * inv_h);
      default: return cubic_rows<3>(u, rows, V, inv_h * inv_h * inv_h);
    }
  }

  template <int D> static void cubic_rows(const T *__restrict u, int64_t rows, T *__restrict V, T scale)
  {
    T *__restrict v0 = V, *__restrict v1 = V + rows, *__restrict v2 = V + 2 * rows, *__restrict v3 = V + 3 * rows;
    for (int64_t r = 0; r < rows; r++) {
      T v[4];
      cubic_pieces<D>(u[r], v);
      v0[r] = v[0] * scale;
      v1[r] = v[1] * scale;
      v2[r] = v[2] * scale;
      v3[r] = v[3] * scale;
    }
  }

  // de Boor's triangle at degree order - deriv, raised to the derivative (any order and knots)
  void de_boor(const T *x, int64_t rows, T *Vi, const int32_t *f, const T *p, T *left, T *right, const T *u, bool uni,
               T h, T inv_h) const
  {
    const int64_t q = order - deriv;
    // de Boor (The NURBS Book A2.2) over rows: left_j = x - t[m + 1 - j], right_j = t[m + j] - x
    for (int64_t j = 1; j <= order; j++) {
      T *lj = left + (j - 1) * rows, *rj = right + (j - 1) * rows;
      if (uni) {    // t[m + k] = t0 + (m + k) h
        for (int64_t r = 0; r < rows; r++) {
          lj[r] = h * (u[r] + T(j - 1));
          rj[r] = h * (T(j) - u[r]);
        }
      } else {
        for (int64_t r = 0; r < rows; r++) {
          const int64_t m = std::max<int64_t>(f[r], 0);
          lj[r] = x[r] - p[m + 1 - j];
          rj[r] = p[m + j] - x[r];
        }
      }
    }
    for (int64_t r = 0; r < rows; r++) Vi[r] = T(1);
    for (int64_t j = 1; j <= q; j++) {
      T *saved = Vi + j * rows;    // becomes N_j
      for (int64_t r = 0; r < rows; r++) saved[r] = T(0);
      for (int64_t rr = 0; rr < j; rr++) {
        T *N = Vi + rr * rows;
        const T *R1 = right + rr * rows, *Lj = left + (j - rr - 1) * rows;
        if (uni) {    // right_{rr+1} + left_{j-rr} = j h: no division
          const T inv_jh = inv_h / T(j);
          for (int64_t r = 0; r < rows; r++) {
            const T temp = N[r] * inv_jh;
            N[r] = saved[r] + R1[r] * temp;
            saved[r] = Lj[r] * temp;
          }
          continue;
        }
        for (int64_t r = 0; r < rows; r++) {
          const T temp = safe_div(N[r], R1[r] + Lj[r]);
          N[r] = saved[r] + R1[r] * temp;
          saved[r] = Lj[r] * temp;
        }
      }
    }
    // raise to the derivative: B'_{j,deg} = deg (B_{j,deg-1} / (t_{j+deg} - t_j) - B_{j+1,deg-1} / (t_{j+deg+1} - t_{j+1}))
    for (int64_t deg = q + 1; deg <= order; deg++)
      for (int64_t rr = deg; rr >= 0; rr--) {
        T *out = Vi + rr * rows;
        const T *a = rr - 1 >= 0 ? Vi + (rr - 1) * rows : nullptr;
        const T *b = rr < deg ? Vi + rr * rows : nullptr;
        if (uni) {    // every knot span of degree deg is deg * h
          for (int64_t r = 0; r < rows; r++) out[r] = ((a ? a[r] : T(0)) - (b ? b[r] : T(0))) * inv_h;
          continue;
        }
        for (int64_t r = 0; r < rows; r++) {
          const int64_t j = std::max<int64_t>(f[r], 0) - deg + rr;    // the new entry's function index
          const T da = p[j + deg] - p[j], db = p[j + deg + 1] - p[j + 1];
          out[r] = T(deg) * ((a ? safe_div(a[r], da) : T(0)) - (b ? safe_div(b[r], db) : T(0)));
        }
      }
  }

  // every (n, i) has all K functions: gaussian and fourier (B-splines have order + 1 nonzero ones)
  bool dense() const { return kind != BSPLINE; }

  // e^t, or exactly 0 for t at or below flush_arg() (and for NaN t); on a scalar or a SIMD vector
  template <typename V> static inline __attribute__((always_inline)) V flushed_exp(V t)
  {
    const auto keep = t > flush_arg();
    const V e = exp_bounded(keep ? t : V{} + flush_arg());    // an argument exp_bounded is valid for
    return keep ? e : V{};
  }

  // d-th derivative of silu(x) = x s, s = sigmoid(x): s (1 + x (1 - s)), s (1 - s) (2 + x (1 - 2 s)), or in
  // general x sigmoid^(d) + d sigmoid^(d-1) (D < 0), with sigmoid^(n) = s (1 - s) Q_{n-1}(s) evaluated at
  // -|x| and sigmoid^(n)(x) = (-1)^(n+1) sigmoid^(n)(-x): then 1 - s has no cancellation (a polynomial in
  // sigmoid(x) lost every digit where it nears 1: float32, 5th derivative at x = 12, 40% off).
  // sigmoid from e^{-|x|}: no overflow either side. On a scalar or a SIMD vector (straight-line code).
  template <int D, typename V> inline __attribute__((always_inline)) V silu(V x) const
  {
    const V e = flushed_exp(x < T(0) ? x : -x);    // e^{-|x|}
    const V s = (x >= T(0) ? V{} + T(1) : e) / (T(1) + e);
    if (D == 0) return x * s;
    if (D == 1) return s * (T(1) + x * (T(1) - s));
    if (D == 2) return s * (T(1) - s) * (T(2) + x * (T(1) - T(2) * s));
    const V a = e / (T(1) + e), b = T(1) / (T(1) + e);    // sigmoid(-|x|), 1 - sigmoid(-|x|)
    auto sigmoid_derivative = [&](const std::vector<T> &q, int64_t n) {
      V v{};
      for (size_t j = q.size(); j-- > 0;) v = v * a + q[j];
      v = a * b * v;
      return n % 2 == 0 ? (x > T(0) ? -v : v) : v;
    };
    return x * sigmoid_derivative(sigmoid_d, deriv) + T(deriv) * sigmoid_derivative(sigmoid_d1, deriv - 1);
  }

  // Column of function k of input i in a row of the dense block. Gaussian and Fourier blocks are
  // k-major (k * in + i, a Gaussian base function as k = K - 1), so that values are computed with SIMD
  // over inputs; B-spline blocks are input-major (i * K + k). GEMM operands are permuted to match.
  bool k_major() const { return kind != BSPLINE; }
  int64_t column(int64_t i, int64_t k) const { return k_major() ? k * in + i : i * K + k; }

  // ---- Fourier straight into the row-major block the GEMM contracts: phi[r * in * K + column(i, k)] for
  // rows [0, rows) of x (row-major, x[r * in + i]); no transpose, every write contiguous ----
  template <typename SinCosFn>
  void fourier_rows(const T *x, int64_t rows, T *phi, T *sc, T *ss, T *rot, SinCosFn sincos_fn) const
  {
    if (!fourier_harmonic) {
      T *v = rot;    // K values of one element, then scattered to their k-major columns
      for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < in; i++) {
          eval_fourier(x[r * in + i], v);
          for (int64_t k = 0; k < K; k++) phi[r * in * K + column(i, k)] = v[k];
        }
      return;
    }
    sincos_fn(x, sc, ss, rows * in);
    // (cos, sin)((k + 1) x) by angle addition, SIMD over inputs, mixed into the derivative's columns
    T pc, ps;
    fourier_phase(pc, ps);
    T *ck = rot, *sk = rot + in;
    for (int64_t r = 0; r < rows; r++) {
      const T *a = sc + r * in, *b = ss + r * in;
      for (int64_t i = 0; i < in; i++) {
        ck[i] = T(1);
        sk[i] = T(0);
      }
      for (int64_t k = 0; k < K / 2; k++)
        rotate(ck, sk, a, b, in, derivative_scale(T(k + 1)), pc, ps, phi + r * in * K + k * in,
               phi + r * in * K + (K / 2 + k) * in);
    }
  }

  // The d-th derivative of (cos, sin)(f x) is f^d (cos, sin)(f x + d pi/2) = f^d (pc cos + ps sin,
  // pc sin - ps cos)(f x): a fixed mix of cos and sin for each column (cos: cos, -sin, -cos, sin by d mod 4)
  void fourier_phase(T &pc, T &ps) const
  {
    const int64_t phase = deriv % 4;
    pc = phase == 0 ? T(1) : phase == 2 ? T(-1) : T(0);
    ps = phase == 1 ? T(-1) : phase == 3 ? T(1) : T(0);
  }
  // f^d, the chain-rule factor of the d-th derivative of a function of f x
  T derivative_scale(T f) const
  {
    T fd = T(1);
    for (int64_t j = 0; j < deriv; j++) fd *= f;
    return fd;
  }

  // one angle-addition step for a row of inputs, stored as the derivative's columns. Restrict
  // parameters, not locals: only these let GCC vectorise the loop.
  static void rotate(T *__restrict ck, T *__restrict sk, const T *__restrict a, const T *__restrict b, int64_t in,
                     T fd, T pc, T ps, T *__restrict vc, T *__restrict vs)
  {
    for (int64_t i = 0; i < in; i++) {
      const T cn = ck[i] * a[i] - sk[i] * b[i], sn = sk[i] * a[i] + ck[i] * b[i];
      ck[i] = cn;
      sk[i] = sn;
      vc[i] = fd * (pc * cn + ps * sn);    // cos column: cos, -sin, -cos, sin by phase
      vs[i] = fd * (pc * sn - ps * cn);    // sin column: sin, cos, -sin, -cos
    }
  }

  // f^d (cos, sin)(f x + d pi/2) from c = cos(f x), s = sin(f x): functions k and K/2 + k
  void store_fourier(T *v, int64_t k, T fd, T c, T s) const
  {
    T pc, ps;
    fourier_phase(pc, ps);
    v[k] = fd * (pc * c + ps * s);
    v[K / 2 + k] = fd * (pc * s - ps * c);
  }

  // any frequencies (grid[k]): two trig calls per function
  void eval_fourier(T x, T *v) const
  {
    for (int64_t k = 0; k < K / 2; k++) {
      const T f = grid[k];
      store_fourier(v, k, derivative_scale(f), std::cos(f * x), std::sin(f * x));
    }
  }
};

}    // namespace kan_mlip
