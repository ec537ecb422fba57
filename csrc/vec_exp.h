// exp(t) in straight-line arithmetic, so that a loop calling it vectorises (the compiler cannot
// vectorise std::exp, and a library exp over a buffer costs a separate pass through memory).
//
//   t = n ln2 + r,  n = round(t / ln2),  |r| <= ln2 / 2     (Cody-Waite: ln2 = hi + lo, n * hi exact)
//   exp(t) = 2^n exp(r),  exp(r) by its Taylor polynomial: degree 13 (float64) / 7 (float32), whose
//   truncation error r^14/14! ~ 4e-18 (r^8/8! ~ 5e-9) is below half an ulp
//   2^n: the exponent field written directly; n comes out of the "round by adding 1.5 * 2^52" trick
//
// Valid for t in [-700, 700] (float64) and [-85, 85] (float32): 2^n stays a normal number. Callers clamp
// to a flush threshold inside that range (Basis::flush_arg) or bound their arguments (gaussian_rows.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "simd.h"

namespace kan_mlip {

template <typename T> struct ExpConsts;

template <> struct ExpConsts<double> {
  using Int = uint64_t;
  static constexpr double log2e = 1.4426950408889634, shifter = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double ln2_hi = 0.6931471803691238, ln2_lo = 1.9082149292705877e-10;
  static constexpr int mantissa_bits = 52;
  static constexpr Int bias = 1023;
  static constexpr double inv_factorial[14] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                                1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                                1.0 / 479001600, 1.0 / 6227020800};
};

template <> struct ExpConsts<float> {
  using Int = uint32_t;
  static constexpr float log2e = 1.44269504f, shifter = 12582912.0f;    // 1.5 * 2^23
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int mantissa_bits = 23;
  static constexpr Int bias = 127;
  static constexpr float inv_factorial[8] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
};

// Scalar T or a SIMD vector of T (simd.h): the element type, and the integer type of the same shape
template <typename V, bool = std::is_arithmetic_v<V>> struct ExpTypes {
  using T = V;
  using Int = typename ExpConsts<T>::Int;
};
template <typename V> struct ExpTypes<V, false> {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;
  typedef typename ExpConsts<T>::Int Int __attribute__((vector_size(sizeof(V))));
};

// on a scalar, or element-wise on a SIMD vector (for loops written with explicit vectors)
template <typename V> inline __attribute__((always_inline)) V exp_bounded(V t)
{
  using E = ExpConsts<typename ExpTypes<V>::T>;
  typename ExpTypes<V>::Int bits;
  const V shifted = t * E::log2e + E::shifter;    // n sits in the low mantissa bits
  const V n = shifted - E::shifter;
  V r = t - n * E::ln2_hi;
  r = r - n * E::ln2_lo;
  const V p = horner(E::inv_factorial, r);    // the Taylor polynomial
  std::memcpy(&bits, &shifted, sizeof(V));
  bits = (bits + E::bias) << E::mantissa_bits;    // high bits of the shifter overflow away
  V scale;
  std::memcpy(&scale, &bits, sizeof(V));
  return p * scale;
}

}    // namespace kan_mlip
