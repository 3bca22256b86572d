// FMICON loss: blocked forward/backward (never stores a P x P matrix) and the dense reference.
//
// Notation for one batch element (A pixels i, B pixels j):
//   S1 = A1 B1^T, S2 = A2 B2^T                          [PA, PB] similarities, never stored whole
//   r_i = logsumexp_j S1_ij,  c_j = logsumexp_i S2_ij   row / column log-normalisers
//   p_ij = exp(S1_ij - r_i)   (row softmax),  q_ij = exp(S2_ij - c_j)   (column softmax)
//   s_i = sum_j p_ij q_ij,  l_i = log(s_i + eps),  L = sum_i l_i
// s_i is summed as the product sum_j p_ij q_ij (two exps per similarity) where that is exact to float precision,
// and log s_i = logsumexp_j ((S1_ij - r_i) + (S2_ij - c_j)) in the log domain for the rows where it is not (a poor
// match, s_i below float's range, e.g. radius-30 features): the loss and gradient stay finite however poor the match.
//
// Gradient (derivation). dL/ds_i = 1/(s_i + eps), so with w_ij = p_ij q_ij / (s_i + eps):
//   dL/dp_ij = q_ij / (s_i + eps),  dL/dq_ij = p_ij / (s_i + eps).
// Row-softmax backward, dS1_ij = p_ij (dL/dp_ij - sum_j' p_ij' dL/dp_ij'):
//   dL/dS1_ij = w_ij - p_ij rho_i,   rho_i = sum_j w_ij = s_i / (s_i + eps)   (= 1 when eps = 0)
// Column-softmax backward, dS2_ij = q_ij (dL/dq_ij - sum_i' q_i'j dL/dq_i'j):
//   dL/dS2_ij = w_ij - q_ij kappa_j,  kappa_j = sum_i w_ij
// and w_ij = exp((S1_ij - r_i) + (S2_ij - c_j) - l_i) <= 1 stays representable. Then dA1 = dS1 B1,
// dB1 = dS1^T A1, dA2 = dS2 B2, dB2 = dS2^T A2 (the loss scale and upstream gradient fold into one factor).
//
// Why column panels [PA, panel_cols]: a whole column of S2 (for c_j) and of w (for kappa_j) lies inside one, so
// both passes need a single sweep; row quantities (r_i, log s_i, dA1, dA2) are summed across panels in
// per-thread partials, merged after the sweep (no atomics).
//   forward : S2 panel -> c_J, q; S1 by chunks of rows -> running row sums of p and of p q          (2 products)
//   backward: S1, S2 by chunks of rows -> w, kappa, dS1 -> dA1, dB1_J; then dS2 -> dA2, dB2_J      (6 products)
// Chunks of rows keep a product's output in L1 for the elementwise pass and the products that read it.
// OpenMP over (batch element, panel) tasks; each product goes through panel_product, a register-tiled kernel.
#include "losses/icon.h"

#include <omp.h>
#include <xmmintrin.h>
#if defined(__FMA__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/huge_page_buffer.h"
#include "engine/shape_ops.h"

namespace eq {
namespace {


struct IconShape {
  int64_t N, PA, PB, D;
};

IconShape check_icon_inputs(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2,
                            const IconOptions& opt, const char* op) {
  for (const Tensor* t : {&a1, &b1, &a2, &b2})
    check(t->defined(), op, ": an input feature map is undefined");
  const std::string got = "a1 " + shape_str(a1.shape()) + ", b1 " + shape_str(b1.shape()) + ", a2 " +
                          shape_str(a2.shape()) + ", b2 " + shape_str(b2.shape());
  check(a1.dim() == 3 && b1.dim() == 3 && a2.dim() == 3 && b2.dim() == 3, op,
        ": expected four [N, P, D] pixel-feature maps (icon_pixels turns [N, D, H, W] into [N, H*W, D]), got ", got);
  check(a1.shape() == a2.shape(), op, ": a1 and a2 (both maps of image A) must have the same shape, got ", got);
  check(b1.shape() == b2.shape(), op, ": b1 and b2 (both maps of image B) must have the same shape, got ", got);
  check(a1.size(0) == b1.size(0), op, ": batch sizes of the A and B maps differ, got ", got);
  check(a1.size(2) == b1.size(2), op, ": feature sizes D of the A and B maps differ, got ", got);
  const IconShape sh{a1.size(0), a1.size(1), b1.size(1), a1.size(2)};
  check(sh.N > 0 && sh.PA > 0 && sh.PB > 0 && sh.D > 0, op, ": empty feature maps, got ", got);
  check(std::isfinite(opt.epsilon) && opt.epsilon >= 0, op, ": epsilon must be finite and >= 0, got ",
        opt.epsilon);
  check(opt.panel_cols >= 1, op, ": panel_cols must be >= 1, got ", opt.panel_cols);
  return sh;
}

double loss_scale(const IconShape& sh, const IconOptions& opt) {
  return opt.reduction == IconReduction::Mean ? 1.0 / static_cast<double>(sh.N * sh.PA) : 1.0;
}

// log(exp(log_s) + eps): the per-pixel loss term, from log s in the log domain.
double log_s_plus_eps(double log_s, double eps) {
  if (eps == 0) return log_s;
  const double log_eps = std::log(eps);
  const double hi = std::max(log_s, log_eps), lo = std::min(log_s, log_eps);
  return hi + std::log1p(std::exp(lo - hi));
}

// ---------------------------------------------------------------------------------------------------------------
// A vectorised exp. GCC does not auto-vectorise a range-clamped exp under the default -ftrapping-math, so the hot
// loops run on vectors `fv` (GCC/Clang vector extensions: 16 floats with AVX-512, else 8 — AVX with -march=native,
// pairs of SSE registers otherwise), whole vectors only (panels are padded to whole vectors); fast_exp is one
// template for every width.
// ---------------------------------------------------------------------------------------------------------------

// Without AVX (e.g. `make sanitize`, no -march=native) GCC warns that returning these by value changes the ABI; they
// never leave this file, so the warning does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
using f8 = float __attribute__((vector_size(32)));
using i8 = int32_t __attribute__((vector_size(32)));

// splat<F>(v): v in every lane of an F.
template <class F>
F splat(float v);
template <>
inline f8 splat<f8>(float v) { return f8{v, v, v, v, v, v, v, v}; }
// Bit reinterpretations, float <-> int32, of a vector.
template <class To, class From>
To bit_cast(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}
inline i8 bits_of(const f8& x) { return bit_cast<i8>(x); }
inline f8 float_of(const i8& b) { return bit_cast<f8>(b); }

// fv: the vector type of the elementwise loops, kVecLanes floats.
#if defined(__AVX512F__)
using f16 = float __attribute__((vector_size(64)));
using i16 = int32_t __attribute__((vector_size(64)));
template <>
inline f16 splat<f16>(float v) { return _mm512_set1_ps(v); }  // one broadcast (a lane loop compiles to more)
inline i16 bits_of(const f16& x) { return bit_cast<i16>(x); }
inline f16 float_of(const i16& b) { return bit_cast<f16>(b); }
using fv = f16;
constexpr int kVecLanes = 16;
#else
using fv = f8;
constexpr int kVecLanes = 8;
#endif

template <class F>
F load(const float* p) {
  F v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class F>
void store(float* p, const F& v) {
  std::memcpy(p, &v, sizeof v);
}

// Flush-to-zero and denormals-are-zero for one thread while it sweeps panels, restored after. Far from the match,
// w, p and q products fall below FLT_MIN; arithmetic on such denormal floats takes a slow microcode path (the
// backward ran ~4x slower at radius 12). Flushing them changes each term by less than 1.2e-38.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_;
};

// exp(x) by Cephes expf's reduction x = k ln2 + f, |f| <= ln2 / 2 (k rounded with the 1.5 * 2^23 trick, whose low
// mantissa bits are then k itself), and a degree-6 polynomial for e^f (Chebyshev interpolation, Horner form): relative
// error <= 1.2e-7 on [-87, 0] in float arithmetic. Below -87 (exp < 1.7e-38) it returns 0, what every caller wants
// (terms of sums against values >= 1, probabilities); exp(-inf) = 0.
constexpr float kExpPoly[7] = {1.0f, 1.0f, 0.5f, 0.16666415f, 0.04166635f, 0.008375126f, 0.0013941108f};
template <class F>
F fast_exp(const F& x) {
  const F lo = splat<F>(-87.0f), hi = splat<F>(88.0f), round = splat<F>(12582912.0f);
  F xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const F shifted = xc * 1.44269504088896341f + round;
  const F k = shifted - round;
  const F f = xc - k * 0.693359375f + k * 2.12194440e-4f;  // ln2 split in two: the reduction is exact
  F e = splat<F>(kExpPoly[6]);
  for (int d = 5; d >= 0; --d) e = e * f + kExpPoly[d];
  const F scale = float_of((bits_of(shifted) - 0x4B400000 + 127) << 23);  // 2^k, k in [-126, 127]
  return x < lo ? splat<F>(0.0f) : e * scale;
}

#if defined(__AVX512F__)
// The same exp in AVX-512's own instructions (the hot loops spend most of their elementwise time here): one FMA and
// a subtraction round k (the 1.5 * 2^23 trick; vrndscaleps would be two uops on one port), vscalefps multiplies by
// 2^k, and its mask zeroes the lanes below -87; 13 single-uop instructions instead of 19. NaN stays NaN (it is
// neither above 88 nor below -87). (The maskz form of min: GCC 12's unmasked one warns of an uninitialised operand.)
template <>
inline f16 fast_exp<f16>(const f16& x) {
  const __m512 xc = _mm512_maskz_min_ps(0xFFFF, _mm512_set1_ps(88.0f), x);  // min(88, NaN) is NaN
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_NLT_UQ);
  const __m512 round = _mm512_set1_ps(12582912.0f);
  const __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), round), round);
  __m512 f = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), xc);
  f = _mm512_fmadd_ps(k, _mm512_set1_ps(2.12194440e-4f), f);
  __m512 e = _mm512_set1_ps(kExpPoly[6]);
  for (int d = 5; d >= 0; --d) e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(kExpPoly[d]));
  return _mm512_maskz_scalef_ps(live, e, k);
}
#endif


