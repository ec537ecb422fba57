// Fused KAN basis contractions, registered as torch ops `kan_mlip::*` (CPU, Meta, Autograd).
//
// Three primitives, with phi^(d) the d-th derivative of the basis, w an optional per-(n, i) weight:
//   kan_forward    y[n,o]    = sum_{i,k} c[o,i,k] w[n,i] phi^(d)_k(x[n,i])
//   kan_input_grad z[n,i]    = sum_{o,k} g[n,o] c[o,i,k] phi^(d)_k(x[n,i])
//   kan_coeff_grad G[o,i,k]  = sum_n     g[n,o] w[n,i] phi^(d)_k(x[n,i])
// Each one's derivatives are the others (with d or d + 1), so autograd through them is exact to any
// order: forces (first derivative) and force training (second) never fall back to zeros.
//
// The (N, in, K) basis tensor is never materialised. Two paths (counted by kan_mlip::path_counts):
//   gemm          every basis and width: a dense basis block of R rows at a time, contracted by a GEMM
//   bspline_wide  B-spline values and input gradients with out >= WIDE_MIN_OUT: only each element's
//                 order + 1 nonzero functions (bspline_wide.h)
// plus separate_base, the silu base of B-spline and Fourier layers contracted beside either. A path is kept
// only where it buys >= 5% end to end on a shipped configuration (benchmarks/RESULTS.md, "Fused CPU op paths").

