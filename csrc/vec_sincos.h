// sin and cos of a buffer in straight-line SIMD (simd.h), for the Fourier basis: ATen's (MKL VML) sin
// and cos took half of a Fourier layer's time.
//
//   x = n pi/2 + r,  n = round(x 2/pi),  |r| <= pi/4   (Cody-Waite: pi/2 = P1 + P2 + P3, with n P1 and
//                                                        n P2 exact over the fast path's range)
//   sin r, cos r by minimax polynomials, then the quadrant n mod 4 swaps and negates them.
//   float64: fdlibm's kernel polynomials (__kernel_sin, __kernel_cos), 33-bit parts of pi/2, |x| <= 1e6;
//   float32: cephes' sinf / cosf polynomials and parts of pi/2, |x| <= 8192.
// Other elements (larger, inf, NaN) are recomputed by std::sin / std::cos.
#pragma once

#include "simd.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kan_mlip {

template <typename T> struct SinCosConsts;

template <> struct SinCosConsts<double> {
  using Int = int64_t;
  static constexpr double two_over_pi = 6.36619772367581382433e-01, shifter = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double P1 = 1.57079632673412561417e+00, P2 = 6.07710050630396597660e-11,
                          P3 = 2.02226624879595063154e-21;
  static constexpr double S[6] = {-1.66666666666666324348e-01, 8.33333333332248946124e-03,
                                  -1.98412698298579493134e-04, 2.75573137070700676789e-06,
                                  -2.50507602534068634195e-08, 1.58969099521155010221e-10};
  static constexpr double C[6] = {4.16666666666666019037e-02, -1.38888888888741095749e-03,
                                  2.48015872894767294178e-05, -2.75573143513906633035e-07,
                                  2.08757232129817482790e-09, -1.13596475577881948265e-11};
  static constexpr double max_arg = 1.0e6;    // |n| < 2^20
};

template <> struct SinCosConsts<float> {
  using Int = int32_t;
  static constexpr float two_over_pi = 0.636619772f, shifter = 12582912.0f;    // 1.5 * 2^23
  static constexpr float P1 = 1.5703125f, P2 = 4.837512969970703125e-4f, P3 = 7.54978995489188216e-8f;
  static constexpr float S[3] = {-1.6666654611e-1f, 8.3321608736e-3f, -1.9515295891e-4f};
  static constexpr float C[3] = {4.166664568298827e-2f, -1.388731625493765e-3f, 2.443315711809948e-5f};
  static constexpr float max_arg = 8192.0f;    // n P1 exact (8-bit P1)
};

template <typename T> void sincos_buffer(const T *__restrict x, T *__restrict c, T *__restrict s, int64_t n)
{
  using S = Simd<T>;
  using V = typename S::vec;
  using K = SinCosConsts<T>;
  typedef typename K::Int IV __attribute__((vector_size(SIMD_BYTES)));
  auto chunk = [&](V xv, V &cv, V &sv) {
    const V t = xv * K::two_over_pi + K::shifter;
    const V q = t - K::shifter;
    V r = xv - q * K::P1;
    r = r - q * K::P2;
    r = r - q * K::P3;
    const V z = r * r;
    const V sr = r + r * z * horner(K::S, z);
    const V cr = (T(1) - T(0.5) * z) + z * z * horner(K::C, z);
    IV quadrant;
    std::memcpy(&quadrant, &t, sizeof(V));    // n in the low mantissa bits (two's complement)
    const IV swap = (quadrant & 1) != 0, sin_neg = (quadrant & 2) != 0, cos_neg = ((quadrant + 1) & 2) != 0;
    const V s0 = swap ? cr : sr, c0 = swap ? sr : cr;
    sv = sin_neg ? -s0 : s0;
    cv = cos_neg ? -c0 : c0;
  };
  int64_t j = 0;
  for (; j + S::W <= n; j += S::W) {
    V cv, sv;
    chunk(S::load(x + j), cv, sv);
    S::store(c + j, cv);
    S::store(s + j, sv);
  }
  if (j < n) {
    V cv, sv;
    chunk(S::load_partial(x + j, n - j, V{}), cv, sv);
    S::store_partial(c + j, cv, n - j);
    S::store_partial(s + j, sv, n - j);
  }
  for (int64_t e = 0; e < n; e++)
    if (!(std::abs(x[e]) <= K::max_arg)) {
      c[e] = std::cos(x[e]);
      s[e] = std::sin(x[e]);
    }
}

}    // namespace kan_mlip