// ---------------------------------------------------------------------------------------------------------------
// Panel products. Every product here has one small side (D or the panel width): S[:, J] = A B_J^T has K = D,
// dA += dS B_J has K = panel width, dB_J^T = A^T dS has D output rows. A register-tiled micro-kernel reads both
// operands in place (strided), writes each block of C once, and needs no packing or C-zeroing pass; with K = 32
// those passes cost OpenBLAS about a third of its time. Two tile shapes: kMicroRows x kGroup (12 x 32 with
// AVX-512, 6 x 16 with AVX2) and, with AVX-512 where a block of C is 64 columns wide, kWideRows x kWideGroup
// (6 x 64). Per step of k a tile loads its row of M (V vectors) and broadcasts one X value per row: 14 loads per 24
// FMAs for 12 x 32, 10 for 6 x 64. The wider tile ran the 64x64 ICON step ~4 % faster (median of twelve alternated
// runs): this machine's cores lose load bandwidth, not FMA throughput, to whatever else runs on them.
// ---------------------------------------------------------------------------------------------------------------

// A micro-tile row is two vectors of the elementwise type fv (the wide tile's four): 32 columns with AVX-512, 16
// otherwise.
constexpr int64_t kGroup = 2 * kVecLanes;  // columns per micro-tile
#if defined(__AVX512F__)
constexpr int kMicroRows = 12;  // 12 x 2 accumulators + 2 operands + 1 broadcast = 27 of AVX-512's 32 registers
constexpr int kWideRows = 6;    // 6 x 4 accumulators + 4 operands + 1 broadcast = 29 registers
constexpr int64_t kWideGroup = 4 * kVecLanes;
#else
constexpr int kMicroRows = 6;   // 6 x 2 accumulators + 2 operands + 1 broadcast = 15 of AVX2's 16 registers
#endif

int64_t padded(int64_t cols) { return (cols + kGroup - 1) / kGroup * kGroup; }

// Rows per chunk where a pass walks a panel in chunks whose similarities stay in L1 between the product that makes
// them and the passes and products that read them: with AVX-512, 48 rows, so that two chunks [48, 64] and two
// B_J^T [32, 64] are 40 KB of a 48 KB L1. A multiple of kVecLanes too (the row statistics' groups of rows).
constexpr int64_t kChunkRows = 4 * kMicroRows;
static_assert(kChunkRows % kVecLanes == 0, "a chunk must hold whole groups of kVecLanes rows");

// a * b + c as one FMA where the CPU has one (-std=c++17 turns off contraction of a * b + c into an FMA).
#if defined(__AVX512F__)
inline f16 multiply_add(const f16& a, const f16& b, const f16& c) { return _mm512_fmadd_ps(a, b, c); }
#else
inline f8 multiply_add(const f8& a, const f8& b, const f8& c) {
#ifdef __FMA__
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}
#endif

// C[R, V * kVecLanes] (=, or += with Accumulate) sum_k X(r, k) M(k, ..), X(r, k) = x[r * x_row + k * x_k], M's row
// k at m + k * ldm.
template <int R, int V, bool Accumulate>
void micro_tile(const float* x, int64_t x_row, int64_t x_k, int64_t K, const float* m, int64_t ldm, float* c,
                int64_t ldc) {
  fv acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Accumulate ? load<fv>(c + r * ldc + v * kVecLanes) : fv{};
  int64_t k = 0;
  do {  // K >= 1 in every call; with a loop that may run 0 times GCC copies acc through the stack around it
    fv b[V];
    for (int v = 0; v < V; ++v) b[v] = load<fv>(m + k * ldm + v * kVecLanes);
    for (int r = 0; r < R; ++r) {
      const fv a = splat<fv>(x[r * x_row + k * x_k]);
      for (int v = 0; v < V; ++v) acc[r][v] = multiply_add(a, b[v], acc[r][v]);
    }
  } while (++k < K);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) store(c + r * ldc + v * kVecLanes, acc[r][v]);
}