#include "bspline_wide.h"
#include "gaussian_rows.h"
#include "kan_basis.h"
#include "kan_checks.h"
#include "small_gemm.h"
#include "vec_sincos.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace kan_mlip {
namespace {

using at::Tensor;

struct Layout {
  int64_t N, in, K, grid_stride, grid_len, aux_stride;
};

Layout layout(const Tensor &x, const Tensor &grid, const Tensor &aux, int64_t kind, int64_t order)
{
  return {x.size(0), x.size(1), num_basis(kind, grid, order), grid.dim() == 2 ? grid.size(1) : 0, grid.size(-1),
          aux.numel() > 0 ? (aux.dim() == 2 ? aux.size(1) : 0) : 0};
}

template <typename T>
Basis<T> make_basis(const Layout &L, const Tensor &grid, const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  return Basis<T>(kind, order, deriv, L.K, L.in, grid.data_ptr<T>(), L.grid_stride, L.grid_len,
                  aux.numel() ? aux.data_ptr<T>() : nullptr, L.aux_stride);
}

constexpr int64_t MAX_COUNT = 64;

// ---- which path each call took, counted per path (op kan_mlip::path_counts) ----
// Tests pin the path of every shipped layer shape (tests/test_op_paths.py), so that a moved threshold
// cannot silently change what runs. One relaxed atomic increment per op call.
#define KAN_PATHS(X)                                                                                           \
  X(FORWARD_GEMM, "forward:gemm") X(FORWARD_BSPLINE_WIDE, "forward:bspline_wide")                              \
  X(FORWARD_SEPARATE_BASE, "forward:separate_base") X(INPUT_GRAD_GEMM, "input_grad:gemm")                      \
  X(INPUT_GRAD_BSPLINE_WIDE, "input_grad:bspline_wide") X(INPUT_GRAD_SEPARATE_BASE, "input_grad:separate_base") \
  X(COEFF_GRAD_GEMM, "coeff_grad:gemm") X(COEFF_GRAD_SEPARATE_BASE, "coeff_grad:separate_base")                \
  X(CUBIC_ROWS, "bspline_wide:cubic_rows")

#define KAN_PATH_ENUM(id, name) id,
#define KAN_PATH_NAME(id, name) name,
enum OpPath { KAN_PATHS(KAN_PATH_ENUM) NUM_PATHS };
const char *const PATH_NAMES[NUM_PATHS] = {KAN_PATHS(KAN_PATH_NAME)};
std::atomic<int64_t> path_count[NUM_PATHS];

void took(OpPath p) { path_count[p].fetch_add(1, std::memory_order_relaxed); }

std::vector<std::string> path_names() { return {PATH_NAMES, PATH_NAMES + NUM_PATHS}; }
std::vector<int64_t> path_counts()
{
  std::vector<int64_t> n(NUM_PATHS);
  for (int p = 0; p < NUM_PATHS; p++) n[p] = path_count[p].load(std::memory_order_relaxed);
  return n;
}

// Rows per block (and per parallel task): the dense (rows, in * K) basis block stays in L2, and whole
// GEMM tiles of 7 or 14 rows cover it (small_gemm.h), so no block ends in narrow tail tiles
int64_t block_rows(int64_t in, int64_t K, int64_t elem_size)
{
  const int64_t R = std::min<int64_t>(512, std::max<int64_t>(8, (256 << 10) / (elem_size * std::max<int64_t>(1, in * K))));
  return R >= 28 ? R / 14 * 14 : R >= 14 ? R / 7 * 7 : R;
}

// Per-thread buffers that outlive a call, one per slot, grown as needed, contents undefined. Allocated
// per call, blocks of a few hundred kB were mmapped and their pages faulted in afresh every time (glibc
// gives large frees back to the kernel): in LAMMPS, ~900 extra page faults per MD step for a KAN readout.
enum ScratchSlot { COEFF_OPERAND, BLOCK, PRODUCT, TRANSPOSE, WIDE_TABLE, WIDE_VALUES, SCRATCH_SLOTS };

// Bytes held by all threads' scratch buffers: memory that torch's allocator statistics do not see,
// reported by the op kan_mlip::scratch_bytes (kan-bench adds it to a model call's tensor peak)
std::atomic<int64_t> scratch_total{0};

template <typename T> struct ScratchBuffers {
  std::vector<T> slots[SCRATCH_SLOTS];
  ~ScratchBuffers()    // a worker thread's exit
  {
    for (const auto &b : slots) scratch_total -= int64_t(b.capacity() * sizeof(T));
  }
};

template <typename T> T *scratch(ScratchSlot slot, int64_t n)
{
  thread_local ScratchBuffers<T> buffers;
  std::vector<T> &b = buffers.slots[slot];
  if (int64_t(b.size()) < n) {
    const int64_t before = int64_t(b.capacity() * sizeof(T));
    b.resize(n);
    scratch_total += int64_t(b.capacity() * sizeof(T)) - before;
  }
  return b.data();
}

int64_t scratch_bytes() { return scratch_total.load(); }

// c[o, i, k] at index column(i, k) * col_stride + o * out_stride of a zeroed buffer of `size` (the
// calling thread's COEFF_OPERAND scratch): the GEMM operand in the dense block's column order
// (forward: (column, out); input grad: (out, column))
template <typename T>
const T *block_coeff(const Tensor &coeff, const Basis<T> &basis, int64_t col_stride, int64_t out_stride, int64_t size)
{
  const Tensor c = coeff.detach().contiguous();
  const T *src = c.data_ptr<T>();
  const int64_t out = c.size(0), in = c.size(1), K = c.size(2);
  T *dst = scratch<T>(COEFF_OPERAND, size);
  std::fill(dst, dst + size, T(0));
  for (int64_t o = 0; o < out; o++)
    for (int64_t i = 0; i < in; i++)
      for (int64_t k = 0; k < K; k++) dst[basis.column(i, k) * col_stride + o * out_stride] = src[(o * in + i) * K + k];
  return dst;
}

// Outputs from which B-spline values and input gradients take bspline_wide.h; everything else (dense bases,
// coefficient gradients, narrow B-splines) contracts a dense basis block with a GEMM (small_gemm.h)
constexpr int64_t WIDE_MIN_OUT = 8;

// z[i] = sum_k f[column(i, k)] m[column(i, k)] for one row of the input gradient: columns k * in + i
// (k-major: k_major_axpy, SIMD over i) or i * K + k (B-splines). A function of its own, with restrict
// parameters, so that it vectorises (written inside a parallel_for lambda, such loops stayed scalar).
template <typename T>
__attribute__((noinline)) void reduce_columns(const T *__restrict f, const T *__restrict m, int64_t in, int64_t K,
                                              bool k_major, T *__restrict z)
{
  if (k_major) {
    std::fill(z, z + in, T(0));
    k_major_axpy(T(1), m, f, in, K, z);
    return;
  }
  for (int64_t i = 0; i < in; i++) {
    T acc = T(0);
    for (int64_t k = 0; k < K; k++) acc += f[i * K + k] * m[i * K + k];
    z[i] = acc;
  }
}

// Round H of an in-register W x W transpose: rows j and j + H ((j / H) even) exchange their off-diagonal
// H x H blocks; after rounds H = 1, 2, .., W / 2 the rows are the columns
template <typename T, int H> inline __attribute__((always_inline)) void transpose_round(typename Simd<T>::vec *t)
{
  using vec = typename Simd<T>::vec;
  using mvec = typename Simd<T>::lanes;
  constexpr int W = Simd<T>::W;
  if constexpr (H < W) {
    mvec lo, hi;    // constants once inlined
    for (int l = 0; l < W; l++) {
      const bool first = (l / H) % 2 == 0;
      lo[l] = first ? l : W + l - H;
      hi[l] = first ? l + H : W + l;
    }
    for (int j = 0; j < W; j++)
      if ((j / H) % 2 == 0) {
        const vec a = t[j], b = t[j + H];
        t[j] = __builtin_shuffle(a, b, lo);
        t[j + H] = __builtin_shuffle(a, b, hi);
      }
    transpose_round<T, 2 * H>(t);
  }
}

// dst[c * ld_dst + r] = src[r * ld_src + c] for a rows x cols block: whole W x W tiles in registers, the
// edges by scalars (scalar loops cost ~2 cycles per element).
template <typename T> void transpose(const T *src, int64_t ld_src, int64_t rows, int64_t cols, T *dst, int64_t ld_dst)
{
  using S = Simd<T>;
  constexpr int W = S::W;
  const int64_t R = rows / W * W, Cc = cols / W * W;
  for (int64_t r0 = 0; r0 < R; r0 += W)
    for (int64_t c0 = 0; c0 < Cc; c0 += W) {
      typename S::vec t[W];
      for (int j = 0; j < W; j++) t[j] = S::load(src + (r0 + j) * ld_src + c0);
      transpose_round<T, 1>(t);
      for (int j = 0; j < W; j++) S::store(dst + (c0 + j) * ld_dst + r0, t[j]);
    }
  for (int64_t r = 0; r < rows; r++)    // the edges: rows past R, columns past Cc
    for (int64_t c = r < R ? Cc : 0; c < cols; c++) dst[c * ld_dst + r] = src[r * ld_src + c];
}

// Per-task scratch and block evaluation of the basis for rows [n0, n0 + rows)
template <typename T> struct Block {
  const Basis<T> &basis;
  int64_t in, K, C;
  std::vector<T> xT, V, s1, s2;    // B-splines: input-major copy of x, values, scratch
  std::vector<T> rot;              // Fourier: the angle-addition state of one row
  std::vector<int32_t> first;    // each element's first nonzero function
  std::unique_ptr<GaussianRows<T>> gaussian;

  Block(const Basis<T> &b, int64_t in_, int64_t R_)
      : basis(b), in(in_), K(b.K), C(b.count()), xT(b.dense() ? 0 : in_ * R_),
        V(b.dense() ? 0 : std::max<int64_t>(1, in_ * b.count() * R_)), s1((std::max(in_, b.order) + 1) * R_),
        s2(std::max(in_, b.order) * R_),
        first(b.dense() ? 0 : in_ * R_)
  {
    if (b.kind == FOURIER) rot.resize(std::max(2 * in_, b.K));
    if (b.kind == GAUSSIAN) gaussian = std::make_unique<GaussianRows<T>>(b);
  }

  // structure of arrays, input-major (B-splines): V[(i * C + j) * rows + r], first[i * rows + r]
  // stride: the row stride of xT, V and first (default rows); rows past `rows` are evaluated at x = 0
  void evaluate(const T *x, int64_t n0, int64_t rows, int64_t stride = 0)
  {
    if (stride == 0) stride = rows;
    transpose(x + n0 * in, in, rows, in, xT.data(), stride);
    for (int64_t i = 0; i < in; i++) std::fill(xT.data() + i * stride + rows, xT.data() + (i + 1) * stride, T(0));
    basis.eval_block(xT.data(), stride, V.data(), first.data(), s1.data(), s2.data());
  }

  // row-major dense block phi[r, column(i, k)] = w[n, i] phi_k(x[n, i]), what the GEMM contracts
  void dense(const T *x, const T *w, int64_t n0, int64_t rows, T *phi)
  {
    if (gaussian) {
      for (int64_t r = 0; r < rows; r++)
        gaussian->row(x + (n0 + r) * in, w ? w + (n0 + r) * in : nullptr, phi + r * in * K);
      return;
    }
    if (basis.dense()) {
      basis.fourier_rows(
          x + n0 * in, rows, phi, s1.data(), s2.data(), rot.data(),
          [&](const T *src, T *c, T *s, int64_t n) { sincos_buffer(src, c, s, n); });
    } else {
      evaluate(x, n0, rows);
      std::fill(phi, phi + rows * in * K, T(0));
      for (int64_t r = 0; r < rows; r++)    // row-major writes; V's C * in read streams stay in L1
        for (int64_t i = 0; i < in; i++) {
          const int64_t f = first[i * rows + r];
          if (f == K) continue;
          T *p = phi + (r * in + i) * K;
          const T *v = V.data() + i * C * rows + r;
          for (int64_t j = 0; j < C; j++) {
            const int64_t k = f + j;
            if (k >= 0 && k < K) p[k] = v[j * rows];
          }
        }
    }
    if (w)
      for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < in; i++) {
          const T wi = w[(n0 + r) * in + i];
          T *p = phi + r * in * K;
          for (int64_t k = 0; k < K; k++) p[basis.column(i, k)] *= wi;
        }
  }
};

