// Wide B-spline contractions (out >= WIDE_MIN_OUT, e.g. the first layer of a readout) that use only the
// order + 1 nonzero functions of each (row, input), and the silu base, instead of a GEMM over the dense
// (rows, in * K) block, half of whose entries are zeros for efficient-kan's cubic default (K = 8):
//   y[r, :]  += sum_i [ sum_j V_j(r, i) c[i, first(r, i) + j, :] + s(r, i) wb[i, :] ]
//   z[r, i]   = g[r, :] . [ sum_j V_j(r, i) c[i, first(r, i) + j, :] + s(r, i) wb[i, :] ]
// with s = silu^(d)(x). Input by input, a block's rows are bucketed by their knot interval; the rows of one
// interval share their order + 2 coefficient rows, which are held in registers while each row adds its
// multiples of them (a GEMM-like inner loop: multiply-adds without memory operands).
//
// A block's values are row-major, V[(r * C + j) * in + i] and s[r * in + i]; its buckets are 64-bit row
// masks, mask[i * buckets() + b] (bit r: row r's interval key, first + order, is b).
// Uniform cubic knots (efficient-kan's default) evaluate values and masks in one SIMD pass over each row's
// inputs (CubicRows); other knots and orders transpose Basis::eval_block's input-major values and bucket
// its keys (block_masks).
#pragma once

#include "kan_basis.h"
#include "simd.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace kan_mlip {

// lane l of the result: the sum of the lanes of t[bit_reverse(l)] (t: W vectors). Each level adds the two
// halves of every block of 2h lanes of two vectors a, b: a's sums fill the first h lanes, b's the next h.
// After log2(W) levels the vector t_s ends up in the lane whose bits reverse s, hence the callers' slots.
template <typename T> struct LaneSums {
  using S = Simd<T>;
  using vec = typename S::vec;
  using mvec = typename S::lanes;
  static constexpr int W = S::W;

  static int bit_reverse(int l)
  {
    int r = 0;
    for (int b = 1; b < W; b <<= 1, l >>= 1) r = (r << 1) | (l & 1);
    return r;
  }

  template <int H> static inline __attribute__((always_inline)) vec fold(vec a, vec b)
  {
    mvec lo, hi;
    for (int l = 0; l < W; l++) {
      const int q = l / (2 * H) * (2 * H), p = l % (2 * H);
      lo[l] = p < H ? q + p : W + q + p - H;
      hi[l] = lo[l] + H;
    }
    return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi);
  }

  // t[0..n) (n a power of two, n <= W), each of block size 2H, folded pairwise
  template <int H> static inline __attribute__((always_inline)) void levels(vec *t, int n)
  {
    if constexpr (H >= 1) {
      for (int p = 0; p < n / 2; p++) t[p] = fold<H>(t[2 * p], t[2 * p + 1]);
      levels<H / 2>(t, n / 2);
    }
  }

  static inline __attribute__((always_inline)) vec sums(vec (&t)[W])
  {
    levels<W / 2>(t, W);
    return t[0];
  }
};

