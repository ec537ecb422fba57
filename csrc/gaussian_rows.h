// Gaussian basis values for one row of inputs, all functions at once, k-major:
//   ev[k * in + i] = w[i] phi^(D)_k(x[i])   (k < Kb),   ev[Kb * in + i] = w[i] silu^(D)(x[i])   (BASE_SILU)
// SIMD over the inputs i, W at a time (simd.h), with every value of a chunk made in registers: the rows
// of the dense block that the GEMM path contracts.
//
// Uniform centres (c_k = c_0 + k Delta, FastKAN's linspace) allow a product recurrence instead of one exp
// per value. With z_k = (x - c_k) s and delta = Delta s, z_{k+1} = z_k - delta, so
//   phi_{k+1} = phi_k U_k,  U_k = e^{2 z_k delta - delta^2},  U_{k+1} = U_k e^{-2 delta^2}
//   phi_{k-1} = phi_k D_k,  D_k = e^{-2 z_k delta - delta^2}, D_{k-1} = D_k e^{-2 delta^2}
// Starting at the middle centre m, two exps and a division per input (phi_m, U_m, D_m = e^{-2 delta^2} / U_m)
// give all Kb values; rounding grows by about an ulp per step, at most Kb / 2 steps. Derivatives are phi_k
// times a polynomial in z_k (factor()). The recurrence needs phi_m to be a normal number and the ratios to
// stay finite: rows with some |z_m| beyond band() (inputs far outside the grid) take one exp per value.
//
// Nearly uniform centres, e.g. a float32 linspace cast to float64 (off by ~1e-8), run the recurrence on
// the uniform centres cbar_k of the same ends and correct each value: with e_k = (c_k - cbar_k) s and
// zbar_k = (x - cbar_k) s, phi_k = e^{-zbar_k^2} e^a, a = e_k (2 zbar_k - e_k), and e^a = 1 + a + a^2/2
// + a^3/6 to within a^4/24 (|e_k| <= 1e-6 and |zbar_k| < 22 give |a| < 5e-5: below 3e-19).
#pragma once

#include "kan_basis.h"
#include "simd.h"
#include "vec_exp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace kan_mlip {