// ---- the silu base of B-spline and Fourier layers (kind + BASE_SILU) ----
// Gaussian blocks evaluate silu as one more function per input, in the same pass (gaussian_rows.h). The
// B-spline and Fourier paths keep their own layouts; their base function is the dense term
//   S[n, i] = w[n, i] silu^(d)(x[n, i]),   y += S Wb^T,   z += silu^(d)(x) (g Wb),   G[:, :, K-1] = g^T S
// with Wb = coeff[:, :, K-1], contracted by BLAS inside the same op.
bool separate_base(int64_t kind) { return (kind & BASE_SILU) && (kind & KIND_MASK) != GAUSSIAN; }

// s[e] = silu^(D)(x[e]): its own function with restrict parameters, so that the loop vectorises
template <typename T, int D>
__attribute__((noinline)) void silu_run(const Basis<T> &basis, const T *__restrict x, T *__restrict s, int64_t n)
{
  for (int64_t e = 0; e < n; e++) s[e] = basis.template silu<D>(x[e]);
}

// s[e] = silu^(deriv)(x[e]) for the basis' derivative order
template <typename T> void silu_fill(const Basis<T> &basis, const T *x, T *s, int64_t n)
{
  switch (basis.deriv) {
    case 0: return silu_run<T, 0>(basis, x, s, n);
    case 1: return silu_run<T, 1>(basis, x, s, n);
    case 2: return silu_run<T, 2>(basis, x, s, n);
    default: return silu_run<T, -1>(basis, x, s, n);
  }
}

