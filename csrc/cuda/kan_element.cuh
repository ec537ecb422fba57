// One (row, input) element of a KAN basis on the GPU: all K functions phi^(d)_k(x) of one input,
// written densely (zeros where a B-spline vanishes). The same math as kan_basis.h, one scalar at a
// time: the CPU evaluates blocks of rows in SIMD, a GPU thread evaluates one element.
//
// Host and device code (KAN_HD): tests/cuda_emulation runs these kernels on the host to check them
// against the CPU ops on machines without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "../kan_kinds.h"

#if defined(__CUDACC__)
#define KAN_HD __host__ __device__ __forceinline__
#else
#define KAN_HD inline
#endif

namespace kan_mlip {
namespace cuda {

using std::cos;    // float and double overloads, on the host and in device code
using std::exp;
using std::fabs;
using std::sin;

constexpr int MAX_K = 64;         // functions per input (the CPU ops' MAX_COUNT)
constexpr int MAX_ORDER = 16;     // B-spline degree
constexpr int MAX_DERIV = 12;     // derivative order of the silu base (sigmoid polynomial coefficients)

// The operands of one op call: raw, contiguous, row-major pointers (set from tensors by
// kan_ops_cuda.cu, or from host arrays by the emulation test).
template <typename T> struct Problem {
  const T *x;         // (N, in)
  const T *coeff;     // (out, in, K)
  const T *weight;    // (N, in) or nullptr
  const T *grad;      // (N, out): the input and coefficient gradients' incoming gradient
  const T *grid;      // bspline knots / gaussian centres (in, grid_stride); fourier frequencies (grid_len,)
  const T *aux;       // gaussian inverse widths (in, aux_stride)
  T *result;          // forward (N, out), input gradient (N, in), coefficient gradient (out, in, K)
  int64_t N, in, out, K;
  int64_t grid_stride, grid_len, aux_stride;
  int kind, order, deriv;
  bool base;          // the last of the K functions is silu(x)
};

template <typename T> KAN_HD T safe_div(T a, T b) { return b != T(0) ? a / b : T(0); }

// n-th derivative of sigmoid: sigmoid^(n) = s (1 - s) Q_{n-1}(s) for n >= 1, with Q_0 = 1 and
// Q_m = (1 - 2 s) Q_{m-1} + s (1 - s) Q_{m-1}'. Evaluated at -|x| (s <= 1/2, 1 - s = 1 / (1 + e^{-|x|})
// without cancellation), then sigmoid^(n)(x) = (-1)^(n+1) sigmoid^(n)(-x). A polynomial in s alone
// loses all digits where s -> 1 (float32, 4th derivative at x = 12: 20% off).
template <typename T> KAN_HD T sigmoid_derivative(T x, int n)
{
  const T e = exp(-fabs(x)), s = e / (T(1) + e), one_minus_s = T(1) / (T(1) + e);    // at -|x|
  if (n == 0) return x > T(0) ? one_minus_s : s;
  T q[MAX_DERIV + 1] = {T(1)};    // coefficients of Q_m in s
  for (int m = 1; m < n; m++) {
    T r[MAX_DERIV + 1] = {};
    for (int j = 0; j < m; j++) {
      r[j] += T(1 + j) * q[j];
      r[j + 1] -= T(2 + j) * q[j];
    }
    for (int j = 0; j <= m; j++) q[j] = r[j];
  }
  T Q = T(0);
  for (int j = n - 1; j >= 0; j--) Q = Q * s + q[j];
  const T v = s * one_minus_s * Q;
  return x > T(0) && n % 2 == 0 ? -v : v;
}

// d-th derivative of silu(x) = x sigmoid(x): x sigmoid^(d) + d sigmoid^(d-1)
template <typename T> KAN_HD T silu_derivative(T x, int d)
{
  return x * sigmoid_derivative(x, d) + (d > 0 ? T(d) * sigmoid_derivative(x, d - 1) : T(0));
}

// knot j of input i's knot vector t, extended by its end spacings on both sides (kan_basis.h: padded)
template <typename T> KAN_HD T knot(const T *t, int64_t len, int64_t j)
{
  if (j < 0) return t[0] + T(j) * (len > 1 ? t[1] - t[0] : T(1));
  if (j >= len) return t[len - 1] + T(j - len + 1) * (len > 1 ? t[len - 1] - t[len - 2] : T(1));
  return t[j];
}

// B-splines of degree `order` on knots t: the order + 1 functions m - order .. m of the interval
// t[m] <= x < t[m + 1] by de Boor's triangle (The NURBS Book A2.2) at degree order - d, raised to the
// d-th derivative by B'_{j,p} = p (B_{j,p-1} / (t_{j+p} - t_j) - B_{j+1,p-1} / (t_{j+p+1} - t_{j+1})).
template <typename T> KAN_HD void bspline_element(const Problem<T> &p, int64_t i, T x, int K, T *v)
{
  for (int k = 0; k < K; k++) v[k] = T(0);
  const T *t = p.grid + i * p.grid_stride;
  const int64_t len = p.grid_len;
  const int order = p.order, q = order - p.deriv;
  if (q < 0 || !(x >= t[0] && x < t[len - 1])) return;    // beyond the degree, outside every support, NaN
  int64_t lo = 0, hi = len - 1;    // binary search: t[lo] <= x < t[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (x >= t[mid] ? lo : hi) = mid;
  }
  const int64_t m = lo;
  T N[MAX_ORDER + 1], left[MAX_ORDER + 1], right[MAX_ORDER + 1];
  N[0] = T(1);
  for (int j = 1; j <= q; j++) {
    left[j] = x - knot(t, len, m + 1 - j);
    right[j] = knot(t, len, m + j) - x;
    T saved = T(0);
    for (int r = 0; r < j; r++) {
      const T temp = safe_div(N[r], right[r + 1] + left[j - r]);
      N[r] = saved + right[r + 1] * temp;
      saved = left[j - r] * temp;
    }
    N[j] = saved;
  }
  for (int deg = q + 1; deg <= order; deg++)    // N[r]: function m - deg + r
    for (int r = deg; r >= 0; r--) {
      const int64_t j = m - deg + r;
      const T a = r >= 1 ? safe_div(N[r - 1], knot(t, len, j + deg) - knot(t, len, j)) : T(0);
      const T b = r < deg ? safe_div(N[r], knot(t, len, j + deg + 1) - knot(t, len, j + 1)) : T(0);
      N[r] = T(deg) * (a - b);
    }
  for (int r = 0; r <= order; r++) {
    const int64_t k = m - order + r;
    if (k >= 0 && k < K) v[k] = N[r];
  }
}

// exp(-z^2), z = (x - c_k) s, and its derivatives (-s)^d H_d(z) exp(-z^2) (physicists' Hermite H_d)
template <typename T> KAN_HD void gaussian_element(const Problem<T> &p, int64_t i, T x, int K, T *v)
{
  const T *c = p.grid + i * p.grid_stride, s = p.aux[i * p.aux_stride];
  T scale = T(1);
  for (int j = 0; j < p.deriv; j++) scale *= -s;
  for (int k = 0; k < K; k++) {
    const T z = (x - c[k]) * s;
    T h0 = T(1), h1 = T(2) * z;    // H_{n-1}, H_n
    for (int n = 1; n < p.deriv; n++) {
      const T h2 = T(2) * z * h1 - T(2 * n) * h0;
      h0 = h1;
      h1 = h2;
    }
    v[k] = scale * (p.deriv == 0 ? T(1) : h1) * exp(-z * z);
  }
}

// [cos(f x), sin(f x)] over frequencies f: the d-th derivatives are f^d (cos, sin)(f x + d pi / 2)
template <typename T> KAN_HD void fourier_element(const Problem<T> &p, T x, int K, T *v)
{
  const int half = K / 2, phase = p.deriv % 4;
  for (int k = 0; k < half; k++) {
    const T f = p.grid[k];
    T fd = T(1);
    for (int j = 0; j < p.deriv; j++) fd *= f;
    const T c = cos(f * x), s = sin(f * x);
    v[k] = fd * (phase == 0 ? c : phase == 1 ? -s : phase == 2 ? -c : s);
    v[half + k] = fd * (phase == 0 ? s : phase == 1 ? c : phase == 2 ? -s : -c);
  }
}

// v[0..K) = phi^(d)_k(x) of input i, the silu base as the last function when the problem has one
template <typename T> KAN_HD void eval_element(const Problem<T> &p, int64_t i, T x, T *v)
{
  const int K = int(p.K) - (p.base ? 1 : 0);
  switch (p.kind) {
    case BSPLINE: bspline_element(p, i, x, K, v); break;
    case GAUSSIAN: gaussian_element(p, i, x, K, v); break;
    default: fourier_element(p, x, K, v);
  }
  if (p.base) v[K] = silu_derivative(x, p.deriv);
}

}    // namespace cuda
}    // namespace kan_mlip
