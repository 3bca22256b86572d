// FMICON loss: blocked forward/backward (never stores a P x P matrix) and the dense reference.
//
// Notation for one batch element (A pixels i, B pixels j):
//   S1 = A1 B1^T, S2 = A2 B2^T                          [PA, PB] similarities, never stored whole
//   r_i = logsumexp_j S1_ij,  c_j = logsumexp_i S2_ij   row / column log-normalisers
//   p_ij = exp(S1_ij - r_i)   (row softmax),  q_ij = exp(S2_ij - c_j)   (column softmax)
//   s_i = sum_j p_ij q_ij,  l_i = log(s_i + eps),  L = sum_i l_i
// log s_i = logsumexp_j ((S1_ij - r_i) + (S2_ij - c_j)) is computed in the log domain, so a poor match (s_i below
// float's range, e.g. radius-30 features) still gives a finite loss and gradient.
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
//   forward : S2 panel -> c_J; S1 panel -> running row logsumexps of S1 and of (S2 - c) + S1   (2 products)
//   backward: S1, S2 panels -> w, kappa, dS1, dS2 -> dA1, dA2 (partials), dB1_J, dB2_J (owned)  (6 products)
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
// pairs of SSE registers otherwise) with a scalar tail; fast_exp is one template for every width.
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
inline float splat<float>(float v) { return v; }
template <>
inline f8 splat<f8>(float v) { return f8{v, v, v, v, v, v, v, v}; }
// Bit reinterpretations, float <-> int32, of a scalar or of a vector.
template <class To, class From>
To bit_cast(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}
inline int32_t bits_of(float x) { return bit_cast<int32_t>(x); }
inline float float_of(int32_t b) { return bit_cast<float>(b); }
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