Tensor silu_values(const Tensor &x, const Tensor &grid, const Tensor &aux, int64_t kind, int64_t order, int64_t deriv,
                   const Tensor &w)
{
  Tensor s = at::empty_like(x);
  const Layout L = layout(x, grid, aux, kind, order);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_silu", [&] {
    const Basis<scalar_t> basis = make_basis<scalar_t>(L, grid, aux, kind, order, deriv);
    const scalar_t *x_p = x.data_ptr<scalar_t>();
    scalar_t *s_p = s.data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), 4096, [&](int64_t a, int64_t b) { silu_fill(basis, x_p + a, s_p + a, b - a); });
  });
  return w.defined() ? s * w : s;
}

// Wide B-splines contract only each element's nonzero functions, their silu base included (bspline_wide.h).
// Kept: without it a kan_readout LAMMPS call takes 6% longer, a kan_all training step 24% (RESULTS.md).
bool takes_wide(int64_t kind, int64_t out) { return (kind & KIND_MASK) == BSPLINE && out >= WIDE_MIN_OUT; }

// Rows per block of the wide path: its values (V, in * 5 per row) and outputs stay in L2
constexpr int64_t WIDE_ROWS = 64;
static_assert(WIDE_ROWS <= 64, "WideBspline's bucket masks are 64-bit");

// fn(n0, rows, V, mask, s) per block of WIDE_ROWS rows, its values and bucket masks as WideBspline reads
// them (s: silu^(d) when the basis has the base)
template <typename T, typename Fn>
void wide_blocks(const Basis<T> &basis, const WideBspline<T> &B, const T *x, int64_t N, int64_t in, Fn &&fn)
{
  // uniform cubic knots (the default) in closed form, the others by Block::evaluate. Kept: without it a
  // kan_all training step takes 5-7% longer (RESULTS.md, "Fused CPU op paths")
  const std::unique_ptr<CubicRows<T>> cubic = basis.dense_cubic() ? std::make_unique<CubicRows<T>>(basis) : nullptr;
  if (cubic) took(CUBIC_ROWS);
  at::parallel_for(0, (N + WIDE_ROWS - 1) / WIDE_ROWS, 1, [&](int64_t b0, int64_t b1) {
    std::unique_ptr<Block<T>> blk = cubic ? nullptr : std::make_unique<Block<T>>(basis, in, WIDE_ROWS);
    const int64_t C = B.C;
    T *V = scratch<T>(WIDE_VALUES, std::max<int64_t>(1, WIDE_ROWS * C * in)),
      *s = basis.base ? scratch<T>(TRANSPOSE, WIDE_ROWS * in) : nullptr;
    int32_t *key = cubic ? nullptr : scratch<int32_t>(WIDE_VALUES, WIDE_ROWS * in);
    uint64_t *mask = scratch<uint64_t>(WIDE_VALUES, in * B.buckets());
    for (int64_t b = b0; b < b1; b++) {
      const int64_t n0 = b * WIDE_ROWS, rows = std::min(WIDE_ROWS, N - n0);
      const T *xb = x + n0 * in;
      if (cubic) {
        cubic->evaluate(xb, rows, V, mask, B.buckets());
      } else {    // input-major values, transposed
        blk->evaluate(x, n0, rows, WIDE_ROWS);
        for (int64_t j = 0; j < C; j++)    // value j: (in, WIDE_ROWS) with row stride C WIDE_ROWS -> (rows, in)
          transpose(blk->V.data() + j * WIDE_ROWS, C * WIDE_ROWS, in, rows, V + j * in, C * in);
        for (int64_t e = 0; e < in * WIDE_ROWS; e++) key[e] = blk->first[e] + int32_t(B.order);
        B.template block_masks<WIDE_ROWS>(key, rows, mask);
      }
      if (s) silu_fill(basis, xb, s, rows * in);    // a loop of its own: its exp chains overlap
      fn(n0, rows, V, mask, s);
    }
  });
}

