// Explicit SIMD through GCC/Clang vector extensions, for loops the auto-vectoriser leaves scalar
// (several exps, or register-resident state across an inner loop): one `Vec<T>` holds a full
// register of T, arithmetic on it is element-wise, and scalars broadcast in mixed expressions.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace kan_mlip {

#if defined(__AVX512F__)
constexpr int SIMD_BYTES = 64, SIMD_REGISTERS = 32;
#elif defined(__AVX__)
constexpr int SIMD_BYTES = 32, SIMD_REGISTERS = 16;
#else
constexpr int SIMD_BYTES = 16, SIMD_REGISTERS = 16;
#endif

template <typename T> constexpr int64_t simd_width() { return SIMD_BYTES / sizeof(T); }

// round n up to whole vectors (row strides of padded operands)
template <typename T> int64_t simd_round_up(int64_t n) { return (n + simd_width<T>() - 1) / simd_width<T>() * simd_width<T>(); }

// BYTES > SIMD_BYTES: one value spans several registers, and each operation on it is that many
// independent instructions (an unroll that hides the latency of long dependency chains, e.g. exp)
template <typename T, int BYTES = SIMD_BYTES> struct Simd {
  typedef T vec __attribute__((vector_size(BYTES)));
  static constexpr int W = BYTES / sizeof(T);
  // integers of T's width, W of them: what comparisons of vecs give and what __builtin_shuffle indexes by
  // (the base type must be dependent: GCC drops vector_size on a member typedef of a fixed type)
  using lane = typename std::conditional<sizeof(T) == 8, int64_t, int32_t>::type;
  typedef lane lanes __attribute__((vector_size(BYTES)));

  static inline __attribute__((always_inline)) vec load(const T *p)
  {
    vec v;
    std::memcpy(&v, p, sizeof(vec));
    return v;
  }
  static inline __attribute__((always_inline)) void store(T *p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
  static inline __attribute__((always_inline)) vec broadcast(T a) { return vec{} + a; }

  // the first n lanes from p, the others from fill (n < W: the tail of a row)
  static inline vec load_partial(const T *p, int64_t n, vec fill)
  {
    if (n == W) return load(p);
    T lanes[W];
    store(lanes, fill);
    for (int64_t j = 0; j < n; j++) lanes[j] = p[j];
    return load(lanes);
  }
  static inline void store_partial(T *p, vec v, int64_t n)
  {
    if (n == W) return store(p, v);
    T lanes[W];
    store(lanes, v);
    for (int64_t j = 0; j < n; j++) p[j] = lanes[j];
  }
};

// 32-bit integer lanes of a full SIMD vector of doubles (Int32HalfVec) or floats (Int32Vec), and the one
// of T's (not dependent types: GCC drops vector_size on a typedef that depends on a template parameter)
typedef int32_t Int32HalfVec __attribute__((vector_size(SIMD_BYTES / 2)));
typedef int32_t Int32Vec __attribute__((vector_size(SIMD_BYTES)));
template <typename T> using Int32Lanes = typename std::conditional<sizeof(T) == 8, Int32HalfVec, Int32Vec>::type;

// z[i] += a sum_k c[k * in + i] f[k * in + i]: a k-major row contracted over k (restrict parameters: the
// loop vectorises over i)
template <typename T>
inline void k_major_axpy(T a, const T *__restrict c, const T *__restrict f, int64_t in, int64_t K, T *__restrict z)
{
  for (int64_t k = 0; k < K; k++)
    for (int64_t i = 0; i < in; i++) z[i] += a * c[k * in + i] * f[k * in + i];
}

// p(z) = c[0] + z (c[1] + z (...)) on a scalar or a SIMD vector, one multiply-add per degree, unrolled at
// compile time: a loop left inside would keep a caller's loop from vectorising
template <typename T, int N, int J = 0, typename V> inline __attribute__((always_inline)) V horner(const T (&c)[N], V z)
{
  if constexpr (J == N - 1)
    return V{} + c[J];
  else
    return horner<T, N, J + 1>(c, z) * z + c[J];
}

}    // namespace kan_mlip