// Calls body(j, Lanes<F>{}) with F = fv for j = 0, kVecLanes, 2 kVecLanes, ... and with F = float for the last
// n % kVecLanes elements;
// the body reads F as `typename decltype(lanes)::type`.
template <class F>
struct Lanes {
  using type = F;
};
template <class Body>
void for_lanes(int64_t n, Body body) {
  int64_t j = 0;
  for (; j + kVecLanes <= n; j += kVecLanes) body(j, Lanes<fv>{});
  for (; j < n; ++j) body(j, Lanes<float>{});
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
// The same exp in AVX-512's own instructions (the hot loops spend most of their elementwise time here): vrndscaleps
// rounds k, vscalefps multiplies by 2^k, and its mask zeroes the lanes below -87; 13 instructions instead of 19.
// NaN stays NaN (it is neither above 88 nor below -87). (The maskz forms of min and roundscale: GCC 12's unmasked
// ones warn of an uninitialised operand.)
template <>
inline f16 fast_exp<f16>(const f16& x) {
  const __m512 xc = _mm512_maskz_min_ps(0xFFFF, _mm512_set1_ps(88.0f), x);  // min(88, NaN) is NaN
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_NLT_UQ);
  const __m512 k = _mm512_maskz_roundscale_ps(0xFFFF, _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
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
// operands in place (strided), writes each kMicroRows x kGroup block once (12 x 32 with AVX-512, 6 x 16 with AVX2),
// and needs no packing or C-zeroing pass; with K = 32 those passes cost OpenBLAS about a third of its time.
// ---------------------------------------------------------------------------------------------------------------

// A micro-tile row is two vectors of the elementwise type fv: 32 columns with AVX-512, 16 otherwise.
constexpr int64_t kGroup = 2 * kVecLanes;  // columns per micro-tile
#if defined(__AVX512F__)
constexpr int kMicroRows = 12;  // 12 x 2 accumulators + 2 operands + 1 broadcast = 27 of AVX-512's 32 registers
#else
constexpr int kMicroRows = 6;   // 6 x 2 accumulators + 2 operands + 1 broadcast = 15 of AVX2's 16 registers
#endif

int64_t padded(int64_t cols) { return (cols + kGroup - 1) / kGroup * kGroup; }

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

// C[R, kGroup] (=, or += with Accumulate) sum_k X(r, k) M(k, 0..kGroup), X(r, k) = x[r * x_row + k * x_k], M's row
// k at m + k * ldm.
template <int R, bool Accumulate>
void micro_tile(const float* x, int64_t x_row, int64_t x_k, int64_t K, const float* m, int64_t ldm, float* c,
                int64_t ldc) {
  fv acc[R][2];
  for (int r = 0; r < R; ++r) {
    acc[r][0] = Accumulate ? load<fv>(c + r * ldc) : fv{};
    acc[r][1] = Accumulate ? load<fv>(c + r * ldc + kVecLanes) : fv{};
  }
  for (int64_t k = 0; k < K; ++k) {
    const fv b0 = load<fv>(m + k * ldm), b1 = load<fv>(m + k * ldm + kVecLanes);
    for (int r = 0; r < R; ++r) {
      const fv a = splat<fv>(x[r * x_row + k * x_k]);
      acc[r][0] = multiply_add(a, b0, acc[r][0]);
      acc[r][1] = multiply_add(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    store(c + r * ldc, acc[r][0]);
    store(c + r * ldc + kVecLanes, acc[r][1]);
  }
}

// micro_tile with R = rows (1 .. kMicroRows), R fixed at compile time.
template <bool Accumulate, int R = kMicroRows>
void micro_tile_rows(int64_t rows, const float* x, int64_t x_row, int64_t x_k, int64_t K, const float* m, int64_t ldm,
                     float* c, int64_t ldc) {
  if constexpr (R > 1) {
    if (rows < R) return micro_tile_rows<Accumulate, R - 1>(rows, x, x_row, x_k, K, m, ldm, c, ldc);
  }
  micro_tile<R, Accumulate>(x, x_row, x_k, K, m, ldm, c, ldc);
}

// C[rows, padded(cols)] (row stride ldc) = (or +=) X[rows, K] M[K, padded(cols)], strides as in micro_tile.
// M's columns cols .. padded(cols) must be readable (callers zero-pad them), and C has room for them. A long K
// (dB's K = PA) is cut into chunks of 64 so that both operands' chunks stay in L1 while every tile reads them: a
// 64-wide panel's 64 rows and 64 rows of A are 24 KB (chunks of 256, 96 KB, ran dB at 60 % of the speed).
template <bool Accumulate>
void panel_product(int64_t rows, int64_t cols, int64_t K, const float* x, int64_t x_row, int64_t x_k,
                   const float* m, int64_t ldm, float* c, int64_t ldc) {
  constexpr int64_t kChunk = 64;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, K - k0);
    const bool overwrite = !Accumulate && k0 == 0;
    for (int64_t i = 0; i < rows; i += kMicroRows) {
      const float* xi = x + i * x_row + k0 * x_k;
      float* ci = c + i * ldc;
      const int64_t rows_here = std::min<int64_t>(kMicroRows, rows - i);
      for (int64_t g = 0; g < padded(cols); g += kGroup) {
        const float* mg = m + k0 * ldm + g;
        if (overwrite) micro_tile_rows<false>(rows_here, xi, x_row, x_k, kc, mg, ldm, ci + g, ldc);
        else micro_tile_rows<true>(rows_here, xi, x_row, x_k, kc, mg, ldm, ci + g, ldc);
      }
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

// Running row logsumexps over the column panels: lane r of (max, sum) belongs to row i0 + r.
struct RowLse {
  fv max, sum;
};
RowLse load_rows(const float* max, const float* sum, int64_t rows) {
  float m[kVecLanes], s[kVecLanes];
  std::fill(m, m + kVecLanes, -std::numeric_limits<float>::infinity());
  std::fill(s, s + kVecLanes, 0.0f);
  std::copy_n(max, rows, m);
  std::copy_n(sum, rows, s);
  return {load<fv>(m), load<fv>(s)};
}
void store_rows(const RowLse& x, int64_t rows, float* max, float* sum) {
  float m[kVecLanes], s[kVecLanes];
  store(m, x.max);
  store(s, x.sum);
  std::copy_n(m, rows, max);
  std::copy_n(s, rows, sum);
}

// One panel's share of the row statistics of rows i0 .. i0 + rows - 1 (rows <= kVecLanes): s1, s2 point at row i0
// of the S1 and S2 panels (stride ld, `cols` a multiple of kVecLanes, S1's columns past the panel -inf), c = the
// panel's c_j (+inf past the panel). Overwrites S2 with t = (S2 - c) + S1 and adds the panel to the running
// logsumexps r (of S1) and t, stored at r_max/r_sum/t_max/t_sum[0 .. rows).
void add_row_stats(const float* s1, float* s2, const float* c, int64_t ld, int64_t cols, int64_t rows, float* r_max,
                   float* r_sum, float* t_max, float* t_sum) {
  const fv neg_inf = splat<fv>(-std::numeric_limits<float>::infinity());
  fv part_r[kVecLanes], part_t[kVecLanes];  // per row: lane-wise maxima, then lane-wise sums
  for (int64_t r = 0; r < kVecLanes; ++r) {
    fv mr = neg_inf, mt = neg_inf;
    for (int64_t j = 0; r < rows && j < cols; j += kVecLanes) {
      const fv v1 = load<fv>(s1 + r * ld + j), t = (load<fv>(s2 + r * ld + j) - load<fv>(c + j)) + v1;
      store(s2 + r * ld + j, t);
      mr = max_of(mr, v1);
      mt = max_of(mt, t);
    }
    part_r[r] = mr;
    part_t[r] = mt;
  }
  RowLse rl = load_rows(r_max, r_sum, rows), tl = load_rows(t_max, t_sum, rows);
  const fv new_r = max_of(rl.max, reduce_rows(part_r, max_of)), new_t = max_of(tl.max, reduce_rows(part_t, max_of));
  float shift_r[kVecLanes], shift_t[kVecLanes];
  store(shift_r, new_r);
  store(shift_t, new_t);
  for (int64_t r = 0; r < kVecLanes; ++r) {
    fv er{}, et{};
    for (int64_t j = 0; r < rows && j < cols; j += kVecLanes) {
      er += fast_exp(load<fv>(s1 + r * ld + j) - shift_r[r]);
      et += fast_exp(load<fv>(s2 + r * ld + j) - shift_t[r]);
    }
    part_r[r] = er;
    part_t[r] = et;
  }
  const auto add = [](const fv& a, const fv& b) { return a + b; };
  // Lanes past `rows` hold -inf - -inf = NaN here; store_rows drops them.
  rl = {new_r, rl.sum * fast_exp(rl.max - new_r) + reduce_rows(part_r, add)};
  tl = {new_t, tl.sum * fast_exp(tl.max - new_t) + reduce_rows(part_t, add)};
  store_rows(rl, rows, r_max, r_sum);
  store_rows(tl, rows, t_max, t_sum);
}

// Column maxima and sums of exp(x - max) over the `rows` rows of a panel (stride ld), columns [0, cols) with cols a
// multiple of kVecLanes. NV vectors of columns at a time, their maxima and sums in registers while the rows stream
// past in memory order (accumulators kept in memory instead make a load-op-store chain per row: twice the time).
template <int NV>
void column_block(const float* s, int64_t rows, int64_t ld, float* col_max, float* col_sum) {
  fv m[NV], e[NV];
  for (int u = 0; u < NV; ++u) {
    m[u] = splat<fv>(-std::numeric_limits<float>::infinity());
    e[u] = fv{};
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int u = 0; u < NV; ++u) m[u] = max_of(m[u], load<fv>(s + i * ld + u * kVecLanes));
  for (int64_t i = 0; i < rows; ++i)
    for (int u = 0; u < NV; ++u) e[u] += fast_exp(load<fv>(s + i * ld + u * kVecLanes) - m[u]);
  for (int u = 0; u < NV; ++u) {
    store(col_max + u * kVecLanes, m[u]);
    store(col_sum + u * kVecLanes, e[u]);
  }
}
void column_max_and_sum(const float* s, int64_t rows, int64_t ld, int64_t cols, float* col_max, float* col_sum) {
  for (int64_t j = 0; j < cols;) {
    const int64_t left = (cols - j) / kVecLanes;
    if (left >= 4) column_block<4>(s + j, rows, ld, col_max + j, col_sum + j), j += 4 * kVecLanes;
    else if (left >= 2) column_block<2>(s + j, rows, ld, col_max + j, col_sum + j), j += 2 * kVecLanes;
    else column_block<1>(s + j, rows, ld, col_max + j, col_sum + j), j += kVecLanes;
  }
}

// What the backward pass needs from the forward one: O(N * P) row and column statistics.
struct IconStats {
  std::vector<float> r, c;  // [N, PA] row log-normalisers of S1, [N, PB] column log-normalisers of S2
  std::vector<float> l;     // [N, PA] log(s_i + eps), the per-pixel terms of L
  std::vector<float> rho;   // [N, PA] s_i / (s_i + eps)
  double total = 0;         // sum over n and i of l_i (that is, sum_n L_n)
};

// One pass over the column panels J of width panel_cols, OpenMP over (batch element, panel) tasks:
//   S2[:, J] -> c_J (a whole column is in the panel);  S1[:, J] -> running r_i = logsumexp_j S1_ij and running
//   t_i = logsumexp_j ((S2_ij - c_j) + S1_ij), per thread, merged after the panels: log s_i = t_i - r_i.
// Adding S1 last keeps the well-matched case exact: at "attempt 0" the maxima of both sums are the same float
// S1_ii, and log s_i = (max_t - max_r) + (log sum_t - log sum_r) loses nothing to the size of |F|^2.
IconStats blocked_forward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                          const IconOptions& opt) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  const int64_t width = std::min(opt.panel_cols, PB), ld = padded(width);
  const int64_t panels = (PB + width - 1) / width;
  IconStats st;
  st.r.resize(static_cast<size_t>(N * PA));
  st.c.resize(static_cast<size_t>(N * PB));
  st.l.resize(static_cast<size_t>(N * PA));
  st.rho.resize(static_cast<size_t>(N * PA));
  // Per thread: running (max, sum) of r and of t for every row of every batch element, [4, N * PA].
  const int64_t rows = N * PA;
  std::vector<float> row_stats(static_cast<size_t>(omp_get_max_threads() * 4 * rows));
#pragma omp parallel
  {
    const FlushDenormals flush;
    float* mine = row_stats.data() + omp_get_thread_num() * 4 * rows;
    std::fill(mine, mine + rows, -std::numeric_limits<float>::infinity());
    std::fill(mine + rows, mine + 2 * rows, 0.0f);
    std::fill(mine + 2 * rows, mine + 3 * rows, -std::numeric_limits<float>::infinity());
    std::fill(mine + 3 * rows, mine + 4 * rows, 0.0f);
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(D * ld + 2 * PA * ld + 2 * ld));
    float *yt = scratch.data(), *s1 = yt + D * ld, *s2 = s1 + PA * ld, *col_max = s2 + PA * ld,
          *col_sum = col_max + ld;
#pragma omp for schedule(static)  // static: each thread's partial sums are the same every run
    for (int64_t task = 0; task < N * panels; ++task) {
      const int64_t n = task / panels, j0 = (task % panels) * width, bj = std::min(width, PB - j0);
      const float *a1n = a1 + n * PA * D, *b1n = b1 + n * PB * D, *a2n = a2 + n * PA * D, *b2n = b2 + n * PB * D;
      similarity_panel(a2n, PA, D, b2n + j0 * D, bj, yt, s2, ld);
      column_max_and_sum(s2, PA, ld, padded(bj), col_max, col_sum);  // padding columns hold 0: harmless
      for (int64_t j = 0; j < bj; ++j) col_max[j] += std::log(col_sum[j]);  // now c_j
      std::copy_n(col_max, bj, st.c.data() + n * PB + j0);
      similarity_panel(a1n, PA, D, b1n + j0 * D, bj, yt, s1, ld);
      // Whole vectors along the rows: past the panel, S1 = -inf and c = +inf make both terms exp(-inf) = 0.
      const int64_t cols = (bj + kVecLanes - 1) / kVecLanes * kVecLanes;
      for (int64_t j = bj; j < cols; ++j) {
        col_max[j] = std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < PA; ++i) s1[i * ld + j] = -std::numeric_limits<float>::infinity();
      }
      for (int64_t i = 0; i < PA; i += kVecLanes) {
        float* at = mine + n * PA + i;  // rows i .. of batch element n in the [4, N * PA] running statistics
        add_row_stats(s1 + i * ld, s2 + i * ld, col_max, ld, cols, std::min<int64_t>(kVecLanes, PA - i), at,
                      at + rows, at + 2 * rows, at + 3 * rows);
      }
    }
    // After the implicit barrier: merge the threads' running sums, row by row.
    const int threads = omp_get_num_threads();
#pragma omp for
    for (int64_t i = 0; i < rows; ++i) {
      float max_r = -std::numeric_limits<float>::infinity(), max_t = max_r;
      for (int t = 0; t < threads; ++t) {
        max_r = std::max(max_r, row_stats[static_cast<size_t>(t * 4 * rows + i)]);
        max_t = std::max(max_t, row_stats[static_cast<size_t>(t * 4 * rows + 2 * rows + i)]);
      }
      double sum_r = 0, sum_t = 0;
      for (int t = 0; t < threads; ++t) {
        const float* theirs = row_stats.data() + t * 4 * rows;
        sum_r += theirs[rows + i] * std::exp(static_cast<double>(theirs[i]) - max_r);
        sum_t += theirs[3 * rows + i] * std::exp(static_cast<double>(theirs[2 * rows + i]) - max_t);
      }
      const double log_s = (static_cast<double>(max_t) - max_r) + (std::log(sum_t) - std::log(sum_r));
      const double l = log_s_plus_eps(log_s, opt.epsilon);
      st.r[i] = static_cast<float>(max_r + std::log(sum_r));
      st.l[i] = static_cast<float>(l);
      st.rho[i] = static_cast<float>(std::exp(log_s - l));
    }
  }
  double total = 0;
  for (float l : st.l) total += l;
  st.total = total;
  return st;
}

// Accumulates alpha * dL/d(input) into each non-null gradient ([N, PA, D] for ga*, [N, PB, D] for gb*).
// OpenMP over (batch element, column panel [PA, panel_cols]) tasks; kappa is complete inside a panel. Per panel J,
// all with panel_product: dA += dS B_J into a per-thread partial [N, PA, padded(D)] summed after the panels, and
// dB_J += (A^T dS)^T, owned by the task.
void blocked_backward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                      const IconStats& st, float alpha, int64_t panel_cols, float* ga1, float* gb1, float* ga2,
                      float* gb2) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  const int64_t width = std::min(panel_cols, PB), ld = padded(width), ldd = padded(D);
  const int64_t panels = (PB + width - 1) / width;
  const bool need_a = ga1 || ga2;
  const int64_t part_size = N * PA * ldd;  // one partial gradient of a thread
  std::vector<float> partial(need_a ? static_cast<size_t>(omp_get_max_threads() * 2 * part_size) : 0);