template <typename T> struct WideBspline {
  using S = Simd<T>;
  using vec = typename S::vec;
  static constexpr int W = S::W;
  // vectors of outputs per register panel: a bucket holds (order + 2) * PANEL coefficient vectors and PANEL
  // sums in registers (cubic: 24 of AVX-512's 32; 12 of AVX2's 16)
  static constexpr int64_t PANEL = SIMD_REGISTERS >= 32 ? 4 : 2;

  int64_t in, K, order, C, out, outP, RP;    // RP: coefficient rows per input
  bool base;
  // Panel by panel (panels(): up to PANEL vectors of outputs, o0 its first output, NV its vectors), rows of
  // NV * W numbers, so that every offset in the inner loops is a compile-time constant:
  //   cS[in * RP * o0 + (i * RP + order + k) * NV * W + o - o0] = c[o, i, k]
  // for the K spline functions, zero rows for k in [-order, 0) and [K, K + order + 1] (functions beyond the
  // basis, and the all-zero index eval_block gives outside the knots), the base weights in row RP - 1.
  // The caller's buffer of table_size() numbers (scratch that outlives calls: no page faults per call).
  T *cS;

  static int64_t table_size(int64_t out, int64_t in, int64_t K_all, int64_t order)
  {
    return in * (K_all + 2 * order + 2) * simd_round_up<T>(out);
  }

  // coeff (out, in, K [+ 1 base]), contiguous; C = order + 1 values per (row, input), or 0; table: see cS
  WideBspline(const T *coeff, int64_t out_, int64_t in_, int64_t K_all, bool base_, int64_t order_, int64_t C_,
              T *table)
      : in(in_), K(K_all - (base_ ? 1 : 0)), order(order_), C(C_), out(out_), outP(simd_round_up<T>(out_)),
        RP(K_all + 2 * order_ + 2), base(base_), cS(table)
  {
    std::fill(cS, cS + table_size(out, in, K_all, order), T(0));
    panels([&](auto nv, int64_t o0) {
      constexpr int64_t PW = decltype(nv)::value * W;
      T *p = cS + in * RP * o0;
      for (int64_t o = o0; o < std::min(out, o0 + PW); o++)
        for (int64_t i = 0; i < in; i++) {
          const T *c = coeff + (o * in + i) * K_all;
          for (int64_t k = 0; k < K; k++) p[(i * RP + order + k) * PW + o - o0] = c[k];
          if (base) p[(i * RP + RP - 1) * PW + o - o0] = c[K];
        }
    });
  }

  // panel(integral_constant<int, NV>, o0) over the output vectors, up to PANEL at a time
  template <typename F> void panels(F &&panel) const
  {
    for (int64_t o0 = 0; o0 < outP; o0 += PANEL * W) {
      const int64_t nv = std::min<int64_t>(PANEL, (outP - o0) / W);
      if (nv == 4) panel(std::integral_constant<int, 4>(), o0);
      else if (nv == 3) panel(std::integral_constant<int, 3>(), o0);
      else if (nv == 2) panel(std::integral_constant<int, 2>(), o0);
      else panel(std::integral_constant<int, 1>(), o0);
    }
  }

  // buckets of first values, first + order in [0, K + base + order]: the all-zero index K + base included
  int64_t buckets() const { return K + (base ? 1 : 0) + order + 1; }

  // The rows [0, rows <= 64) of every input by bucket: mask[i * buckets() + b] has bit r set when row r's
  // key is b (keys input-major, key[i * ROWS + r]). The rows of a bucket share their coefficient rows.
  template <int ROWS> void block_masks(const int32_t *key, int64_t rows, uint64_t *mask) const
  {
    const int64_t nb = buckets();
    std::fill(mask, mask + in * nb, uint64_t(0));
    for (int64_t i = 0; i < in; i++)
      for (int64_t r = 0; r < rows; r++) mask[i * nb + key[i * ROWS + r]] |= uint64_t(1) << r;
  }

  // Input i's rows bucket by bucket: the bucket's coefficient rows (order + 1 of them and the base's, a
  // panel each) are loaded into registers once, and row(r, add) of each of its rows calls add(w, u) for
  // u += w (sum_j V_j c_j + s wb) -- multiply-adds without memory operands, as in a GEMM (one load per
  // multiply-add left this kernel bound by loads at half the FMA peak)
  template <int NV, int CC, bool BASE, typename Row>
  inline __attribute__((always_inline)) void bucket_rows(const T *p, const T *V, const T *s, int64_t i,
                                                         const uint64_t *mask, Row &&row) const
  {
    constexpr int64_t PW = NV * W;
    const int64_t Cn = CC > 0 ? CC : C;
    for (int64_t b = 0; b < buckets(); b++) {
      if (mask[b] == 0) continue;
      const T *c = p + b * PW, *wb = p + (RP - 1) * PW;
      vec cr[CC > 0 ? CC : 1][NV], br[NV];
      if constexpr (CC > 0)
        for (int j = 0; j < CC; j++)
          for (int v = 0; v < NV; v++) cr[j][v] = S::load(c + j * PW + v * W);
      if constexpr (BASE)
        for (int v = 0; v < NV; v++) br[v] = S::load(wb + v * W);
      for (uint64_t m = mask[b]; m; m &= m - 1) {
        const int64_t r = __builtin_ctzll(m);
        row(r, [&](auto wr, vec (&u)[NV]) __attribute__((always_inline)) {
          const T *vr = V + r * Cn * in + i;
          for (int64_t j = 0; j < Cn; j++) {
            const T a = vr[j * in] * wr;
            for (int v = 0; v < NV; v++) u[v] += a * (CC > 0 ? cr[CC > 0 ? j : 0][v] : S::load(c + j * PW + v * W));
          }
          if constexpr (BASE) {
            const T a = s[r * in + i] * wr;
            for (int v = 0; v < NV; v++) u[v] += a * br[v];
          }
        });
      }
    }
  }

  // y[r * outP + o] += ... for rows [0, rows <= 64) of a block; w: w[r * in + i] (WEIGHT)
  template <int CC, bool BASE, bool WEIGHT>
  void forward(const T *V, const uint64_t *masks, const T *s, const T *w, int64_t rows, T *y) const
  {
    for (int64_t i = 0; i < in; i++) {
      const uint64_t *mask = masks + i * buckets();
      panels([&](auto nv, int64_t o0) {
        constexpr int NV = decltype(nv)::value;
        bucket_rows<NV, CC, BASE>(cS + (in * o0 + i * NV * W) * RP, V, s, i, mask,
                                  [&](int64_t r, auto &&add) {
          vec u[NV];
          T *yr = y + r * outP + o0;
          for (int v = 0; v < NV; v++) u[v] = S::load(yr + v * W);
          if constexpr (WEIGHT) add(w[r * in + i], u);
          else add(std::integral_constant<int, 1>(), u);    // no multiply by 1 in the loop
          for (int v = 0; v < NV; v++) S::store(yr + v * W, u[v]);
        });
      });
    }
  }

  // z[r * in + i] = ... for rows [0, rows) of a block; g: (rows, outP), zero past out. Each (r, i) ends as
  // a vector whose lanes sum to z[r, i]; those of W inputs are kept (t: rows * W * W scratch) and summed
  // together by LaneSums (a shuffle tree: a lane sum per (r, i) cost as much as its multiply-adds)
  template <int CC, bool BASE>
  void input_grad(const T *V, const uint64_t *masks, const T *s, const T *g, int64_t rows, T *t, T *z) const
  {
    using L = LaneSums<T>;
    for (int64_t i0 = 0; i0 < in; i0 += W) {
      const int64_t n = std::min<int64_t>(W, in - i0);
      for (int64_t l = n; l < W; l++)    // the slots of inputs past the last: zero
        for (int64_t r = 0; r < rows; r++) S::store(t + (r * W + L::bit_reverse(int(l))) * W, vec{});
      for (int64_t l = 0; l < n; l++) {
        const int64_t i = i0 + l;
        T *tl = t + L::bit_reverse(int(l)) * W;    // input i's vector of row r: tl + r * W * W
        const uint64_t *mask = masks + i * buckets();
        panels([&](auto nv, int64_t o0) {
          constexpr int NV = decltype(nv)::value;
          bucket_rows<NV, CC, BASE>(cS + (in * o0 + i * NV * W) * RP, V, s, i, mask,
                                    [&](int64_t r, auto &&add) {
            vec u[NV] = {};
            add(std::integral_constant<int, 1>(), u);
            const T *gr = g + r * outP + o0;
            vec d[2] = {u[0] * S::load(gr), NV > 1 ? u[NV > 1 ? 1 : 0] * S::load(gr + W) : vec{}};    // two short chains
            for (int v = 2; v < NV; v++) d[v % 2] += u[v] * S::load(gr + v * W);
            T *tr = tl + r * W * W;    // every row is in one bucket: the first panel writes its slot
            S::store(tr, o0 == 0 ? d[0] + d[1] : S::load(tr) + d[0] + d[1]);
          });
        });
      }
      for (int64_t r = 0; r < rows; r++) {
        vec tr[W];
        for (int l = 0; l < W; l++) tr[l] = S::load(t + (r * W + l) * W);
        S::store_partial(z + r * in + i0, L::sums(tr), n);
      }
    }
  }

  // f(integral_constant<int, CC>, integral_constant<bool, BASE>): cubic splines with a compile-time count
  template <typename F> void dispatch(F &&f) const
  {
    auto with_base = [&](auto cc) {
      if (base) f(cc, std::true_type());
      else f(cc, std::false_type());
    };
    if (C == 4) with_base(std::integral_constant<int, 4>());
    else with_base(std::integral_constant<int, 0>());
  }
};