// micro_tile<R, V> for the first `rows` (1 .. MaxRows) rows, R fixed at compile time.
template <int V, int MaxRows, bool Accumulate>
void micro_tile_rows(int64_t rows, const float* x, int64_t x_row, int64_t x_k, int64_t K, const float* m, int64_t ldm,
                     float* c, int64_t ldc) {
  if constexpr (MaxRows > 1) {
    if (rows < MaxRows) return micro_tile_rows<V, MaxRows - 1, Accumulate>(rows, x, x_row, x_k, K, m, ldm, c, ldc);
  }
  micro_tile<MaxRows, V, Accumulate>(x, x_row, x_k, K, m, ldm, c, ldc);
}

template <int I>
using Int = std::integral_constant<int, I>;

// C[rows, padded(cols)] (row stride ldc) = (or +=) X[rows, K] M[K, padded(cols)], strides as in micro_tile; K >= 1.
// M's columns cols .. padded(cols) must be readable (callers zero-pad them), and C has room for them. A long K
// (dB's K = PA) is cut into chunks of 64 so that both operands' chunks stay in L1 while every tile reads them: a
// 64-wide panel's 64 rows and 64 rows of A are 24 KB (chunks of 256, 96 KB, ran dB at 60 % of the speed).
template <bool Accumulate>
void panel_product(int64_t rows, int64_t cols, int64_t K, const float* x, int64_t x_row, int64_t x_k,
                   const float* m, int64_t ldm, float* c, int64_t ldc) {
  constexpr int64_t kChunk = 64;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, K - k0);
    // The tile [rows_here, V * kVecLanes] at row i, column g of C, for this chunk of k.
    const auto tile = [&](auto v, auto max_rows, int64_t i, int64_t rows_here, int64_t g) {
      constexpr int V = decltype(v)::value, MaxRows = decltype(max_rows)::value;
      const float *xi = x + i * x_row + k0 * x_k, *mg = m + k0 * ldm + g;
      float* cig = c + i * ldc + g;
      if (!Accumulate && k0 == 0)
        micro_tile_rows<V, MaxRows, false>(rows_here, xi, x_row, x_k, kc, mg, ldm, cig, ldc);
      else
        micro_tile_rows<V, MaxRows, true>(rows_here, xi, x_row, x_k, kc, mg, ldm, cig, ldc);
    };
    for (int64_t i = 0; i < rows; i += kMicroRows) {
      const int64_t rows_here = std::min<int64_t>(kMicroRows, rows - i);
      int64_t g = 0;
#if defined(__AVX512F__)
      for (; g + kWideGroup <= padded(cols); g += kWideGroup)
        for (int64_t h = 0; h < rows_here; h += kWideRows)
          tile(Int<4>{}, Int<kWideRows>{}, i + h, std::min<int64_t>(kWideRows, rows_here - h), g);
#endif
      for (; g < padded(cols); g += kGroup) tile(Int<2>{}, Int<kMicroRows>{}, i, rows_here, g);
    }
  }
}

// Y [rows, D] -> Y^T [D, ld], zero past `rows` up to padded(rows) (ld >= padded(rows)).
void transpose_padded(const float* y, int64_t rows, int64_t D, float* out, int64_t ld) {
  for (int64_t k = 0; k < D; ++k)
    for (int64_t j = 0; j < padded(rows); ++j) out[k * ld + j] = j < rows ? y[j * D + k] : 0.0f;
}

// Y [rows, D] -> [rows, padded(D)], zero in the extra columns.
void copy_padded(const float* y, int64_t rows, int64_t D, float* out) {
  const int64_t ld = padded(D);
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t k = 0; k < ld; ++k) out[j * ld + k] = k < D ? y[j * D + k] : 0.0f;
}

// S[:, J] [PA, padded(bj)] = X [PA, D] Y_J^T, with Y_J^T staged in yt [D, ld].
void similarity_panel(const float* x, int64_t PA, int64_t D, const float* y_panel, int64_t bj, float* yt, float* s,
                      int64_t ld) {
  transpose_padded(y_panel, bj, D, yt, ld);
  panel_product<false>(PA, bj, D, x, D, 1, yt, ld, s, ld);
}

// ---------------------------------------------------------------------------------------------------------------
// Row statistics, kVecLanes rows at a time. A row's running logsumexp kept as a scalar costs two horizontal
// reductions per row and panel (a scalar loop over the lanes each); doing kVecLanes rows together turns those into
// one transposing reduction (below) and keeps the running (max, sum) of the rows in the lanes of one vector.
// ---------------------------------------------------------------------------------------------------------------

#if defined(__AVX512F__)
using iv = i16;
#else
using iv = i8;
#endif