template <typename T> struct GaussianRows {
  using S = Simd<T>;
  using V = typename S::vec;
  const Basis<T> &basis;
  int64_t in, inP, K, Kb, m;
  // padded to inP = whole vectors (harmless lanes: centre 0, width 1, delta 0, decay 1, offset 0)
  std::vector<T> centres, uniform_centres, offset;    // (Kb, inP): c_k, cbar_k, e_k = (c_k - cbar_k) s
  std::vector<T> inv_width, delta, decay;             // (inP): s, delta, e^{-2 delta^2}
  bool recurrent, corrected = false;

  // |z_m| up to band(): phi_m >= e^{-band^2} is far from the flush threshold
  static T band() { return sizeof(T) == 8 ? T(16) : T(6); }
  // largest exp argument the ratios may reach: e^{80} and e^{-80} are normal float32 numbers
  static T ratio_arg_limit() { return sizeof(T) == 8 ? T(650) : T(80); }
  // largest |e_k| corrected (in units of the width; a float32 linspace is off by ~1e-7)
  static T max_offset() { return T(1e-6); }
  // offsets left uncorrected: the value error phi_k |a| <= max_z 2 |z| e^{-z^2} |e_k| < 0.86 |e_k|, within
  // about 4 ulp of 1 (a linspace in its own precision, off by rounding)
  static T negligible_offset() { return T(4) * std::numeric_limits<T>::epsilon(); }

  explicit GaussianRows(const Basis<T> &b)
      : basis(b), in(b.in), inP((b.in + S::W - 1) / S::W * S::W), K(b.K), Kb(b.K - b.base), m((b.K - b.base - 1) / 2),
        centres(Kb * inP, T(0)), uniform_centres(Kb * inP, T(0)), offset(Kb * inP, T(0)), inv_width(inP, T(1)),
        delta(inP, T(0)), decay(inP, T(1)), recurrent(Kb >= 3)
  {
    for (int64_t i = 0; i < in; i++) {
      const T *c = b.grid + i * b.grid_stride, s = b.aux[i * b.aux_stride];
      inv_width[i] = s;
      const T h = Kb > 1 ? (c[Kb - 1] - c[0]) / T(Kb - 1) : T(0);
      for (int64_t k = 0; k < Kb; k++) {
        centres[k * inP + i] = c[k];
        uniform_centres[k * inP + i] = c[0] + T(k) * h;
        offset[k * inP + i] = (c[k] - uniform_centres[k * inP + i]) * s;
        recurrent = recurrent && std::abs(offset[k * inP + i]) <= max_offset();
        corrected = corrected || std::abs(offset[k * inP + i]) > negligible_offset();
      }
      delta[i] = h * s;
      decay[i] = T(std::exp(-2.0 * double(delta[i]) * double(delta[i])));    // rounded once: it compounds
      // the ratios' exponents over all steps: |2 z delta| + delta^2 (1 + 2 steps)
      const T d = delta[i], steps = T(Kb - m);
      recurrent = recurrent && h > T(0) && s > T(0) &&
                  T(2) * band() * d + d * d * (T(1) + T(2) * steps) <= ratio_arg_limit();
    }
  }

  // one row: x[i], optional w[i], ev (K * in)
  void row(const T *x, const T *w, T *ev) const
  {
    dispatch_deriv([&](auto d) {
      values<d()>(x, w, [&](int64_t k, V v, int64_t i0, int64_t n) {
        if (n == S::W) S::store(ev + k * in + i0, v);
        else S::store_partial(ev + k * in + i0, v, n);
      });
    });
  }

  // f(integral_constant<int, D>) for the basis' derivative order (D = -1: any order)
  template <typename F> void dispatch_deriv(F &&f) const
  {
    switch (basis.deriv) {
      case 0: return f(std::integral_constant<int, 0>());
      case 1: return f(std::integral_constant<int, 1>());
      case 2: return f(std::integral_constant<int, 2>());
      default: return f(std::integral_constant<int, -1>());
    }
  }

  // sink(k, v, i0, n) for every function k (the base last, k = Kb) and chunk of inputs [i0, i0 + n): v holds
  // w[i] phi^(D)_k(x[i]) in its first n lanes, and finite values in the others (their x is a centre, w 0)
  template <int D, typename Sink> void values(const T *x, const T *w, Sink &&sink) const
  {
    const RowRange range = recurrent ? row_range(x) : RowRange{false, true};
    for (int64_t i0 = 0; i0 < in; i0 += S::W) {
      const int64_t n = std::min<int64_t>(S::W, in - i0);
      const V cm = S::load(uniform_centres.data() + m * inP + i0);
      const V xv = S::load_partial(x + i0, n, cm);    // padding lanes sit on the middle centre
      const V wv = w ? S::load_partial(w + i0, n, V{}) : V{};
      auto emit_to = [&](int64_t k, V v) __attribute__((always_inline)) { sink(k, v, i0, n); };
      if (range.in_band)    // the flags as template arguments keep the step loops free of branches
        dispatch_flags(corrected, range.may_flush, [&](auto corr, auto flush) {
          recurrence<D, corr(), flush()>(xv, w != nullptr, wv, i0, emit_to);
        });
      else
        direct<D>(xv, w != nullptr, wv, i0, emit_to);
      if (basis.base) base<D>(xv, w != nullptr, wv, emit_to);
    }
  }

  // in_band: no |z_m| beyond band() in the row (a NaN counts as inside, so that it propagates through the
  // recurrence); may_flush: some value of the row may fall below the flush threshold, |z_k| <= |z_m| +
  // steps delta. Integer OR reductions: they vectorise.
  struct RowRange {
    bool in_band, may_flush;
  };
  RowRange row_range(const T *__restrict x) const
  {
    const T *__restrict cm = uniform_centres.data() + m * inP, *__restrict s = inv_width.data();
    const T *__restrict dl = delta.data();
    const T steps = T(std::max(m, Kb - 1 - m)), flush_z2 = T(-0.99) * Basis<T>::flush_arg();
    int outside = 0, deep = 0;
    for (int64_t i = 0; i < in; i++) {
      const T z = (x[i] - cm[i]) * s[i], far = std::abs(z) + steps * dl[i];
      outside |= (z > band()) | (z < -band());
      deep |= !(far * far < flush_z2);
    }
    return {!outside, deep != 0};
  }

 private:
  template <typename F> static void dispatch_flags(bool a, bool b, F f)
  {
    using std::integral_constant;
    auto with_b = [&](auto ca) {
      b ? f(ca, integral_constant<bool, true>()) : f(ca, integral_constant<bool, false>());
    };
    a ? with_b(integral_constant<bool, true>()) : with_b(integral_constant<bool, false>());
  }

  // phi^(D) / phi at z: -2 s z, s^2 (4 z^2 - 2), or (-s)^d H_d(z) (Hermite recurrence, d = deriv)
  template <int D> inline __attribute__((always_inline)) V factor(V z, V s) const
  {
    if (D == 1) return T(-2) * s * z;
    if (D == 2) return s * s * (T(4) * z * z - T(2));
    V h_prev = S::broadcast(T(1)), hd = T(2) * z, scale = -s;    // Hermite H_0, H_1
    for (int64_t j = 1; j < basis.deriv; j++) {
      const V h_next = T(2) * z * hd - T(2 * j) * h_prev;
      h_prev = hd;
      hd = h_next;
      scale *= -s;
    }
    return scale * hd;
  }

  // the chunk's value of function k to the sink: derivative factor at z = (x - c_k) s, weight
  template <int D, typename Emit>
  inline __attribute__((always_inline)) void emit_at(int64_t k, V v, V z, V s, bool weighted, V wv, Emit &&to) const
  {
    if (D != 0) v *= factor<D>(z, s);
    if (weighted) v *= wv;
    to(k, v);
  }
  template <int D, typename Emit>
  inline __attribute__((always_inline)) void emit(int64_t k, V v, V xv, V s, bool weighted, V wv, int64_t i0,
                                                  Emit &&to) const
  {
    emit_at<D>(k, v, (xv - S::load(centres.data() + k * inP + i0)) * s, s, weighted, wv, to);
  }

  // two exps and a division per input, then each step away from the middle centre is two multiplies
  template <int D, bool CORRECTED, bool FLUSH, typename Emit>
  inline __attribute__((always_inline)) void recurrence(V xv, bool weighted, V wv, int64_t i0, Emit &&to) const
  {
    const T tiny = exp_bounded(Basis<T>::flush_arg());    // the direct path's flush threshold
    const V s = S::load(inv_width.data() + i0), d = S::load(delta.data() + i0), dc = S::load(decay.data() + i0);
    const V z = (xv - S::load(uniform_centres.data() + m * inP + i0)) * s;
    const V em = exp_bounded(-z * z);
    // U_m = e^{2 z delta - delta^2} and D_m = e^{-2 z delta - delta^2} = e^{-2 delta^2} / U_m: one exp and a division
    V u = exp_bounded(T(2) * z * d - d * d), dn = dc / u;
    // near-uniform centres: value k times e^a (header), applied to what is stored, not to the running value
    auto corrected_value = [&](int64_t k, V p) {
      if (!CORRECTED) return p;
      const V ek = S::load(offset.data() + k * inP + i0);
      const V a = ek * (T(2) * (xv - S::load(uniform_centres.data() + k * inP + i0)) * s - ek);
      return p * (T(1) + a * (T(1) + a * (T(0.5) + a * T(1.0 / 6))));
    };
    // uniform centres: z_k = z_m - (k - m) delta by steps, for the derivative factor (no centre loads)
    auto put = [&](int64_t k, V pk, V zk) __attribute__((always_inline)) {
      if constexpr (CORRECTED) emit<D>(k, corrected_value(k, pk), xv, s, weighted, wv, i0, to);
      else emit_at<D>(k, pk, zk, s, weighted, wv, to);
    };
    put(m, em, z);
    // moving away from the peak, values only shrink: a running value flushed to 0 stays right (rows
    // whose values all stay far above the threshold skip the test)
    V p = em, zk = z;
    for (int64_t k = m + 1; k < Kb; k++) {
      p *= u;
      if (FLUSH) p = p < tiny ? V{} : p;
      u *= dc;
      zk -= d;
      put(k, p, zk);
    }
    p = em;
    zk = z;
    for (int64_t k = m - 1; k >= 0; k--) {
      p *= dn;
      if (FLUSH) p = p < tiny ? V{} : p;
      dn *= dc;
      zk += d;
      put(k, p, zk);
    }
  }

  // one exp per value (inputs far outside the grid, or centres that are not uniform); below the flush
  // threshold exact zeros (Basis::flushed_exp)
  template <int D, typename Emit> void direct(V xv, bool weighted, V wv, int64_t i0, Emit &&to) const
  {
    const V s = S::load(inv_width.data() + i0);
    for (int64_t k = 0; k < Kb; k++) {
      const V z = (xv - S::load(centres.data() + k * inP + i0)) * s;
      V e = Basis<T>::flushed_exp(-z * z);
      if (weighted) e *= wv;
      to(k, D == 0 ? e : e * factor<D>(z, s));
    }
  }

  // the base function silu^(D)(x) (Basis::silu, on the chunk's vector), function Kb
  template <int D, typename Emit> void base(V xv, bool weighted, V wv, Emit &&to) const
  {
    V v = basis.template silu<D>(xv);
    if (weighted) v *= wv;
    to(Kb, v);
  }
};

}    // namespace kan_mlip