// A wide block's values for uniform cubic knots (Basis::dense_cubic: efficient-kan's default), in one pass
// over each row's inputs in SIMD: the knot interval m and position u of Basis::eval_block and the cubics of
// Basis::cubic_pieces, written as WideBspline reads them.
template <typename T> struct CubicRows {
  using S = Simd<T>;
  using vec = typename S::vec;
  static constexpr int W = S::W;
  const Basis<T> &basis;
  int64_t in, inP, sentinel;
  std::vector<T> t0, tl, inv_h, scale;    // per input, padded to whole vectors: first, last knot, 1 / h, h^-d

  explicit CubicRows(const Basis<T> &b)
      : basis(b), in(b.in), inP(simd_round_up<T>(b.in)), sentinel(b.K), t0(inP, T(0)), tl(inP, T(0)), inv_h(inP, T(1)),
        scale(inP, T(1))
  {
    for (int64_t i = 0; i < in; i++) {
      t0[i] = b.grid[i * b.grid_stride];
      tl[i] = b.grid[i * b.grid_stride + b.grid_len - 1];
      inv_h[i] = b.inv_step[i];
      for (int64_t d = 0; d < b.deriv; d++) scale[i] *= b.inv_step[i];
    }
  }

  // rows [0, rows <= 64) of x (row-major, x[r * in + i]) -> V[(r * 4 + j) * in + i] and the bucket masks
  // mask[i * nb + first + 3] (the all-zero index K + 3 outside the knots): the or-ing of W different inputs'
  // masks is independent, unlike a pass over one input's rows, whose rows mostly share their bucket
  template <int D> void run(const T *x, int64_t rows, T *V, uint64_t *mask, int64_t nb) const
  {
    std::fill(mask, mask + in * nb, uint64_t(0));
    const T last = T(basis.grid_len - 2);
    using ivec = Int32Lanes<T>;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < in; i += W) {
        const int64_t n = std::min<int64_t>(W, in - i);
        const vec xv = S::load_partial(x + r * in + i, n, vec{});
        const auto at = uniform_interval(xv, S::load(t0.data() + i), S::load(tl.data() + i), S::load(inv_h.data() + i), last);
        const vec u = at.inside ? at.pos - at.m : vec{}, sc = S::load(scale.data() + i);
        vec v[4];
        Basis<T>::template cubic_pieces<D>(u, v);
        for (int j = 0; j < 4; j++) S::store_partial(V + (r * 4 + j) * in + i, at.inside ? v[j] * sc : vec{}, n);
        const ivec k = __builtin_convertvector(at.inside ? at.m : vec{} + T(sentinel + 3), ivec);    // first + 3
        for (int64_t l = 0; l < n; l++) mask[(i + l) * nb + k[l]] |= uint64_t(1) << r;
      }
  }

  // run() for the basis' derivative order (0 .. 3)
  void evaluate(const T *x, int64_t rows, T *V, uint64_t *mask, int64_t nb) const
  {
    switch (basis.deriv) {
      case 0: return run<0>(x, rows, V, mask, nb);
      case 1: return run<1>(x, rows, V, mask, nb);
      case 2: return run<2>(x, rows, V, mask, nb);
      default: return run<3>(x, rows, V, mask, nb);
    }
  }
};

}    // namespace kan_mlip