// out lane r = op over the lanes of v[r], r < kVecLanes, by a shuffle tree: each step pairs v[r] with v[r + h] and
// folds the two halves of every 2h-lane block into one h-lane block (lo: the front halves of both, hi: the back
// halves), so after log2(kVecLanes) steps lane r holds row r's result — kVecLanes - 1 folds of 3 instructions.
template <class Op>
fv reduce_rows(fv v[kVecLanes], Op op) {
#if defined(__AVX512F__)
  static constexpr int kMasks[4][16] = {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
                                        {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
                                        {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
                                        {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
#else
  static constexpr int kMasks[3][8] = {
      {0, 1, 2, 3, 8, 9, 10, 11}, {0, 1, 8, 9, 4, 5, 12, 13}, {0, 8, 2, 10, 4, 12, 6, 14}};
#endif
  int step = 0;
  for (int h = kVecLanes / 2; h >= 1; h /= 2, ++step) {
    iv lo, hi;
    std::memcpy(&lo, kMasks[step], sizeof lo);
    hi = lo + h;
    for (int r = 0; r < h; ++r)
      v[r] = op(__builtin_shuffle(v[r], v[r + h], lo), __builtin_shuffle(v[r], v[r + h], hi));
  }
  return v[0];
}

inline fv max_of(const fv& a, const fv& b) { return a > b ? a : b; }

// Lanes [0, rows) of a vector from / to memory (rows <= kVecLanes); a load fills the other lanes with `fill`.
fv load_lanes(const float* p, int64_t rows, float fill) {
  if (rows == kVecLanes) return load<fv>(p);
  float buf[kVecLanes];
  std::fill(buf, buf + kVecLanes, fill);
  std::copy_n(p, rows, buf);
  return load<fv>(buf);
}
void store_lanes(float* p, const fv& v, int64_t rows) {
  if (rows == kVecLanes) return store(p, v);
  float buf[kVecLanes];
  store(buf, v);
  std::copy_n(buf, rows, p);
}

// Running row statistics over the column panels, lane r for row i0 + r: m = the largest S1_ij so far and, in its
// scale, rsum = sum_j exp(S1_ij - m) and tsum = sum_j exp(S1_ij - m) q_ij. In the end r_i = m + log rsum and
// s_i = tsum / rsum.
struct RunningRows {
  float *m, *rsum, *tsum;  // [rows] each
};

// One panel's share of rows i0 .. i0 + rows - 1 (rows <= kVecLanes): s1 points at row i0 of the panel's S1
// (stride ld; -inf in columns [bj, cols)), e2 at row i0 of exp(S2 - colmax) (stride ld), q_scale = 1 / colsum
// (0 past the panel), so that q_ij = e2_ij q_scale_j; cols is a multiple of kVecLanes.
void add_row_stats(const float* s1, const float* e2, const float* q_scale, int64_t ld, int64_t cols, int64_t rows,
                   const RunningRows& run) {
  const fv neg_inf = splat<fv>(-std::numeric_limits<float>::infinity());
  fv part_r[kVecLanes], part_t[kVecLanes];  // per row: lane-wise maxima, then lane-wise sums
  for (int64_t r = 0; r < kVecLanes; ++r) {
    fv mr = neg_inf;
    for (int64_t j = 0; r < rows && j < cols; j += kVecLanes) mr = max_of(mr, load<fv>(s1 + r * ld + j));
    part_r[r] = mr;
  }
  const fv old_m = load_lanes(run.m, rows, -std::numeric_limits<float>::infinity());
  const fv new_m = max_of(old_m, reduce_rows(part_r, max_of));
  float shift[kVecLanes];
  store(shift, new_m);
  for (int64_t r = 0; r < kVecLanes; ++r) {
    fv er{}, et{};
    for (int64_t j = 0; r < rows && j < cols; j += kVecLanes) {
      const fv e1 = fast_exp(load<fv>(s1 + r * ld + j) - shift[r]);
      er += e1;
      et = multiply_add(e1, load<fv>(e2 + r * ld + j) * load<fv>(q_scale + j), et);
    }
    part_r[r] = er;
    part_t[r] = et;
  }
  const auto add = [](const fv& a, const fv& b) { return a + b; };
  // Lanes past `rows` hold -inf - -inf = NaN here; store_lanes drops them.
  const fv rescale = fast_exp(old_m - new_m);
  store_lanes(run.m, new_m, rows);
  store_lanes(run.rsum, load_lanes(run.rsum, rows, 0.0f) * rescale + reduce_rows(part_r, add), rows);
  store_lanes(run.tsum, load_lanes(run.tsum, rows, 0.0f) * rescale + reduce_rows(part_t, add), rows);
}

// Column maxima m_j and sums of exp(x - m_j) over the `rows` rows of a panel (stride ld), columns [0, cols) with
// cols a multiple of kVecLanes; the panel is overwritten with exp(x - m_j). NV vectors of columns at a time, their
// maxima and sums in registers while the rows stream past in memory order (accumulators kept in memory instead make
// a load-op-store chain per row: twice the time).
template <int NV>
void column_block(float* s, int64_t rows, int64_t ld, float* col_max, float* col_sum) {
  fv m[NV], e[NV];
  for (int u = 0; u < NV; ++u) {
    m[u] = splat<fv>(-std::numeric_limits<float>::infinity());
    e[u] = fv{};
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int u = 0; u < NV; ++u) m[u] = max_of(m[u], load<fv>(s + i * ld + u * kVecLanes));
  for (int64_t i = 0; i < rows; ++i)
    for (int u = 0; u < NV; ++u) {
      const fv x = fast_exp(load<fv>(s + i * ld + u * kVecLanes) - m[u]);
      store(s + i * ld + u * kVecLanes, x);
      e[u] += x;
    }
  for (int u = 0; u < NV; ++u) {
    store(col_max + u * kVecLanes, m[u]);
    store(col_sum + u * kVecLanes, e[u]);
  }
}
void column_exp_and_sum(float* s, int64_t rows, int64_t ld, int64_t cols, float* col_max, float* col_sum) {
  for (int64_t j = 0; j < cols;) {
    const int64_t left = (cols - j) / kVecLanes;
    if (left >= 4) column_block<4>(s + j, rows, ld, col_max + j, col_sum + j), j += 4 * kVecLanes;
    else if (left >= 2) column_block<2>(s + j, rows, ld, col_max + j, col_sum + j), j += 2 * kVecLanes;
    else column_block<1>(s + j, rows, ld, col_max + j, col_sum + j), j += kVecLanes;
  }
}

// Where products of probabilities stop being exact. Both passes use products p_ij q_ij (two exps per similarity)
// where they are exact to float precision, and the log domain (three exps) where they are not. A product that
// flushed to zero was below 1.2e-38, so PB of them cost a sum of at least e^kProductFloor = 1.7e-25 at most
// PB * 7e-14 relative (3e-10 at PB = 4096): the forward recomputes in the log domain the rows whose t sum (in the
// scale of the row's largest S1) is below it, and the backward forms w = p q / (s_i + eps) as a product only where
// log(s_i + eps) > kProductFloor (else 1 / (s_i + eps) > e^57 could make flushed p q's cost w more than 1e-13).
constexpr double kProductFloor = -57.0;

// What the backward pass needs from the forward one: O(N * P) row and column statistics.
struct IconStats {
  std::vector<float> r, c;  // [N, PA] row log-normalisers of S1, [N, PB] column log-normalisers of S2
  std::vector<float> l;     // [N, PA] log(s_i + eps), the per-pixel terms of L
  std::vector<float> rho;   // [N, PA] s_i / (s_i + eps)
  // [N, PA] 1 / (s_i + eps) where l_i > kProductFloor, for the backward's w_ij = p_ij q_ij / (s_i + eps); 0 in the
  // other rows, whose w the backward takes in the log domain.
  std::vector<float> inv_s;
  double total = 0;         // sum over n and i of l_i (that is, sum_n L_n)
};

// The rows whose t sum fell below kProductFloor in blocked_forward: log s_i = logsumexp_j ((S1_ij - r_i) +
// (S2_ij - c_j)) again, in the log domain (a lane-wise running max and sum per row, two exps per similarity), for
// `rows` (indices into [N * PA], ascending) in groups of up to kChunkRows rows of one batch element.
void log_domain_rows(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                     int64_t panel_cols, const IconStats& st, const std::vector<int64_t>& rows,
                     std::vector<double>& log_s) {
  const int64_t PA = sh.PA, PB = sh.PB, D = sh.D, group_rows = kChunkRows;
  const int64_t width = std::min(panel_cols, PB), ld = padded(width);
  std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) in `rows`
  for (size_t b = 0; b < rows.size();) {
    size_t e = b + 1;
    while (e < rows.size() && e - b < static_cast<size_t>(group_rows) && rows[e] / PA == rows[b] / PA) ++e;
    groups.emplace_back(b, e);
    b = e;
  }
#pragma omp parallel
  {
    const FlushDenormals flush;
    std::vector<float> scratch(static_cast<size_t>(2 * group_rows * D + 2 * D * ld + 2 * group_rows * ld + ld +
                                                   2 * group_rows * kVecLanes));
    float *x1 = scratch.data(), *x2 = x1 + group_rows * D, *bt1 = x2 + group_rows * D, *bt2 = bt1 + D * ld,
          *s1 = bt2 + D * ld, *s2 = s1 + group_rows * ld, *c = s2 + group_rows * ld, *run_m = c + ld,
          *run_s = run_m + group_rows * kVecLanes;
#pragma omp for schedule(dynamic)
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto [begin, end] = groups[g];
      const int64_t count = static_cast<int64_t>(end - begin), n = rows[begin] / PA;
      for (int64_t k = 0; k < count; ++k) {
        const int64_t i = rows[begin + k];  // [N * PA] index: the A pixel's row in a1, a2
        std::copy_n(a1 + i * D, D, x1 + k * D);
        std::copy_n(a2 + i * D, D, x2 + k * D);
      }
      std::fill(run_m, run_m + count * kVecLanes, std::numeric_limits<float>::lowest());  // finite: no -inf - -inf
      std::fill(run_s, run_s + count * kVecLanes, 0.0f);
      for (int64_t j0 = 0; j0 < PB; j0 += width) {
        const int64_t bj = std::min(width, PB - j0), cols = (bj + kVecLanes - 1) / kVecLanes * kVecLanes;
        similarity_panel(x1, count, D, b1 + (n * PB + j0) * D, bj, bt1, s1, ld);
        similarity_panel(x2, count, D, b2 + (n * PB + j0) * D, bj, bt2, s2, ld);
        for (int64_t j = 0; j < cols; ++j)  // +inf past the panel: t = -inf there
          c[j] = j < bj ? st.c[static_cast<size_t>(n * PB + j0 + j)] : std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < count; ++k) {
          const float ri = st.r[static_cast<size_t>(rows[begin + k])];
          fv m = load<fv>(run_m + k * kVecLanes), sum = load<fv>(run_s + k * kVecLanes);
          for (int64_t j = 0; j < cols; j += kVecLanes) {
            const fv t = (load<fv>(s1 + k * ld + j) - ri) + (load<fv>(s2 + k * ld + j) - load<fv>(c + j));
            const fv m_new = max_of(m, t);
            sum = sum * fast_exp(m - m_new) + fast_exp(t - m_new);
            m = m_new;
          }
          store(run_m + k * kVecLanes, m);
          store(run_s + k * kVecLanes, sum);
        }
      }
      for (int64_t k = 0; k < count; ++k) {
        const float* m = run_m + k * kVecLanes;
        const double top = *std::max_element(m, m + kVecLanes);
        double sum = 0;
        for (int lane = 0; lane < kVecLanes; ++lane) sum += run_s[k * kVecLanes + lane] * std::exp(m[lane] - top);
        log_s[static_cast<size_t>(rows[begin + k])] = top + std::log(sum);
      }
    }
  }
}

// One pass over the column panels J of width panel_cols, OpenMP over (batch element, panel) tasks:
//   S2[:, J] -> column maxima and sums (a whole column is in the panel), c_J, and q = exp(S2 - colmax) / colsum;
//   S1[:, J], in chunks of rows kept in L1 -> the running row statistics (RunningRows) of S1 and of the t sum
//   sum_j p_ij q_ij, per thread, merged after the panels.
// Two exps per similarity: the t sum reuses the column pass's exp(S2 - colmax) and S1's exp(S1 - m), so it is a
// sum of products p q that underflows for rows far from any match (below e^kProductFloor): those rows, and only
// those, are summed again in the log domain (log_domain_rows). Both sums are in the scale of the row's largest S1,
// so log s_i = log tsum - log rsum loses nothing to the size of |F|^2 (at "attempt 0" both are ~1).
IconStats blocked_forward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                          const IconOptions& opt) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  const int64_t width = std::min(opt.panel_cols, PB), ld = padded(width);
  const int64_t panels = (PB + width - 1) / width;
  const int64_t chunk_rows = kChunkRows;
  IconStats st;
  st.r.resize(static_cast<size_t>(N * PA));
  st.c.resize(static_cast<size_t>(N * PB));
  st.l.resize(static_cast<size_t>(N * PA));
  st.rho.resize(static_cast<size_t>(N * PA));
  st.inv_s.resize(static_cast<size_t>(N * PA));
  const int64_t rows = N * PA;
  std::vector<double> log_s(static_cast<size_t>(rows));
  std::vector<char> poor(static_cast<size_t>(rows));  // t sum below e^kProductFloor
  // Per thread: running m, rsum, tsum for every row of every batch element, [3, N * PA].
  std::vector<float> row_stats(static_cast<size_t>(omp_get_max_threads() * 3 * rows));