#pragma omp parallel
  {
    const FlushDenormals flush;
    float* part_a1 = need_a ? partial.data() + omp_get_thread_num() * 2 * part_size : nullptr;
    float* part_a2 = need_a ? part_a1 + part_size : nullptr;
    if (need_a) std::fill(part_a1, part_a1 + 2 * part_size, 0.0f);
    // Three panels [PA, ld]: S1 then dS1, S2 then q then dS2, and w; kappa [ld]; B_J^T or (A^T dS) [D, ld];
    // B_J with padded rows [ld, ldd].
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(3 * PA * ld + ld + D * ld + ld * ldd));
    float *s1 = scratch.data(), *s2 = s1 + PA * ld, *w = s2 + PA * ld, *kappa = w + PA * ld, *yt = kappa + ld,
          *b_rows = yt + D * ld;
    // dB_J [bj, D] += (A^T dS)^T: the product lands in yt [D, ld], then is added transposed.
    const auto add_grad_b = [&](const float* a, const float* ds, int64_t bj, float* gb) {
      panel_product<false>(D, bj, PA, a, 1, D, ds, ld, yt, ld);
      for (int64_t j = 0; j < bj; ++j)
        for (int64_t k = 0; k < D; ++k) gb[j * D + k] += yt[k * ld + j];
    };