Tensor kan_forward_cpu(const Tensor &x_, const Tensor &coeff_, const c10::optional<Tensor> &w_, const Tensor &grid_,
                       const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const Tensor x = x_.contiguous(), grid = grid_.contiguous(), aux = aux_.contiguous();
  const Layout L = layout(x, grid, aux, kind, order);
  TORCH_CHECK(coeff_.dim() == 3 && coeff_.size(1) == L.in && coeff_.size(2) == L.K,
              "kan_mlip::kan_forward: coeff must be (out, ", L.in, ", ", L.K, "), got ", coeff_.sizes());
  TORCH_CHECK(L.K <= MAX_COUNT, "kan_mlip: at most ", MAX_COUNT, " basis functions per input, got ", L.K);
  const int64_t out = coeff_.size(0);
  const Tensor w = w_.has_value() && w_->defined() ? w_->contiguous() : Tensor();
  check_weight(x, w);
  if (separate_base(kind) && !takes_wide(kind, out)) {
    const Tensor c = coeff_.detach();
    took(FORWARD_SEPARATE_BASE);
    Tensor y = kan_forward_cpu(x, c.narrow(2, 0, L.K - 1).contiguous(), w_, grid, aux, kind & ~BASE_SILU, order, deriv);
    return y.addmm_(silu_values(x, grid, aux, kind, order, deriv, w), c.select(2, L.K - 1).t());
  }
  Tensor y = at::zeros({L.N, out}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_forward", [&] {
    const Basis<scalar_t> basis = make_basis<scalar_t>(L, grid, aux, kind, order, deriv);
    const int64_t C = basis.count(), R = block_rows(L.in, L.K, sizeof(scalar_t));
    const scalar_t *w_p = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    if (takes_wide(kind, out)) {
      const Tensor c = coeff_.detach().contiguous();
      const WideBspline<scalar_t> B(c.data_ptr<scalar_t>(), out, L.in, L.K, basis.base, order, C,
                                    scratch<scalar_t>(WIDE_TABLE, WideBspline<scalar_t>::table_size(out, L.in, L.K, order)));
      scalar_t *y_p = y.data_ptr<scalar_t>();
      took(FORWARD_BSPLINE_WIDE);
      B.dispatch([&](auto cc, auto base) {
        wide_blocks(basis, B, x.data_ptr<scalar_t>(), L.N, L.in, [&](int64_t n0, int64_t rows, const scalar_t *V,
                                                                     const uint64_t *mask, const scalar_t *s) {
          scalar_t *yb = scratch<scalar_t>(PRODUCT, rows * B.outP);
          std::fill(yb, yb + rows * B.outP, scalar_t(0));
          if (w_p)
            B.template forward<cc(), base(), true>(V, mask, s, w_p + n0 * L.in, rows, yb);
          else
            B.template forward<cc(), base(), false>(V, mask, s, nullptr, rows, yb);
          for (int64_t r = 0; r < rows; r++)
            std::copy(yb + r * B.outP, yb + r * B.outP + out, y_p + (n0 + r) * out);
        });
      });
      return;
    }
    // the general path: a dense basis block of R rows at a time, contracted by a GEMM (small_gemm.h) with
    // the coefficients as (block column, out), rows padded to whole vectors
    const int64_t Kd = L.in * L.K, outP = simd_round_up<scalar_t>(out);
    const scalar_t *cT = block_coeff(coeff_, basis, outP, 1, Kd * outP);
    const scalar_t *x_p = x.data_ptr<scalar_t>();
    scalar_t *y_p = y.data_ptr<scalar_t>();
    took(FORWARD_GEMM);
    at::parallel_for(0, (L.N + R - 1) / R, 1, [&](int64_t b0, int64_t b1) {
      Block<scalar_t> blk(basis, L.in, R);
      scalar_t *phi = scratch<scalar_t>(BLOCK, R * Kd);
      for (int64_t b = b0; b < b1; b++) {
        const int64_t n0 = b * R, rows = std::min(R, L.N - n0);
        blk.dense(x_p, w_p, n0, rows, phi);
        small_gemm(phi, Kd, rows, Kd, cT, outP, out, y_p + n0 * out, out, false);
      }
    });
  });
  return y;
}

Tensor kan_input_grad_cpu(const Tensor &x_, const Tensor &coeff_, const Tensor &g_, const Tensor &grid_,
                          const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const Tensor x = x_.contiguous(), grid = grid_.contiguous(), aux = aux_.contiguous();
  const Layout L = layout(x, grid, aux, kind, order);
  TORCH_CHECK(coeff_.dim() == 3 && coeff_.size(1) == L.in && coeff_.size(2) == L.K,
              "kan_mlip::kan_input_grad: coeff must be (out, ", L.in, ", ", L.K, "), got ", coeff_.sizes());
  TORCH_CHECK(L.K <= MAX_COUNT, "kan_mlip: at most ", MAX_COUNT, " basis functions per input, got ", L.K);
  const int64_t out = coeff_.size(0);
  TORCH_CHECK(g_.dim() == 2 && g_.size(0) == L.N && g_.size(1) == out, "kan_mlip::kan_input_grad: grad_out must be (",
              L.N, ", ", out, "), got ", g_.sizes());
  const Tensor g = g_.detach().contiguous();    // BLAS out= calls below: no autograd in kernels
  if (separate_base(kind) && !takes_wide(kind, out)) {
    const Tensor c = coeff_.detach();
    took(INPUT_GRAD_SEPARATE_BASE);
    Tensor z = kan_input_grad_cpu(x, c.narrow(2, 0, L.K - 1).contiguous(), g, grid, aux, kind & ~BASE_SILU, order, deriv);
    return z.add_(silu_values(x, grid, aux, kind, order, deriv, Tensor()) * at::mm(g, c.select(2, L.K - 1)));
  }
  Tensor z = at::empty({L.N, L.in}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_input_grad", [&] {
    const Basis<scalar_t> basis = make_basis<scalar_t>(L, grid, aux, kind, order, deriv);
    const int64_t C = basis.count(), R = block_rows(L.in, L.K, sizeof(scalar_t));
    if (takes_wide(kind, out)) {
      const Tensor c = coeff_.detach().contiguous();
      const WideBspline<scalar_t> B(c.data_ptr<scalar_t>(), out, L.in, L.K, basis.base, order, C,
                                    scratch<scalar_t>(WIDE_TABLE, WideBspline<scalar_t>::table_size(out, L.in, L.K, order)));
      const scalar_t *g_p = g.data_ptr<scalar_t>();
      scalar_t *z_p = z.data_ptr<scalar_t>();
      took(INPUT_GRAD_BSPLINE_WIDE);
      B.dispatch([&](auto cc, auto base) {
        wide_blocks(basis, B, x.data_ptr<scalar_t>(), L.N, L.in, [&](int64_t n0, int64_t rows, const scalar_t *V,
                                                                     const uint64_t *mask, const scalar_t *s) {
          scalar_t *gb = scratch<scalar_t>(PRODUCT, rows * B.outP);    // rows padded to whole vectors
          for (int64_t r = 0; r < rows; r++) {
            std::copy(g_p + (n0 + r) * out, g_p + (n0 + r + 1) * out, gb + r * B.outP);
            std::fill(gb + r * B.outP + out, gb + (r + 1) * B.outP, scalar_t(0));
          }
          scalar_t *t = scratch<scalar_t>(BLOCK, rows * simd_width<scalar_t>() * simd_width<scalar_t>());
          B.template input_grad<cc(), base()>(V, mask, s, gb, rows, t, z_p + n0 * L.in);
        });
      });
      return;
    }
    // the general path: z[n, i] = sum_k phi[r, column(i, k)] sum_o g[n, o] c[o, column(i, k)], a dense
    // basis block of R rows at a time, the coefficients as (out, block column), rows padded to whole vectors
    const int64_t Kd = L.in * L.K, KdP = simd_round_up<scalar_t>(Kd);
    const scalar_t *cd_p = block_coeff(coeff_, basis, 1, KdP, out * KdP);
    const scalar_t *x_p = x.data_ptr<scalar_t>(), *g_p = g.data_ptr<scalar_t>();
    scalar_t *z_p = z.data_ptr<scalar_t>();
    took(INPUT_GRAD_GEMM);
    at::parallel_for(0, (L.N + R - 1) / R, 1, [&](int64_t b0, int64_t b1) {
      Block<scalar_t> blk(basis, L.in, R);
      scalar_t *phi = scratch<scalar_t>(BLOCK, R * Kd), *m = scratch<scalar_t>(PRODUCT, R * KdP);
      for (int64_t b = b0; b < b1; b++) {
        const int64_t n0 = b * R, rows = std::min(R, L.N - n0);
        blk.dense(x_p, nullptr, n0, rows, phi);
        small_gemm(g_p + n0 * out, out, rows, out, cd_p, KdP, Kd, m, KdP, false);    // m = g c
        for (int64_t r = 0; r < rows; r++)
          reduce_columns(phi + r * Kd, m + r * KdP, L.in, L.K, basis.k_major(), z_p + (n0 + r) * L.in);
      }
    });
  });
  return z;
}