#pragma omp parallel
  {
    const FlushDenormals flush;
    float* mine = row_stats.data() + omp_get_thread_num() * 3 * rows;
    std::fill(mine, mine + rows, -std::numeric_limits<float>::infinity());
    std::fill(mine + rows, mine + 3 * rows, 0.0f);
    thread_local HugePageBuffer scratch;  // kept between calls, on 2 MB pages (engine/huge_page_buffer.h)
    float* yt = scratch.floats(static_cast<size_t>(D * ld + PA * ld + chunk_rows * ld + 3 * ld));
    float *e2 = yt + D * ld, *s1 = e2 + PA * ld, *col_max = s1 + chunk_rows * ld, *col_sum = col_max + ld,
          *q_scale = col_sum + ld;
#pragma omp for schedule(static)  // static: each thread's partial sums are the same every run
    for (int64_t task = 0; task < N * panels; ++task) {
      const int64_t n = task / panels, j0 = (task % panels) * width, bj = std::min(width, PB - j0);
      const float *a1n = a1 + n * PA * D, *b1n = b1 + n * PB * D, *a2n = a2 + n * PA * D, *b2n = b2 + n * PB * D;
      similarity_panel(a2n, PA, D, b2n + j0 * D, bj, yt, e2, ld);
      column_exp_and_sum(e2, PA, ld, padded(bj), col_max, col_sum);  // padding columns hold 0: harmless
      // Whole vectors along the rows: past the panel, S1 = -inf and q_scale = 0 make both terms 0.
      const int64_t cols = (bj + kVecLanes - 1) / kVecLanes * kVecLanes;
      for (int64_t j = 0; j < cols; ++j) {
        if (j < bj) st.c[static_cast<size_t>(n * PB + j0 + j)] = col_max[j] + std::log(col_sum[j]);
        q_scale[j] = j < bj ? 1.0f / col_sum[j] : 0.0f;
      }
      transpose_padded(b1n + j0 * D, bj, D, yt, ld);
      for (int64_t i0 = 0; i0 < PA; i0 += chunk_rows) {
        const int64_t chunk = std::min(chunk_rows, PA - i0);
        panel_product<false>(chunk, bj, D, a1n + i0 * D, D, 1, yt, ld, s1, ld);
        for (int64_t i = 0; i < chunk; ++i)
          std::fill(s1 + i * ld + bj, s1 + i * ld + cols, -std::numeric_limits<float>::infinity());
        for (int64_t i = 0; i < chunk; i += kVecLanes) {
          float* at = mine + n * PA + i0 + i;  // this group's rows in the [3, N * PA] running statistics
          add_row_stats(s1 + i * ld, e2 + (i0 + i) * ld, q_scale, ld, cols, std::min<int64_t>(kVecLanes, chunk - i),
                        {at, at + rows, at + 2 * rows});
        }
      }
    }
    // After the implicit barrier: merge the threads' running sums, row by row.
    const int threads = omp_get_num_threads();
#pragma omp for
    for (int64_t i = 0; i < rows; ++i) {
      float top = -std::numeric_limits<float>::infinity();
      for (int t = 0; t < threads; ++t) top = std::max(top, row_stats[static_cast<size_t>(t * 3 * rows + i)]);
      double rsum = 0, tsum = 0;
      for (int t = 0; t < threads; ++t) {
        const float* theirs = row_stats.data() + t * 3 * rows;
        const double scale = std::exp(static_cast<double>(theirs[i]) - top);
        rsum += theirs[rows + i] * scale;
        tsum += theirs[2 * rows + i] * scale;
      }
      st.r[i] = static_cast<float>(top + std::log(rsum));
      const double log_t = std::log(tsum);
      poor[i] = log_t < kProductFloor;  // false for NaN: a NaN input reaches the loss
      log_s[i] = log_t - std::log(rsum);
    }
  }
  std::vector<int64_t> poor_rows;
  for (int64_t i = 0; i < rows; ++i)
    if (poor[i]) poor_rows.push_back(i);
  if (!poor_rows.empty()) log_domain_rows(a1, b1, a2, b2, sh, opt.panel_cols, st, poor_rows, log_s);
  double total = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const double l = log_s_plus_eps(log_s[i], opt.epsilon);
    st.l[i] = static_cast<float>(l);
    st.rho[i] = static_cast<float>(std::exp(log_s[i] - l));
    st.inv_s[i] = l > kProductFloor ? static_cast<float>(std::exp(-l)) : 0.0f;
    total += l;
  }
  st.total = total;
  return st;
}

