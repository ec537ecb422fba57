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

#include "simd.h"

namespace kan_mlip {

template <typename T, int RB, int NV>
inline void gemm_tile(const T *A, int64_t lda, int64_t Kd, const T *B, int64_t ldb, int64_t n_valid, T *Y,
                      int64_t ldy, bool accumulate, int64_t rows)
{
  constexpr int W = SIMD_BYTES / sizeof(T);
  typedef T vec __attribute__((vector_size(SIMD_BYTES)));
  vec acc[RB][NV];
  for (int r = 0; r < RB; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vec{};
  for (int64_t k = 0; k < Kd; k++) {
    vec b[NV];
    for (int v = 0; v < NV; v++) std::memcpy(&b[v], B + k * ldb + v * W, sizeof(vec));
    for (int r = 0; r < RB; r++) {
      const T a = A[r * lda + k];
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < rows; r++) {
    T out[NV * W];
    std::memcpy(out, acc[r], sizeof(out));
    T *y = Y + r * ldy;
    if (accumulate)
      for (int64_t o = 0; o < n_valid; o++) y[o] += out[o];
    else
      for (int64_t o = 0; o < n_valid; o++) y[o] = out[o];
  }
}

// rows of the tile: RB * NV accumulators + NV loads fill the registers (broadcasts come from memory)
template <int NV> constexpr int tile_rows() { return std::min(14, (SIMD_REGISTERS - NV) / NV); }

template <typename T, int NV, int RB>
inline void gemm_tail(const T *A, int64_t lda, int64_t M, int64_t Kd, const T *B, int64_t ldb, int64_t n_valid, T *Y,
                      int64_t ldy, bool accumulate, int64_t r0)
{
  if constexpr (RB * NV + NV <= SIMD_REGISTERS)
    for (; r0 + RB <= M; r0 += RB)
      gemm_tile<T, RB, NV>(A + r0 * lda, lda, Kd, B, ldb, n_valid, Y + r0 * ldy, ldy, accumulate, RB);
  if constexpr (RB > 1) gemm_tail<T, NV, RB / 2>(A, lda, M, Kd, B, ldb, n_valid, Y, ldy, accumulate, r0);
}

template <typename T, int NV>
void gemm_columns(const T *A, int64_t lda, int64_t M, int64_t Kd, const T *B, int64_t ldb, int64_t n_valid, T *Y,
                  int64_t ldy, bool accumulate)
{
  constexpr int RB = tile_rows<NV>();
  int64_t r0 = 0;
  for (; r0 + RB <= M; r0 += RB)
    gemm_tile<T, RB, NV>(A + r0 * lda, lda, Kd, B, ldb, n_valid, Y + r0 * ldy, ldy, accumulate, RB);
  // remaining rows in tiles of 8, 4, 2, 1: a one-row tile has only NV accumulator chains, too few to
  // hide the FMA latency, so the tail is kept in as few of them as possible
  gemm_tail<T, NV, 8>(A, lda, M, Kd, B, ldb, n_valid, Y, ldy, accumulate, r0);
}

template <typename T>
void small_gemm(const T *A, int64_t lda, int64_t M, int64_t Kd, const T *B, int64_t ldb, int64_t N, T *Y, int64_t ldy,
                bool accumulate)
{
  constexpr int64_t W = simd_width<T>();
  for (int64_t o0 = 0; o0 < N; o0 += 4 * W) {
    const int64_t n = std::min<int64_t>(4 * W, N - o0), nv = (n + W - 1) / W;
    const T *b = B + o0;
    T *y = Y + o0;
    if (nv == 4) gemm_columns<T, 4>(A, lda, M, Kd, b, ldb, n, y, ldy, accumulate);
    else if (nv == 3) gemm_columns<T, 3>(A, lda, M, Kd, b, ldb, n, y, ldy, accumulate);
    else if (nv == 2) gemm_columns<T, 2>(A, lda, M, Kd, b, ldb, n, y, ldy, accumulate);
    else gemm_columns<T, 1>(A, lda, M, Kd, b, ldb, n, y, ldy, accumulate);
  }
}

// The input gradient of a k-major block (columns col = k * in + i) without its (rows, in * K) product:
//   z[r, i] += sum_k f[r, k*in + i] sum_o g[r, o] c[o, k*in + i]
// Each tile's GEMM result is multiplied by f and summed into z in its epilogue. Needs in % W == 0, so
// that a vector of columns never straddles two k; z (rows, ldz) must be zeroed by the caller.
template <typename T, int RB, int NV>
inline void grad_tile(const T *g, int64_t ldg, int64_t out, const T *c, int64_t ldc, const T *f, int64_t ldf,
                      int64_t col0, int64_t in, T *z, int64_t ldz)
{
  using S = Simd<T>;
  using vec = typename S::vec;
  vec acc[RB][NV];
  for (int r = 0; r < RB; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vec{};
  for (int64_t o = 0; o < out; o++) {
    vec b[NV];
    for (int v = 0; v < NV; v++) b[v] = S::load(c + o * ldc + col0 + v * S::W);
    for (int r = 0; r < RB; r++) {
      const T a = g[r * ldg + o];
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  for (int v = 0; v < NV; v++) {
    const int64_t col = col0 + v * S::W, i = col % in;
    for (int r = 0; r < RB; r++) {
      T *zr = z + r * ldz + i;
      S::store(zr, S::load(zr) + acc[r][v] * S::load(f + r * ldf + col));
    }
  }
}

template <typename T, int NV, int RB>
inline void grad_rows(const T *g, int64_t ldg, int64_t M, int64_t out, const T *c, int64_t ldc, const T *f,
                      int64_t ldf, int64_t col0, int64_t in, T *z, int64_t ldz, int64_t r0)
{
  if constexpr (RB * NV + NV <= SIMD_REGISTERS)
    for (; r0 + RB <= M; r0 += RB)
      grad_tile<T, RB, NV>(g + r0 * ldg, ldg, out, c, ldc, f + r0 * ldf, ldf, col0, in, z + r0 * ldz, ldz);
  if constexpr (RB > 1) grad_rows<T, NV, RB / 2>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz, r0);
}

template <typename T, int NV>
void grad_panel(const T *g, int64_t ldg, int64_t M, int64_t out, const T *c, int64_t ldc, const T *f, int64_t ldf,
                int64_t col0, int64_t in, T *z, int64_t ldz)
{
  constexpr int RB = tile_rows<NV>();
  int64_t r0 = 0;
  for (; r0 + RB <= M; r0 += RB)
    grad_tile<T, RB, NV>(g + r0 * ldg, ldg, out, c, ldc, f + r0 * ldf, ldf, col0, in, z + r0 * ldz, ldz);
  grad_rows<T, NV, 8>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz, r0);
}

// g (M, out), c (out, Kd = in * K), f (M, Kd), z (M, in); in % simd_width<T>() == 0
template <typename T>
void small_gemm_k_reduce(const T *g, int64_t ldg, int64_t M, int64_t out, const T *c, int64_t ldc, const T *f,
                         int64_t ldf, int64_t Kd, int64_t in, T *z, int64_t ldz)
{
  constexpr int64_t W = simd_width<T>();
  for (int64_t col0 = 0; col0 < Kd; col0 += 4 * W) {
    const int64_t nv = std::min<int64_t>(4, (Kd - col0) / W);
    if (nv == 4) grad_panel<T, 4>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz);
    else if (nv == 3) grad_panel<T, 3>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz);
    else if (nv == 2) grad_panel<T, 2>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz);
    else grad_panel<T, 1>(g, ldg, M, out, c, ldc, f, ldf, col0, in, z, ldz);
  }
}

}    // namespace kan_mlip