#pragma omp for schedule(static)  // static: each thread's partial sums are the same every run
    for (int64_t task = 0; task < N * panels; ++task) {
      const int64_t n = task / panels, j0 = (task % panels) * width, bj = std::min(width, PB - j0);
      const float *a1n = a1 + n * PA * D, *b1n = b1 + n * PB * D, *a2n = a2 + n * PA * D, *b2n = b2 + n * PB * D;
      const float *r = st.r.data() + n * PA, *cj = st.c.data() + n * PB + j0, *l = st.l.data() + n * PA,
                  *rho = st.rho.data() + n * PA;
      similarity_panel(a1n, PA, D, b1n + j0 * D, bj, yt, s1, ld);
      similarity_panel(a2n, PA, D, b2n + j0 * D, bj, yt, s2, ld);
      std::fill(kappa, kappa + ld, 0.0f);
      for (int64_t i = 0; i < PA; ++i) {
        float *s1i = s1 + i * ld, *s2i = s2 + i * ld, *wi = w + i * ld;
        const float ri = r[i], li = l[i], alpha_rho = alpha * rho[i];
        // w = p q / (s_i + eps): as a product (two exps, not three) unless 1 / (s_i + eps) > e^57, where p q's
        // flush to zero below 1.2e-38 could cost w more than 1e-13 (such rows, far from a match, take the log
        // domain).
        const auto row = [&](auto as_product, float inv_s) {
          for_lanes(bj, [&](int64_t j, auto lanes) {
            using F = typename decltype(lanes)::type;
            const F log_p = load<F>(s1i + j) - ri, log_q = load<F>(s2i + j) - load<F>(cj + j);
            const F p = fast_exp(log_p), q = fast_exp(log_q);
            F wij;
            if constexpr (decltype(as_product)::value) wij = p * q * inv_s;
            else wij = fast_exp((log_p + log_q) - li);
            store(wi + j, wij);
            store(kappa + j, load<F>(kappa + j) + wij);
            store(s1i + j, alpha * wij - alpha_rho * p);  // dS1 = alpha (w - rho p)
            store(s2i + j, q);
          });
        };
        if (li > -57.0f) row(std::true_type{}, std::exp(-li));
        else row(std::false_type{}, 0.0f);
      }
      for (int64_t i = 0; i < PA; ++i) {
        float *s2i = s2 + i * ld, *wi = w + i * ld;
        for_lanes(bj, [&](int64_t j, auto lanes) {
          using F = typename decltype(lanes)::type;
          store(s2i + j, alpha * (load<F>(wi + j) - load<F>(s2i + j) * load<F>(kappa + j)));  // dS2
        });
      }
      if (ga1) {
        copy_padded(b1n + j0 * D, bj, D, b_rows);
        panel_product<true>(PA, D, bj, s1, ld, 1, b_rows, ldd, part_a1 + n * PA * ldd, ldd);
      }
      if (ga2) {
        copy_padded(b2n + j0 * D, bj, D, b_rows);
        panel_product<true>(PA, D, bj, s2, ld, 1, b_rows, ldd, part_a2 + n * PA * ldd, ldd);
      }
      if (gb1) add_grad_b(a1n, s1, bj, gb1 + (n * PB + j0) * D);
      if (gb2) add_grad_b(a2n, s2, bj, gb2 + (n * PB + j0) * D);
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