// The per-row quantities of one chunk of rows (pointers at its first row).
struct ChunkRows {
  const float *r, *l, *rho, *inv_s;
};

// The backward's elementwise work on one chunk of rows: s1, s2 [rows, ld] hold S1, S2; c [cols] the panel's column
// log-normalisers, +inf past the panel (so that q = 0 and w = 0 there). Writes alpha w and q to the panels' rows
// w, q [rows, ld], adds alpha w to kappa [cols], and overwrites s1 with dS1 = alpha (w - rho p). alpha w = alpha p q /
// (s_i + eps) is a product where inv_s says that is exact (kProductFloor), else taken in the log domain.
void gradients_of_similarities(float* s1, const float* s2, int64_t ld, int64_t rows, int64_t cols, const float* c,
                               const ChunkRows& row, float alpha, float* w, float* q, float* kappa) {
  for (int64_t i = 0; i < rows; ++i) {
    float *s1i = s1 + i * ld, *wi = w + i * ld, *qi = q + i * ld;
    const float* s2i = s2 + i * ld;
    const fv ri = splat<fv>(row.r[i]), alpha_rho = splat<fv>(alpha * row.rho[i]);
    // alpha_w(log p, log q, p, q) = alpha w.
    const auto sweep = [&](auto alpha_w) {
      for (int64_t j = 0; j < cols; j += kVecLanes) {
        const fv log_p = load<fv>(s1i + j) - ri, log_q = load<fv>(s2i + j) - load<fv>(c + j);
        const fv p = fast_exp(log_p), qij = fast_exp(log_q), wij = alpha_w(log_p, log_q, p, qij);
        store(wi + j, wij);
        store(qi + j, qij);
        store(kappa + j, load<fv>(kappa + j) + wij);
        store(s1i + j, wij - alpha_rho * p);
      }
    };
    if (row.inv_s[i] > 0) {
      const fv alpha_inv_s = splat<fv>(alpha * row.inv_s[i]);
      sweep([&](const fv&, const fv&, const fv& p, const fv& qij) { return p * qij * alpha_inv_s; });
    } else {
      const fv li = splat<fv>(row.l[i]), alpha_v = splat<fv>(alpha);
      sweep([&](const fv& log_p, const fv& log_q, const fv&, const fv&) {
        return alpha_v * fast_exp((log_p + log_q) - li);
      });
    }
  }
}

// Accumulates alpha * dL/d(input) into each non-null gradient ([N, PA, D] for ga*, [N, PB, D] for gb*).
// OpenMP over (batch element, column panel [PA, panel_cols]) tasks; kappa is complete inside a panel. A panel is
// walked in chunks of kChunkRows rows, so that each chunk's similarities and gradients stay in L1 from the product
// that makes them to the products that use them (walking whole panels, each of the six products and two
// elementwise passes streamed a 1 MB panel through L2 and beyond):
//   pass 1, per chunk: S1, S2 -> p, q, w -> kappa += w, dS1 = alpha (w - rho p) -> dA1 += dS1 B1_J,
//                      dB1_J^T += A1^T dS1; w and q are kept in two panels [PA, panel_cols] for pass 2;
//   pass 2, per chunk (kappa now complete): dS2 = alpha (w - q kappa) -> dA2 += dS2 B2_J, dB2_J^T += A2^T dS2.
// (w and kappa are kept multiplied by alpha, which saves a multiplication in both passes.)
// dA goes into a per-thread partial [N, PA, padded(D)] summed after the panels; dB_J is owned by the task.
void blocked_backward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                      const IconStats& st, float alpha, int64_t panel_cols, float* ga1, float* gb1, float* ga2,
                      float* gb2) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  const int64_t width = std::min(panel_cols, PB), ld = padded(width), ldd = padded(D);
  const int64_t panels = (PB + width - 1) / width;
  const int64_t chunk_rows = kChunkRows;
  const bool need_a = ga1 || ga2;
  const int64_t part_size = N * PA * ldd;  // one partial gradient of a thread
  // The calling thread's buffer, kept between calls like the panels (each thread zeroes its part below).
  thread_local HugePageBuffer partial_buffer;
  float* partial =
      need_a ? partial_buffer.floats(static_cast<size_t>(omp_get_max_threads() * 2 * part_size)) : nullptr;
