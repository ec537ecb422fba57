// Y (M, N) (+)= A (M, Kd) B (Kd, N) for the KAN block shapes: a few dozen rows, a contraction over
// in * K (hundreds to thousands), and a few dozen outputs.
//
// Why our own: on this project's CPU (AMD EPYC, AVX-512) MKL's dgemm ran these shapes at ~22 GFLOPS
// per core and sgemm at ~85, while this register-blocked kernel runs them at ~54 and ~110.
// The classic micro-kernel: RB rows x NV vectors of outputs stay in registers while the contraction
// index runs; each step loads NV vectors of one B row and broadcasts RB values of A.
//
// Contract: row-major with leading dimensions lda, ldb, ldy; B's rows are read in whole vectors, so
// the buffer behind B must extend to B + (Kd - 1) * ldb + round_up(N, width) elements (lanes past N
// only feed outputs that are never stored).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simd.h"

namespace kan_mlip {

// acc[r][v] = sum_k A[r * lda + k] B[k * ldb + v * W, ... + W): the register tile of small_gemm
template <typename T, int RB, int NV>
inline __attribute__((always_inline)) void tile_product(const T *A, int64_t lda, int64_t Kd, const T *B, int64_t ldb,
                                                        typename Simd<T>::vec (&acc)[RB][NV])
{
  using S = Simd<T>;
  for (int r = 0; r < RB; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = typename S::vec{};
  for (int64_t k = 0; k < Kd; k++) {
    typename S::vec b[NV];
    for (int v = 0; v < NV; v++) b[v] = S::load(B + k * ldb + v * S::W);
    for (int r = 0; r < RB; r++) {
      const T a = A[r * lda + k];
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
}

// rows of a tile: RB * NV accumulators + NV loads fill the registers (broadcasts come from memory)
template <int NV> constexpr int tile_rows() { return std::min(14, (SIMD_REGISTERS - NV) / NV); }

template <int NV, int RB, typename F> inline __attribute__((always_inline)) void row_tiles_from(int64_t M, int64_t r0, F &tile)
{
  if constexpr (RB * NV + NV <= SIMD_REGISTERS)
    for (; r0 + RB <= M; r0 += RB) tile(std::integral_constant<int, RB>(), r0);
  if constexpr (RB > 1) row_tiles_from<NV, RB / 2>(M, r0, tile);
}

// tile(integral_constant<int, RB>, r0) over rows [0, M): tiles of tile_rows<NV>() rows, the rest in tiles
// of 8, 4, 2, 1. A one-row tile has only NV accumulator chains, too few to hide the FMA latency, so the
// tail is kept in as few of them as possible.
template <int NV, typename F> inline __attribute__((always_inline)) void row_tiles(int64_t M, F &&tile)
{
  constexpr int RB = tile_rows<NV>();
  int64_t r0 = 0;
  for (; r0 + RB <= M; r0 += RB) tile(std::integral_constant<int, RB>(), r0);
  row_tiles_from<NV, 8>(M, r0, tile);
}

// panel(integral_constant<int, NV>, o0, n) over columns [0, N): panels of up to 4 vectors, n columns each
template <typename T, typename F> inline void column_panels(int64_t N, F &&panel)
{
  constexpr int64_t W = simd_width<T>();
  for (int64_t o0 = 0; o0 < N; o0 += 4 * W) {
    const int64_t n = std::min<int64_t>(4 * W, N - o0), nv = (n + W - 1) / W;
    if (nv == 4) panel(std::integral_constant<int, 4>(), o0, n);
    else if (nv == 3) panel(std::integral_constant<int, 3>(), o0, n);
    else if (nv == 2) panel(std::integral_constant<int, 2>(), o0, n);
    else panel(std::integral_constant<int, 1>(), o0, n);
  }
}

template <typename T>
void small_gemm(const T *A, int64_t lda, int64_t M, int64_t Kd, const T *B, int64_t ldb, int64_t N, T *Y, int64_t ldy,
                bool accumulate)
{
  column_panels<T>(N, [&](auto nv, int64_t o0, int64_t n) {
    constexpr int NV = decltype(nv)::value;
    row_tiles<NV>(M, [&](auto rb, int64_t r0) __attribute__((always_inline)) {
      constexpr int RB = decltype(rb)::value;
      typename Simd<T>::vec acc[RB][NV];
      tile_product<T, RB, NV>(A + r0 * lda, lda, Kd, B + o0, ldb, acc);
      for (int r = 0; r < RB; r++) {    // the n valid columns of each row
        T out[NV * Simd<T>::W];
        std::memcpy(out, acc[r], sizeof(out));
        T *y = Y + (r0 + r) * ldy + o0;
        if (accumulate)
          for (int64_t o = 0; o < n; o++) y[o] += out[o];
        else
          for (int64_t o = 0; o < n; o++) y[o] = out[o];
      }
    });
  });
}

}    // namespace kan_mlip