Tensor kan_coeff_grad_cpu(const Tensor &x_, const Tensor &g_, const c10::optional<Tensor> &w_, const Tensor &grid_,
                          const Tensor &aux_, int64_t kind, int64_t order, int64_t deriv)
{
  check_inputs(x_, grid_, aux_, kind, order, deriv);
  const Tensor x = x_.contiguous(), grid = grid_.contiguous(), aux = aux_.contiguous();
  const Layout L = layout(x, grid, aux, kind, order);
  TORCH_CHECK(g_.dim() == 2 && g_.size(0) == L.N, "kan_mlip::kan_coeff_grad: grad_out must be (", L.N,
              ", out), got ", g_.sizes());
  TORCH_CHECK(L.K <= MAX_COUNT, "kan_mlip: at most ", MAX_COUNT, " basis functions per input, got ", L.K);
  const int64_t out = g_.size(1);
  const Tensor g = g_.detach().contiguous();    // BLAS out= calls below: no autograd in kernels
  const Tensor w = w_.has_value() && w_->defined() ? w_->contiguous() : Tensor();
  check_weight(x, w);
  if (separate_base(kind)) {
    took(COEFF_GRAD_SEPARATE_BASE);
    const Tensor spline = kan_coeff_grad_cpu(x, g, w_, grid, aux, kind & ~BASE_SILU, order, deriv);
    const Tensor base = at::mm(g.t(), silu_values(x, grid, aux, kind, order, deriv, w));
    return at::cat({spline, base.unsqueeze(2)}, 2);
  }
  // the general path for every basis: G (out, in * K) += g^T phi per dense basis block, one sum per thread
  std::vector<Tensor> partial(at::get_num_threads());
  took(COEFF_GRAD_GEMM);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kan_coeff_grad", [&] {
    const Basis<scalar_t> basis = make_basis<scalar_t>(L, grid, aux, kind, order, deriv);
    const int64_t R = block_rows(L.in, L.K, sizeof(scalar_t)), Kd = L.in * L.K;
    const scalar_t *x_p = x.data_ptr<scalar_t>(), *g_p = g.data_ptr<scalar_t>();
    const scalar_t *w_p = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, (L.N + R - 1) / R, 1, [&](int64_t b0, int64_t b1) {
      Tensor &acc = partial[at::get_thread_num()];
      if (!acc.defined()) acc = at::zeros({out, Kd}, x.options());
      scalar_t *a_p = acc.data_ptr<scalar_t>();
      Block<scalar_t> blk(basis, L.in, R);
      // phi is small_gemm's B operand: whole vectors past its last row are read
      scalar_t *phi = scratch<scalar_t>(BLOCK, R * Kd + simd_width<scalar_t>());
      scalar_t *gT = scratch<scalar_t>(TRANSPOSE, out * R);
      for (int64_t b = b0; b < b1; b++) {
        const int64_t n0 = b * R, rows = std::min(R, L.N - n0);
        blk.dense(x_p, w_p, n0, rows, phi);
        for (int64_t r = 0; r < rows; r++)
          for (int64_t o = 0; o < out; o++) gT[o * rows + r] = g_p[(n0 + r) * out + o];
        small_gemm(gT, rows, out, rows, phi, Kd, Kd, a_p, Kd, true);
      }
    });
  });
  // block columns back to (out, in, K): Gaussian and Fourier blocks are k-major (Basis::column)
  Tensor total = at::zeros({out, L.in * L.K}, x.options());
  for (const Tensor &p : partial)
    if (p.defined()) total.add_(p);
  if ((kind & KIND_MASK) != BSPLINE) return total.view({out, L.K, L.in}).permute({0, 2, 1}).contiguous();
  return total.view({out, L.in, L.K});
}