#pragma omp parallel
  {
    const FlushDenormals flush;
    float* part_a1 = need_a ? partial + omp_get_thread_num() * 2 * part_size : nullptr;
    float* part_a2 = need_a ? part_a1 + part_size : nullptr;
    if (need_a) std::fill(part_a1, part_a1 + 2 * part_size, 0.0f);
    // Panels alpha w and q [PA, ld]; chunks S1 then dS1, S2 then dS2 [chunk_rows, ld]; alpha kappa and the column
    // log-normalisers c padded with +inf [ld]; B1_J^T, B2_J^T and the two dB_J^T accumulators [D, ld]; B1_J, B2_J
    // with padded rows [ld, ldd].
    thread_local HugePageBuffer scratch;  // kept between calls, on 2 MB pages (engine/huge_page_buffer.h)
    float* w =
        scratch.floats(static_cast<size_t>(2 * PA * ld + 2 * chunk_rows * ld + 2 * ld + 4 * D * ld + 2 * ld * ldd));
    float *q = w + PA * ld, *c1 = q + PA * ld, *c2 = c1 + chunk_rows * ld,
          *kappa = c2 + chunk_rows * ld, *c_pad = kappa + ld, *b1t = c_pad + ld, *b2t = b1t + D * ld,
          *db1t = b2t + D * ld, *db2t = db1t + D * ld, *b1_rows = db2t + D * ld, *b2_rows = b1_rows + ld * ldd;
    // The products of one chunk's gradient dS [rows, ld] (rows i0 ..): dA[i0 ..] += dS B_J (into the partial),
    // dB_J^T += A[i0 ..]^T dS (the first chunk overwrites).
    const auto gradient_products = [&](const float* ds, int64_t i0, int64_t rows, int64_t bj, const float* an,
                                       const float* b_rows, float* part_a, float* dbt) {
      if (part_a) panel_product<true>(rows, D, bj, ds, ld, 1, b_rows, ldd, part_a + i0 * ldd, ldd);
      if (!dbt) return;
      if (i0 == 0) panel_product<false>(D, bj, rows, an, 1, D, ds, ld, dbt, ld);
      else panel_product<true>(D, bj, rows, an + i0 * D, 1, D, ds, ld, dbt, ld);
    };
    // dB_J [bj, D] += the transpose of the accumulated dB_J^T [D, ld].
    const auto add_grad_b = [&](const float* dbt, int64_t bj, float* gb) {
      for (int64_t j = 0; j < bj; ++j)
        for (int64_t k = 0; k < D; ++k) gb[j * D + k] += dbt[k * ld + j];
    };
#pragma omp for schedule(static)  // static: each thread's partial sums are the same every run
    for (int64_t task = 0; task < N * panels; ++task) {
      const int64_t n = task / panels, j0 = (task % panels) * width, bj = std::min(width, PB - j0);
      const int64_t cols = (bj + kVecLanes - 1) / kVecLanes * kVecLanes;  // whole vectors; S1, S2 = 0 past bj
      const float *a1n = a1 + n * PA * D, *b1n = b1 + n * PB * D, *a2n = a2 + n * PA * D, *b2n = b2 + n * PB * D;
      const float *r = st.r.data() + n * PA, *cj = st.c.data() + n * PB + j0, *l = st.l.data() + n * PA,
                  *rho = st.rho.data() + n * PA, *inv_s = st.inv_s.data() + n * PA;
      float* pa1 = ga1 ? part_a1 + n * PA * ldd : nullptr;
      float* pa2 = ga2 ? part_a2 + n * PA * ldd : nullptr;
      transpose_padded(b1n + j0 * D, bj, D, b1t, ld);
      transpose_padded(b2n + j0 * D, bj, D, b2t, ld);
      if (ga1) copy_padded(b1n + j0 * D, bj, D, b1_rows);
      if (ga2) copy_padded(b2n + j0 * D, bj, D, b2_rows);
      std::fill(kappa, kappa + ld, 0.0f);
      for (int64_t j = 0; j < cols; ++j) c_pad[j] = j < bj ? cj[j] : std::numeric_limits<float>::infinity();
      for (int64_t i0 = 0; i0 < PA; i0 += chunk_rows) {  // pass 1
        const int64_t rows = std::min(chunk_rows, PA - i0);
        panel_product<false>(rows, bj, D, a1n + i0 * D, D, 1, b1t, ld, c1, ld);
        panel_product<false>(rows, bj, D, a2n + i0 * D, D, 1, b2t, ld, c2, ld);
        gradients_of_similarities(c1, c2, ld, rows, cols, c_pad, {r + i0, l + i0, rho + i0, inv_s + i0}, alpha,
                                  w + i0 * ld, q + i0 * ld, kappa);
        gradient_products(c1, i0, rows, bj, a1n, b1_rows, pa1, gb1 ? db1t : nullptr);
      }
      if (!(ga2 || gb2)) {
        if (gb1) add_grad_b(db1t, bj, gb1 + (n * PB + j0) * D);
        continue;
      }
      for (int64_t i0 = 0; i0 < PA; i0 += chunk_rows) {  // pass 2
        const int64_t rows = std::min(chunk_rows, PA - i0);
        for (int64_t i = 0; i < rows; ++i) {
          float* ds = c2 + i * ld;
          const float *wi = w + (i0 + i) * ld, *qi = q + (i0 + i) * ld;
          for (int64_t j = 0; j < cols; j += kVecLanes)  // dS2 = alpha (w - q kappa)
            store(ds + j, load<fv>(wi + j) - load<fv>(qi + j) * load<fv>(kappa + j));
        }
        gradient_products(c2, i0, rows, bj, a2n, b2_rows, pa2, gb2 ? db2t : nullptr);
      }
      if (gb1) add_grad_b(db1t, bj, gb1 + (n * PB + j0) * D);
      if (gb2) add_grad_b(db2t, bj, gb2 + (n * PB + j0) * D);
    }
    if (need_a) {  // after the implicit barrier: every thread's partials are complete
      const int threads = omp_get_num_threads();
#pragma omp for
      for (int64_t i = 0; i < N * PA; ++i)
        for (int64_t k = 0; k < D; ++k) {
          float sum1 = 0, sum2 = 0;
          for (int t = 0; t < threads; ++t) {
            sum1 += partial[static_cast<size_t>(t * 2 * part_size + i * ldd + k)];
            sum2 += partial[static_cast<size_t>(t * 2 * part_size + part_size + i * ldd + k)];
          }
          if (ga1) ga1[i * D + k] += sum1;
          if (ga2) ga2[i * D + k] += sum2;
        }
    }
  }
}

