// Explicit SIMD through GCC/Clang vector extensions, for loops the auto-vectoriser leaves scalar
// (several exps, or register-resident state across an inner loop): one `Vec<T>` holds a full
// register of T, arithmetic on it is element-wise, and scalars broadcast in mixed expressions.
#pragma once

#include <cstdint>
#include <cstring>

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

}    // namespace kan_mlip