// ---- shapes only (torch.export / fake tensors): symbolic sizes, so N stays dynamic ----
Tensor kan_forward_meta(const Tensor &x, const Tensor &coeff, const c10::optional<Tensor> &, const Tensor &,
                        const Tensor &, int64_t, int64_t, int64_t)
{
  return at::empty_symint({x.sym_size(0), coeff.sym_size(0)}, x.options());
}
Tensor kan_input_grad_meta(const Tensor &x, const Tensor &, const Tensor &, const Tensor &, const Tensor &, int64_t,
                           int64_t, int64_t)
{
  return at::empty_symint(x.sym_sizes(), x.options());
}
Tensor kan_coeff_grad_meta(const Tensor &x, const Tensor &g, const c10::optional<Tensor> &, const Tensor &grid,
                           const Tensor &, int64_t kind, int64_t order, int64_t)
{
  return at::empty_symint({g.sym_size(1), x.sym_size(1), c10::SymInt(num_basis(kind, grid, order))}, x.options());
}

// ---- dispatcher entry points (re-enter autograd when called from a backward) ----
Tensor call_forward(const Tensor &x, const Tensor &c, const c10::optional<Tensor> &w, const Tensor &grid,
                    const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("kan_mlip::kan_forward", "").typed<decltype(kan_forward_cpu)>();
  return op.call(x, c, w, grid, aux, kind, order, deriv);
}
Tensor call_input_grad(const Tensor &x, const Tensor &c, const Tensor &g, const Tensor &grid, const Tensor &aux,
                       int64_t kind, int64_t order, int64_t deriv)
{
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("kan_mlip::kan_input_grad", "").typed<decltype(kan_input_grad_cpu)>();
  return op.call(x, c, g, grid, aux, kind, order, deriv);
}
Tensor call_coeff_grad(const Tensor &x, const Tensor &g, const c10::optional<Tensor> &w, const Tensor &grid,
                       const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("kan_mlip::kan_coeff_grad", "").typed<decltype(kan_coeff_grad_cpu)>();
  return op.call(x, g, w, grid, aux, kind, order, deriv);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor times(const Tensor &a, const Tensor &w) { return w.defined() ? a * w : a; }

// What every backward needs: the op's two tensor operands (a, b), the optional weight, the basis
// buffers and its integers
struct Saved {
  Tensor a, b, w, grid, aux;
  int64_t kind, order, d;
  c10::optional<Tensor> weight() const { return w.defined() ? c10::optional<Tensor>(w) : c10::nullopt; }
};

void save(AutogradContext *ctx, const Tensor &a, const Tensor &b, const c10::optional<Tensor> &w, const Tensor &grid,
          const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  ctx->save_for_backward({a, b, w.has_value() ? *w : Tensor(), grid, aux});
  ctx->saved_data["kind"] = kind;
  ctx->saved_data["order"] = order;
  ctx->saved_data["deriv"] = deriv;
}

Saved load(AutogradContext *ctx)
{
  auto s = ctx->get_saved_variables();
  return {s[0], s[1], s[2], s[3], s[4], ctx->saved_data["kind"].toInt(), ctx->saved_data["order"].toInt(),
          ctx->saved_data["deriv"].toInt()};
}

// Only the gradients autograd asks for are computed: forces need dx alone.

// y = F_d(x, c, w):  dx = w * T_{d+1}(x, c, gy),  dc = G_d(x, gy, w),  dw = T_d(x, c, gy)
struct ForwardFn : public torch::autograd::Function<ForwardFn> {
  static Tensor forward(AutogradContext *ctx, Tensor x, Tensor c, c10::optional<Tensor> w, Tensor grid, Tensor aux,
                        int64_t kind, int64_t order, int64_t deriv)
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    save(ctx, x, c, w, grid, aux, kind, order, deriv);
    return call_forward(x, c, w, grid, aux, kind, order, deriv);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    const Saved s = load(ctx);
    const Tensor &x = s.a, &c = s.b, gy = grads[0].contiguous();
    Tensor dx, dc, dw;
    if (ctx->needs_input_grad(0)) dx = times(call_input_grad(x, c, gy, s.grid, s.aux, s.kind, s.order, s.d + 1), s.w);
    if (ctx->needs_input_grad(1)) dc = call_coeff_grad(x, gy, s.weight(), s.grid, s.aux, s.kind, s.order, s.d);
    if (s.w.defined() && ctx->needs_input_grad(2)) dw = call_input_grad(x, c, gy, s.grid, s.aux, s.kind, s.order, s.d);
    return {dx, dc, dw, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// z = T_d(x, c, g):  dx = u * T_{d+1}(x, c, g),  dc = G_d(x, g, u),  dg = F_d(x, c, u)
struct InputGradFn : public torch::autograd::Function<InputGradFn> {
  static Tensor forward(AutogradContext *ctx, Tensor x, Tensor c, Tensor g, Tensor grid, Tensor aux, int64_t kind,
                        int64_t order, int64_t deriv)
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    save(ctx, x, c, g, grid, aux, kind, order, deriv);    // g rides in the weight slot
    return call_input_grad(x, c, g, grid, aux, kind, order, deriv);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    const Saved s = load(ctx);
    const Tensor &x = s.a, &c = s.b, &g = s.w, u = grads[0].contiguous();
    Tensor dx, dc, dg;
    if (ctx->needs_input_grad(0)) dx = u * call_input_grad(x, c, g, s.grid, s.aux, s.kind, s.order, s.d + 1);
    if (ctx->needs_input_grad(1)) dc = call_coeff_grad(x, g, u, s.grid, s.aux, s.kind, s.order, s.d);
    if (ctx->needs_input_grad(2)) dg = call_forward(x, c, u, s.grid, s.aux, s.kind, s.order, s.d);
    return {dx, dc, dg, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// G = G_d(x, g, w):  dx = w * T_{d+1}(x, U, g),  dg = F_d(x, U, w),  dw = T_d(x, U, g)
struct CoeffGradFn : public torch::autograd::Function<CoeffGradFn> {
  static Tensor forward(AutogradContext *ctx, Tensor x, Tensor g, c10::optional<Tensor> w, Tensor grid, Tensor aux,
                        int64_t kind, int64_t order, int64_t deriv)
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    save(ctx, x, g, w, grid, aux, kind, order, deriv);
    return call_coeff_grad(x, g, w, grid, aux, kind, order, deriv);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    const Saved s = load(ctx);
    const Tensor &x = s.a, &g = s.b, U = grads[0].contiguous();
    Tensor dx, dg, dw;
    if (ctx->needs_input_grad(0)) dx = times(call_input_grad(x, U, g, s.grid, s.aux, s.kind, s.order, s.d + 1), s.w);
    if (ctx->needs_input_grad(1)) dg = call_forward(x, U, s.weight(), s.grid, s.aux, s.kind, s.order, s.d);
    if (s.w.defined() && ctx->needs_input_grad(2)) dw = call_input_grad(x, U, g, s.grid, s.aux, s.kind, s.order, s.d);
    return {dx, dg, dw, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor kan_forward_autograd(const Tensor &x, const Tensor &c, const c10::optional<Tensor> &w, const Tensor &grid,
                            const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  return ForwardFn::apply(x, c, w, grid, aux, kind, order, deriv);
}
Tensor kan_input_grad_autograd(const Tensor &x, const Tensor &c, const Tensor &g, const Tensor &grid,
                               const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  return InputGradFn::apply(x, c, g, grid, aux, kind, order, deriv);
}
Tensor kan_coeff_grad_autograd(const Tensor &x, const Tensor &g, const c10::optional<Tensor> &w, const Tensor &grid,
                               const Tensor &aux, int64_t kind, int64_t order, int64_t deriv)
{
  return CoeffGradFn::apply(x, g, w, grid, aux, kind, order, deriv);
}

}    // namespace

TORCH_LIBRARY(kan_mlip, m)
{
  m.def("kan_forward(Tensor x, Tensor coeff, Tensor? weight, Tensor grid, Tensor aux, int basis, int order, int deriv) -> Tensor");
  m.def("kan_input_grad(Tensor x, Tensor coeff, Tensor grad_out, Tensor grid, Tensor aux, int basis, int order, int deriv) -> Tensor");
  m.def("kan_coeff_grad(Tensor x, Tensor grad_out, Tensor? weight, Tensor grid, Tensor aux, int basis, int order, int deriv) -> Tensor");
  m.def("scratch_bytes() -> int", &scratch_bytes);
  m.def("path_names() -> str[]", &path_names);
  m.def("path_counts() -> int[]", &path_counts);
}

TORCH_LIBRARY_IMPL(kan_mlip, CPU, m)
{
  m.impl("kan_forward", kan_forward_cpu);
  m.impl("kan_input_grad", kan_input_grad_cpu);
  m.impl("kan_coeff_grad", kan_coeff_grad_cpu);
}

TORCH_LIBRARY_IMPL(kan_mlip, Meta, m)
{
  m.impl("kan_forward", kan_forward_meta);
  m.impl("kan_input_grad", kan_input_grad_meta);
  m.impl("kan_coeff_grad", kan_coeff_grad_meta);
}

TORCH_LIBRARY_IMPL(kan_mlip, Autograd, m)
{
  m.impl("kan_forward", kan_forward_autograd);
  m.impl("kan_input_grad", kan_input_grad_autograd);
  m.impl("kan_coeff_grad", kan_coeff_grad_autograd);
}

}    // namespace kan_mlip
