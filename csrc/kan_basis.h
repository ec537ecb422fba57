// Univariate KAN bases and their derivatives of any order, evaluated for one scalar input.
//
//   bspline  : B-splines of degree `order` on the knots t[0..nk); K = nk - order - 1 functions.
//              d-th derivative from the degree-(order-d) splines by the derivative recursion
//              B'_{m,p} = p (B_{m,p-1} / (t_{m+p} - t_m) - B_{m+1,p-1} / (t_{m+p+1} - t_{m+1})).
//   gaussian : exp(-z^2), z = (x - c_k) s;  d^d/dx^d = (-s)^d H_d(z) exp(-z^2)  (Hermite H_d).
//   fourier  : [cos(f x), sin(f x)] over frequencies f;  d-th derivative = f^d (cos|sin)(f x + d pi/2).
#pragma once

#include <cmath>
#include <cstdint>

namespace kan_mlip {

enum BasisKind : int64_t { BSPLINE = 0, GAUSSIAN = 1, FOURIER = 2 };

template <typename T>
inline T safe_inv(T d) { return d != T(0) ? T(1) / d : T(0); }    // 0/0 terms of Cox-de Boor are 0

// out[0..K) = d^deriv/dx^deriv phi_k(x); `work` holds at least nk values (bspline only).
template <typename T>
inline void eval_basis(int64_t kind, T x, const T *grid, int64_t grid_len, const T *aux, int64_t order,
                       int64_t deriv, int64_t K, T *out, T *work)
{
  if (kind == BSPLINE) {
    const T *t = grid;
    const int64_t q = order - deriv;    // degree of the splines the derivative is built from
    if (q < 0) {
      for (int64_t k = 0; k < K; k++) out[k] = T(0);
      return;
    }
    int64_t count = grid_len - 1;
    for (int64_t m = 0; m < count; m++) work[m] = (t[m] <= x && x < t[m + 1]) ? T(1) : T(0);
    for (int64_t p = 1; p <= q; p++) {
      for (int64_t m = 0; m < count - 1; m++)
        work[m] = (x - t[m]) * safe_inv(t[m + p] - t[m]) * work[m] +
            (t[m + p + 1] - x) * safe_inv(t[m + p + 1] - t[m + 1]) * work[m + 1];
      count--;
    }
    for (int64_t p = q + 1; p <= order; p++) {
      for (int64_t m = 0; m < count - 1; m++)
        work[m] = T(p) * (work[m] * safe_inv(t[m + p] - t[m]) - work[m + 1] * safe_inv(t[m + p + 1] - t[m + 1]));
      count--;
    }
    for (int64_t k = 0; k < K; k++) out[k] = work[k];
  } else if (kind == GAUSSIAN) {
    const T s = aux[0];
    T scale = T(1);
    for (int64_t j = 0; j < deriv; j++) scale *= -s;
    for (int64_t k = 0; k < K; k++) {
      const T z = (x - grid[k]) * s;
      T h_prev = T(1), h = T(1);    // H_0
      if (deriv >= 1) h = T(2) * z;
      for (int64_t n = 1; n < deriv; n++) {
        const T h_next = T(2) * z * h - T(2 * n) * h_prev;
        h_prev = h;
        h = h_next;
      }
      out[k] = scale * h * std::exp(-z * z);
    }
  } else {    // FOURIER: grid holds the K/2 frequencies
    const int64_t half = K / 2;
    const int64_t phase = deriv % 4;
    for (int64_t k = 0; k < half; k++) {
      const T f = grid[k];
      T fd = T(1);
      for (int64_t j = 0; j < deriv; j++) fd *= f;
      const T c = std::cos(f * x), s = std::sin(f * x);
      // cos(a + d pi/2), sin(a + d pi/2)
      const T cd[4] = {c, -s, -c, s};
      const T sd[4] = {s, c, -s, -c};
      out[k] = fd * cd[phase];
      out[half + k] = fd * sd[phase];
    }
  }
}

}    // namespace kan_mlip
