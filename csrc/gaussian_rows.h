// Gaussian basis values for one row of inputs, all functions at once, k-major:
//   ev[k * in + i] = w[i] phi^(D)_k(x[i])   (k < Kb),   ev[Kb * in + i] = w[i] silu^(D)(x[i])   (BASE_SILU)
// Every loop runs over the inputs i, so it is vertical SIMD. The dense block of the GEMM path (wide
// outputs) takes its rows from here; narrow outputs keep one exp per value fused into their
// accumulation (gaussian_narrow.h), where these separate passes measured slower.
//
// Uniform centres (c_k = c_0 + k Delta, FastKAN's linspace) allow a product recurrence instead of one exp
// per value. With z_k = (x - c_k) s and delta = Delta s, z_{k+1} = z_k - delta, so
//   phi_{k+1} = phi_k U_k,  U_k = e^{2 z_k delta - delta^2},  U_{k+1} = U_k e^{-2 delta^2}
//   phi_{k-1} = phi_k D_k,  D_k = e^{-2 z_k delta - delta^2}, D_{k-1} = D_k e^{-2 delta^2}
// Starting at the middle centre m, three exps per input (phi_m, U_m, D_m) give all Kb values; rounding
// grows by about an ulp per step, at most Kb / 2 steps. Derivatives are phi_k times a polynomial in
// z_k (Basis::gaussian_factor). The recurrence needs phi_m to be a normal number and the ratios to stay
// finite: rows with some |z_m| beyond band() (inputs far outside the grid) take one exp per value.
//
// Nearly uniform centres, e.g. a float32 linspace cast to float64 (off by ~1e-8), run the recurrence on
// the uniform centres cbar_k of the same ends and correct each value: with e_k = (c_k - cbar_k) s and
// zbar_k = (x - cbar_k) s, phi_k = e^{-zbar_k^2} e^a, a = e_k (2 zbar_k - e_k), and e^a = 1 + a + a^2/2
// + a^3/6 to within a^4/24 (|e_k| <= 1e-6 and |zbar_k| < 22 give |a| < 5e-5: below 3e-19).
#pragma once

#include "kan_basis.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace kan_mlip {

