// Fourier KAN contractions with one output (an energy readout), fused end to end: the harmonics of a chunk
// of W inputs come by angle addition in registers and are contracted at once, with no basis block
//   forward     y[n]    = sum_i w[n, i] sum_k (A[k, i] cos(f x) + B[k, i] sin(f x)),  x = x[n, i], f = k + 1
//   input grad  z[n, i] = g[n] sum_k (A[k, i] cos(f x) + B[k, i] sin(f x))
// The d-th derivative of the basis, f^d (cos, sin)(f x + d pi/2), is a fixed mix of the cos and sin
// coefficients a, b of each frequency, folded into A and B. Harmonic frequencies (1, 2, ..., F) and no silu
// base (the op contracts that separately for Fourier layers), as Basis::fourier_rows.
#pragma once

#include "kan_basis.h"
#include "simd.h"
#include "vec_sincos.h"

#include <algorithm>
#include <vector>

namespace kan_mlip {

template <typename T> struct FourierNarrow {
  using S = Simd<T>;
  using V = typename S::vec;
  static constexpr int W = S::W;
  int64_t in, inP, F;
  std::vector<T> A, B;    // (F, inP), zero in the padding lanes

  static bool takes(const Basis<T> &b, int64_t out)
  {
    return b.kind == FOURIER && b.fourier_harmonic && !b.base && out == 1 && b.K % 2 == 0;
  }

  // c: coefficients (1, in, 2F) contiguous, cos(f x) in column k, sin(f x) in column F + k
  FourierNarrow(const Basis<T> &b, const T *c) : in(b.in), inP(simd_round_up<T>(b.in)), F(b.K / 2), A(F * inP), B(F * inP)
  {
    T pc, ps;    // a cos(f x) + b sin(f x) -> f^d ((a pc - b ps) cos + (a ps + b pc) sin)
    b.fourier_phase(pc, ps);
    for (int64_t k = 0; k < F; k++) {
      const T fd = b.derivative_scale(T(k + 1));
      for (int64_t i = 0; i < in; i++) {
        const T a = c[i * 2 * F + k], s = c[i * 2 * F + F + k];
        A[k * inP + i] = fd * (a * pc - s * ps);
        B[k * inP + i] = fd * (a * ps + s * pc);
      }
    }
  }

  // sum_k (A cos(f x) + B sin(f x)) for the inputs [i0, i0 + W) of one row, from c1 = cos x, s1 = sin x
  inline __attribute__((always_inline)) V chunk(V c1, V s1, int64_t i0) const
  {
    V ck = c1, sk = s1;
    V t = S::load(A.data() + i0) * ck + S::load(B.data() + i0) * sk;
    for (int64_t k = 1; k < F; k++) {
      const V cn = ck * c1 - sk * s1;    // angle addition, as Basis::rotate
      sk = sk * c1 + ck * s1;
      ck = cn;
      t += S::load(A.data() + k * inP + i0) * ck + S::load(B.data() + k * inP + i0) * sk;
    }
    return t;
  }

  // rows [n0, n1), R at a time (their cos and sin first: sc, ss scratch of R * in):
  // y[n] (forward, optional weights w) or z[n, :] (GRAD: the input gradient, output gradient g[n])
  template <bool GRAD>
  void run(const T *x, const T *w, const T *g, int64_t n0, int64_t n1, int64_t R, T *sc, T *ss, T *out) const
  {
    for (int64_t b0 = n0; b0 < n1; b0 += R) {
      const int64_t rows = std::min(R, n1 - b0);
      sincos_buffer(x + b0 * in, sc, ss, rows * in);
      for (int64_t r = 0; r < rows; r++) {
        const int64_t n = b0 + r;
        V acc{};
        for (int64_t i0 = 0; i0 < in; i0 += W) {
          const int64_t len = std::min<int64_t>(W, in - i0);
          const V t = chunk(S::load_partial(sc + r * in + i0, len, V{}), S::load_partial(ss + r * in + i0, len, V{}), i0);
          if constexpr (GRAD)
            S::store_partial(out + n * in + i0, t * g[n], len);
          else
            acc += w ? t * S::load_partial(w + n * in + i0, len, V{}) : t;
        }
        if constexpr (!GRAD) {
          T sum = T(0);
          for (int l = 0; l < W; l++) sum += acc[l];
          out[n] = sum;
        }
      }
    }
  }
};

}    // namespace kan_mlip