// The dense reference: whole [PA, PB] matrices in double, one batch element at a time. Returns sum_n L_n and,
// when any gradient pointer is non-null, accumulates alpha * dL/d(input) into it.
double dense_icon(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                  double eps, double alpha, float* ga1, float* gb1, float* ga2, float* gb2) {
  const int64_t PA = sh.PA, PB = sh.PB, D = sh.D;
  const auto lse = [](const std::vector<double>& v) {
    const double m = *std::max_element(v.begin(), v.end());
    double s = 0;
    for (double x : v) s += std::exp(x - m);
    return m + std::log(s);
  };
  double total = 0;
  std::vector<double> S1(static_cast<size_t>(PA * PB)), S2(S1.size()), dS1(S1.size()), dS2(S1.size());
  std::vector<double> r(static_cast<size_t>(PA)), c(static_cast<size_t>(PB)), l(r.size()), rho(r.size());
  std::vector<double> kappa(c.size()), rowbuf(static_cast<size_t>(PB)), colbuf(static_cast<size_t>(PA));
  for (int64_t n = 0; n < sh.N; ++n) {
    const float *A1 = a1 + n * PA * D, *B1 = b1 + n * PB * D, *A2 = a2 + n * PA * D, *B2 = b2 + n * PB * D;
    for (int64_t i = 0; i < PA; ++i)
      for (int64_t j = 0; j < PB; ++j) {
        double d1 = 0, d2 = 0;
        for (int64_t k = 0; k < D; ++k) {
          d1 += static_cast<double>(A1[i * D + k]) * B1[j * D + k];
          d2 += static_cast<double>(A2[i * D + k]) * B2[j * D + k];
        }
        S1[i * PB + j] = d1;
        S2[i * PB + j] = d2;
      }
    for (int64_t i = 0; i < PA; ++i) {
      for (int64_t j = 0; j < PB; ++j) rowbuf[j] = S1[i * PB + j];
      r[i] = lse(rowbuf);
    }
    for (int64_t j = 0; j < PB; ++j) {
      for (int64_t i = 0; i < PA; ++i) colbuf[i] = S2[i * PB + j];
      c[j] = lse(colbuf);
    }
    for (int64_t i = 0; i < PA; ++i) {
      for (int64_t j = 0; j < PB; ++j) rowbuf[j] = (S1[i * PB + j] - r[i]) + (S2[i * PB + j] - c[j]);
      const double log_s = lse(rowbuf);
      l[i] = log_s_plus_eps(log_s, eps);
      rho[i] = std::exp(log_s - l[i]);
      total += l[i];
    }
    if (!(ga1 || gb1 || ga2 || gb2)) continue;
    std::fill(kappa.begin(), kappa.end(), 0.0);
    for (int64_t i = 0; i < PA; ++i)
      for (int64_t j = 0; j < PB; ++j) {
        const double w = std::exp(S1[i * PB + j] + S2[i * PB + j] - r[i] - c[j] - l[i]);
        dS1[i * PB + j] = w - rho[i] * std::exp(S1[i * PB + j] - r[i]);
        dS2[i * PB + j] = w;
        kappa[j] += w;
      }
    for (int64_t i = 0; i < PA; ++i)
      for (int64_t j = 0; j < PB; ++j) dS2[i * PB + j] -= std::exp(S2[i * PB + j] - c[j]) * kappa[j];
    for (int64_t i = 0; i < PA; ++i)
      for (int64_t j = 0; j < PB; ++j) {
        const double g1 = alpha * dS1[i * PB + j], g2 = alpha * dS2[i * PB + j];
        for (int64_t k = 0; k < D; ++k) {
          if (ga1) ga1[(n * PA + i) * D + k] += static_cast<float>(g1 * B1[j * D + k]);
          if (gb1) gb1[(n * PB + j) * D + k] += static_cast<float>(g1 * A1[i * D + k]);
          if (ga2) ga2[(n * PA + i) * D + k] += static_cast<float>(g2 * B2[j * D + k]);
          if (gb2) gb2[(n * PB + j) * D + k] += static_cast<float>(g2 * A2[i * D + k]);
        }
      }
  }
  return total;
}

}  // namespace

Tensor icon_loss(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2, const IconOptions& options) {
  const IconShape sh = check_icon_inputs(a1, b1, a2, b2, options, "icon_loss");
  IconStats stats = blocked_forward(a1.data(), b1.data(), a2.data(), b2.data(), sh, options);
  const double scale = loss_scale(sh, options);
  Tensor out = Tensor::scalar(static_cast<float>(-scale * stats.total));
  if (!any_requires_grad({&a1, &b1, &a2, &b2})) return out;
  // The backward recomputes the panels, so it keeps the four inputs and the O(N * P) statistics; the total is
  // not needed.
  stats.total = 0;
  auto keep = std::make_shared<IconStats>(std::move(stats));
  Storage sa1 = a1.impl()->data, sb1 = b1.impl()->data, sa2 = a2.impl()->data, sb2 = b2.impl()->data;
  const int64_t panel_cols = options.panel_cols;
  record(out, "icon_loss", {a1, b1, a2, b2},
         [sa1, sb1, sa2, sb2, sh, keep, scale, panel_cols](const float* g, const std::vector<float*>& gin) {
           const float alpha = static_cast<float>(-scale * g[0]);
           blocked_backward(sa1->data(), sb1->data(), sa2->data(), sb2->data(), sh, *keep, alpha, panel_cols,
                            gin[0], gin[1], gin[2], gin[3]);
         });
  return out;
}

Tensor icon_loss_dense(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2,
                       const IconOptions& options) {
  const IconShape sh = check_icon_inputs(a1, b1, a2, b2, options, "icon_loss_dense");
  const double eps = options.epsilon, scale = loss_scale(sh, options);
  const double total =
      dense_icon(a1.data(), b1.data(), a2.data(), b2.data(), sh, eps, 0, nullptr, nullptr, nullptr, nullptr);
  Tensor out = Tensor::scalar(static_cast<float>(-scale * total));
  if (!any_requires_grad({&a1, &b1, &a2, &b2})) return out;
  Storage sa1 = a1.impl()->data, sb1 = b1.impl()->data, sa2 = a2.impl()->data, sb2 = b2.impl()->data;
  record(out, "icon_loss_dense", {a1, b1, a2, b2},
         [sa1, sb1, sa2, sb2, sh, eps, scale](const float* g, const std::vector<float*>& gin) {
           dense_icon(sa1->data(), sb1->data(), sa2->data(), sb2->data(), sh, eps, -scale * g[0], gin[0], gin[1],
                      gin[2], gin[3]);
         });
  return out;
}

Tensor icon_pixels(const Tensor& feature_map) {
  check(feature_map.defined() && feature_map.dim() == 4, "icon_pixels: expected a feature map [N, D, H, W], got ",
        feature_map.defined() ? shape_str(feature_map.shape()) : std::string("an undefined tensor"));
  const Shape& s = feature_map.shape();
  return reshape(permute(feature_map, {0, 2, 3, 1}), {s[0], s[2] * s[3], s[1]});
}

}  // namespace eq