template <typename T> struct GaussianRows {
  const Basis<T> &basis;
  int64_t in, K, Kb, m;
  std::vector<T> centres, uniform_centres, offset;    // (Kb, in): c_k, cbar_k, e_k = (c_k - cbar_k) s
  std::vector<T> inv_width, delta, decay;             // per input: s, delta, e^{-2 delta^2}
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
      : basis(b), in(b.in), K(b.K), Kb(b.K - b.base), m((b.K - b.base - 1) / 2), centres(Kb * in),
        uniform_centres(Kb * in), offset(Kb * in), inv_width(in), delta(in), decay(in), recurrent(Kb >= 3)
  {
    for (int64_t i = 0; i < in; i++) {
      const T *c = b.grid + i * b.grid_stride, s = b.aux[i * b.aux_stride];
      inv_width[i] = s;
      const T h = Kb > 1 ? (c[Kb - 1] - c[0]) / T(Kb - 1) : T(0);
      for (int64_t k = 0; k < Kb; k++) {
        centres[k * in + i] = c[k];
        uniform_centres[k * in + i] = c[0] + T(k) * h;
        offset[k * in + i] = (c[k] - uniform_centres[k * in + i]) * s;
        recurrent = recurrent && std::abs(offset[k * in + i]) <= max_offset();
        corrected = corrected || std::abs(offset[k * in + i]) > negligible_offset();
      }
      delta[i] = h * s;
      decay[i] = T(std::exp(-2.0 * double(delta[i]) * double(delta[i])));    // rounded once: it compounds
      // the ratios' exponents over all steps: |2 z delta| + delta^2 (1 + 2 steps)
      const T d = delta[i], steps = T(Kb - m);
      recurrent = recurrent && h > T(0) && s > T(0) &&
                  T(2) * band() * d + d * d * (T(1) + T(2) * steps) <= ratio_arg_limit();
    }
  }

  // one row: x[i], optional w[i], ev (K * in); scratch: 4 * in values
  void row(const T *x, const T *w, T *ev, T *scratch) const
  {
    switch (basis.deriv) {
      case 0: return values<0>(x, w, ev, scratch);
      case 1: return values<1>(x, w, ev, scratch);
      case 2: return values<2>(x, w, ev, scratch);
      default: return values<-1>(x, w, ev, scratch);
    }
  }

  template <int D> void values(const T *x, const T *w, T *ev, T *scratch) const
  {
    const T *cm = uniform_centres.data() + m * in, *s = inv_width.data();
    bool in_band = recurrent;
    if (in_band) {
      T zmax = T(0);
      for (int64_t i = 0; i < in; i++) zmax = std::max(zmax, std::abs((x[i] - cm[i]) * s[i]));
      in_band = zmax <= band();
    }
    if (in_band)
      recurrence<D>(x, ev, scratch);
    else
      for (int64_t k = 0; k < Kb; k++) {
        const T *c = centres.data() + k * in;
        T *e = ev + k * in;
        for (int64_t i = 0; i < in; i++) e[i] = basis.template gaussian<D>(x[i], c[i], s[i]);
      }
    if (basis.base) {
      T *e = ev + Kb * in;
      for (int64_t i = 0; i < in; i++) e[i] = basis.template silu<D>(x[i]);
    }
    if (w)
      for (int64_t k = 0; k < K; k++) {
        T *e = ev + k * in;
        for (int64_t i = 0; i < in; i++) e[i] *= w[i];
      }
  }

 private:
  // Short passes over one row, which stays in L1: fused into fewer loops, the compiler left them scalar
  template <int D> void recurrence(const T *x, T *ev, T *scratch) const
  {
    // disjoint buffers: without __restrict the compiler's alias checks give up and the loops stay scalar
    const T *__restrict cm = uniform_centres.data() + m * in, *__restrict s = inv_width.data();
    const T *__restrict dl = delta.data(), *__restrict dc = decay.data();
    const T tiny = exp_bounded(Basis<T>::flush_arg());    // the direct path's flush threshold
    T *__restrict pu = scratch, *__restrict u = scratch + in, *__restrict pd = scratch + 2 * in;
    T *__restrict dn = scratch + 3 * in, *__restrict em = ev + m * in;
    // one exp per loop: with several, the compiler leaves the loop scalar
    for (int64_t i = 0; i < in; i++) {
      const T z = (x[i] - cm[i]) * s[i];
      em[i] = exp_bounded(-z * z);
    }
    for (int64_t i = 0; i < in; i++) {
      const T z = (x[i] - cm[i]) * s[i], d = dl[i];
      u[i] = exp_bounded(T(2) * z * d - d * d);
    }
    for (int64_t i = 0; i < in; i++) {
      const T z = (x[i] - cm[i]) * s[i], d = dl[i];
      dn[i] = exp_bounded(T(-2) * z * d - d * d);
    }
    for (int64_t i = 0; i < in; i++) pu[i] = pd[i] = em[i];
    // moving away from the peak, values only shrink: a running value flushed to 0 stays right
    for (int64_t k = m + 1; k < Kb; k++) {
      T *__restrict e = ev + k * in;
      for (int64_t i = 0; i < in; i++) {
        const T p = pu[i] * u[i];
        pu[i] = e[i] = p < tiny ? T(0) : p;
        u[i] *= dc[i];
      }
    }
    for (int64_t k = m - 1; k >= 0; k--) {
      T *__restrict e = ev + k * in;
      for (int64_t i = 0; i < in; i++) {
        const T p = pd[i] * dn[i];
        pd[i] = e[i] = p < tiny ? T(0) : p;
        dn[i] *= dc[i];
      }
    }
    if (corrected)
      for (int64_t k = 0; k < Kb; k++) {
        const T *__restrict cb = uniform_centres.data() + k * in, *__restrict ek = offset.data() + k * in;
        T *__restrict e = ev + k * in;
        for (int64_t i = 0; i < in; i++) {
          const T a = ek[i] * (T(2) * (x[i] - cb[i]) * s[i] - ek[i]);
          e[i] *= T(1) + a * (T(1) + a * (T(0.5) + a * T(1.0 / 6)));
        }
      }
    if (D == 0) return;
    for (int64_t k = 0; k < Kb; k++) {
      const T *__restrict c = centres.data() + k * in;
      T *__restrict e = ev + k * in;
      for (int64_t i = 0; i < in; i++) e[i] *= basis.template gaussian_factor<D>((x[i] - c[i]) * s[i], s[i]);
    }
  }
};

}    // namespace kan_mlip
