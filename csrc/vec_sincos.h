// sin and cos of a buffer of float64 values in straight-line SIMD (simd.h), for the Fourier basis:
// ATen's (MKL VML) sin and cos took half of a Fourier layer's time.
//
//   x = n pi/2 + r,  n = round(x 2/pi),  |r| <= pi/4   (Cody-Waite: pi/2 = P1 + P2 + P3, 33 + 33 + 53 bits;
//                                                        n P1 and n P2 are exact for |n| < 2^20)
//   sin r, cos r by fdlibm's kernel polynomials (__kernel_sin, __kernel_cos: error below one ulp),
//   then the quadrant n mod 4 swaps and negates them.
// Valid for |x| <= max_arg(); other elements (larger, inf, NaN) are recomputed by std::sin / std::cos.
#pragma once

#include "simd.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kan_mlip {

struct SinCos64 {
  static constexpr double two_over_pi = 6.36619772367581382433e-01, shifter = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double P1 = 1.57079632673412561417e+00, P2 = 6.07710050630396597660e-11,
                          P3 = 2.02226624879595063154e-21;
  static constexpr double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
                          S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
                          S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  static constexpr double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
                          C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
                          C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  static constexpr double max_arg() { return 1.0e6; }    // |n| < 2^20
};

inline void sincos_buffer(const double *__restrict x, double *__restrict c, double *__restrict s, int64_t n)
{
  using S = Simd<double>;
  using V = S::vec;
  using K = SinCos64;
  typedef int64_t IV __attribute__((vector_size(SIMD_BYTES)));
  int64_t j = 0;
  auto chunk = [&](V xv, V &cv, V &sv) {
    const V t = xv * K::two_over_pi + K::shifter;
    const V q = t - K::shifter;
    V r = xv - q * K::P1;
    r = r - q * K::P2;
    r = r - q * K::P3;
    const V z = r * r;
    const V sr = r + r * z * (K::S1 + z * (K::S2 + z * (K::S3 + z * (K::S4 + z * (K::S5 + z * K::S6)))));
    const V cr = (1.0 - 0.5 * z) + z * z * (K::C1 + z * (K::C2 + z * (K::C3 + z * (K::C4 + z * (K::C5 + z * K::C6)))));
    IV quadrant;
    std::memcpy(&quadrant, &t, sizeof(V));    // n in the low mantissa bits (two's complement)
    const IV swap = (quadrant & 1) != 0, sin_neg = (quadrant & 2) != 0, cos_neg = ((quadrant + 1) & 2) != 0;
    const V s0 = swap ? cr : sr, c0 = swap ? sr : cr;
    sv = sin_neg ? -s0 : s0;
    cv = cos_neg ? -c0 : c0;
  };
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
    if (!(std::abs(x[e]) <= K::max_arg())) {
      c[e] = std::cos(x[e]);
      s[e] = std::sin(x[e]);
    }
}

}    // namespace kan_mlip
