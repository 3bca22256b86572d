// FMICON loss: blocked forward/backward (never stores a P x P matrix) and the dense reference.
//
// Notation for one batch element (A pixels i, B pixels j):
//   S1 = A1 B1^T, S2 = A2 B2^T                          [PA, PB] similarities, never stored whole
//   r_i = logsumexp_j S1_ij,  c_j = logsumexp_i S2_ij   row / column log-normalisers
//   p_ij = exp(S1_ij - r_i)   (row softmax),  q_ij = exp(S2_ij - c_j)   (column softmax)
//   s_i = sum_j p_ij q_ij,  l_i = log(s_i + eps),  L = sum_i l_i
// log s_i = logsumexp_j (S1_ij + S2_ij - c_j) - r_i is computed in the log domain, so a poor match (s_i below
// float's range, e.g. radius-30 features) still gives a finite loss and gradient.
//
// Gradient (derivation). dL/ds_i = 1/(s_i + eps), so with w_ij = p_ij q_ij / (s_i + eps):
//   dL/dp_ij = q_ij / (s_i + eps),  dL/dq_ij = p_ij / (s_i + eps).
// Row-softmax backward, dS1_ij = p_ij (dL/dp_ij - sum_j' p_ij' dL/dp_ij'):
//   dL/dS1_ij = w_ij - p_ij rho_i,   rho_i = sum_j w_ij = s_i / (s_i + eps)   (= 1 when eps = 0)
// Column-softmax backward, dS2_ij = q_ij (dL/dq_ij - sum_i' q_i'j dL/dq_i'j):
//   dL/dS2_ij = w_ij - q_ij kappa_j,  kappa_j = sum_i w_ij
// and w_ij = exp(S1_ij + S2_ij - r_i - c_j - l_i) <= 1 stays representable. Then dA1 = dS1 B1, dB1 = dS1^T A1,
// dA2 = dS2 B2, dB2 = dS2^T A2. rho_i is a row statistic known after the forward pass; kappa_j needs every row,
// which is why the backward walks column panels [PA, panel_cols] (kappa is complete inside one) and keeps
// per-thread partial sums for the row-indexed gradients dA1, dA2, reduced after each batch element.
//
// Passes (each recomputes its tiles with eq::gemm; OpenBLAS runs single-threaded inside the parallel regions):
//   forward 1: r = row logsumexp of A1 B1^T, c = row logsumexp of B2 A2^T        OpenMP over (n, row blocks)
//   forward 2: log s = row logsumexp of (A1 B1^T + A2 B2^T - c) - r; loss        OpenMP over (n, row blocks)
//   backward : per column panel, S1, S2 -> w, kappa, dS1, dS2 -> four gemms      OpenMP over column panels
#include "losses/icon.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/matmul.h"
#include "engine/shape_ops.h"

namespace eq {
namespace {

using Storage = std::shared_ptr<std::vector<float>>;

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
  check(opt.tile_rows >= 1 && opt.tile_cols >= 1 && opt.panel_cols >= 1, op,
        ": tile_rows, tile_cols and panel_cols must be >= 1, got ", opt.tile_rows, ", ", opt.tile_cols, ", ",
        opt.panel_cols);
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
// loops run on 8-float vectors (GCC/Clang vector extensions: AVX with -march=native, pairs of SSE registers
// otherwise) with a scalar tail; fast_exp is one template for both widths.
// ---------------------------------------------------------------------------------------------------------------

using f8 = float __attribute__((vector_size(32)));
using i8 = int32_t __attribute__((vector_size(32)));

inline float splat(float v, float) { return v; }
inline f8 splat(float v, f8) { return f8{} + v; }
// Bit reinterpretations, float <-> int32, of a scalar or of a vector.
template <class To, class From>
To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}
inline int32_t bits_of(float x) { return bit_cast<int32_t>(x); }
inline float float_of(int32_t b) { return bit_cast<float>(b); }
inline i8 bits_of(f8 x) { return bit_cast<i8>(x); }
inline f8 float_of(i8 b) { return bit_cast<f8>(b); }

template <class F>
F load(const float* p) {
  F v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class F>
void store(float* p, F v) {
  std::memcpy(p, &v, sizeof v);
}

// Calls body(j, F{}) with F = f8 for j = 0, 8, 16, ... and with F = float for the last n % 8 elements.
template <class Body>
void for_lanes(int64_t n, Body body) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) body(j, f8{});
  for (; j < n; ++j) body(j, float{});
}

// exp(x) by Cephes expf's reduction x = k ln2 + f (k rounded with the 1.5 * 2^23 trick, whose low mantissa bits
// are then k itself) and its degree-7 polynomial: relative error ~1e-7. Below -87 (exp < 1.7e-38) it returns 0,
// what every caller wants (terms of sums against values >= 1, probabilities); exp(-inf) = 0.
template <class F>
F fast_exp(F x) {
  const F lo = splat(-87.0f, F{}), hi = splat(88.0f, F{}), round = splat(12582912.0f, F{});
  F xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const F shifted = xc * 1.44269504088896341f + round;
  const F k = shifted - round;
  const F f = xc - k * 0.693359375f + k * 2.12194440e-4f;  // ln2 split in two: the reduction is exact
  F p = splat(1.9875691500e-4f, F{});
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const F e = p * f * f + f + 1.0f;
  const F scale = float_of((bits_of(shifted) - 0x4B400000 + 127) << 23);  // 2^k, k in [-126, 127]
  return x < lo ? splat(0.0f, F{}) : e * scale;
}

inline float horizontal_sum(f8 v) {
  float s = 0;
  for (int k = 0; k < 8; ++k) s += v[k];
  return s;
}

// out[n * rows + i] = logsumexp_j t_ij for every batch element n, where X* are [N, rows, D], Y* are [N, cols, D]:
//   t_ij = X1_i . Y1_j                                                  (x2 null)
//   t_ij = (X1_i . Y1_j - row_shift_i) + (X2_i . Y2_j - col_shift_j)     (shifts [N, rows] and [N, cols])
// The second form gives log s_i directly, each bracket near 0 where it matters: subtracting r_i ~ |F|^2 after the
// sum instead would lose float precision exactly in the well-matched ("attempt 0") regime.
// Tiles [tile_rows, tile_cols] are folded into a running max and a running sum rescaled to it (online softmax).
void blocked_row_logsumexp(int64_t N, int64_t rows, int64_t cols, int64_t D, const float* x1, const float* y1,
                           const float* x2, const float* y2, const float* row_shift, const float* col_shift,
                           int64_t tile_rows, int64_t tile_cols, float* out) {
  tile_rows = std::min(tile_rows, rows);
  tile_cols = std::min(tile_cols, cols);
  const int64_t row_blocks = (rows + tile_rows - 1) / tile_rows;
#pragma omp parallel
  {
    std::vector<float> tile(static_cast<size_t>(tile_rows * tile_cols) * (x2 ? 2 : 1));
    std::vector<float> run_max(static_cast<size_t>(tile_rows)), run_sum(static_cast<size_t>(tile_rows));
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < N * row_blocks; ++task) {
      const int64_t n = task / row_blocks, i0 = (task % row_blocks) * tile_rows;
      const int64_t bi = std::min(tile_rows, rows - i0);
      std::fill(run_max.begin(), run_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(run_sum.begin(), run_sum.end(), 0.0f);
      for (int64_t j0 = 0; j0 < cols; j0 += tile_cols) {
        const int64_t bj = std::min(tile_cols, cols - j0);
        float *t = tile.data(), *t2 = t + bi * bj;
        gemm(false, true, bi, bj, D, 1.0f, x1 + (n * rows + i0) * D, D, y1 + (n * cols + j0) * D, D, 0.0f, t, bj);
        if (x2)
          gemm(false, true, bi, bj, D, 1.0f, x2 + (n * rows + i0) * D, D, y2 + (n * cols + j0) * D, D, 0.0f, t2, bj);
        const float* cs = x2 ? col_shift + n * cols + j0 : nullptr;
        for (int64_t i = 0; i < bi; ++i) {
          float *ti = t + i * bj, *t2i = t2 + i * bj;
          const float rs = x2 ? row_shift[n * rows + i0 + i] : 0.0f;
          f8 max8 = splat(run_max[i], f8{});
          float max1 = run_max[i];
          for_lanes(bj, [&](int64_t j, auto lanes) {
            using F = decltype(lanes);
            F v = load<F>(ti + j);
            if (x2) store(ti + j, v = (v - rs) + (load<F>(t2i + j) - load<F>(cs + j)));
            if constexpr (std::is_same_v<F, f8>) max8 = v > max8 ? v : max8;
            else max1 = v > max1 ? v : max1;
          });
          float m = max1;
          for (int k = 0; k < 8; ++k) m = std::max(m, max8[k]);
          f8 sum8{};
          float sum1 = 0;
          for_lanes(bj, [&](int64_t j, auto lanes) {
            using F = decltype(lanes);
            const F e = fast_exp(load<F>(ti + j) - m);
            if constexpr (std::is_same_v<F, f8>) sum8 += e;
            else sum1 += e;
          });
          run_sum[i] = run_sum[i] * fast_exp(run_max[i] - m) + horizontal_sum(sum8) + sum1;
          run_max[i] = m;
        }
      }
      for (int64_t i = 0; i < bi; ++i) out[n * rows + i0 + i] = run_max[i] + std::log(run_sum[i]);
    }
  }
}

// What the backward pass needs from the forward one: O(N * P) row and column statistics.
struct IconStats {
  std::vector<float> r, c;  // [N, PA] row log-normalisers of S1, [N, PB] column log-normalisers of S2
  std::vector<float> l;     // [N, PA] log(s_i + eps), the per-pixel terms of L
  std::vector<float> rho;   // [N, PA] s_i / (s_i + eps)
  double total = 0;         // sum over n and i of l_i (that is, sum_n L_n)
};

IconStats blocked_forward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                          const IconOptions& opt) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  IconStats st;
  st.r.resize(static_cast<size_t>(N * PA));
  st.c.resize(static_cast<size_t>(N * PB));
  st.l.resize(static_cast<size_t>(N * PA));
  st.rho.resize(static_cast<size_t>(N * PA));
  const int64_t tr = opt.tile_rows, tc = opt.tile_cols;
  blocked_row_logsumexp(N, PA, PB, D, a1, b1, nullptr, nullptr, nullptr, nullptr, tr, tc, st.r.data());
  // Column logsumexp of A2 B2^T = row logsumexp of B2 A2^T: each block owns its outputs, no cross-thread sums.
  blocked_row_logsumexp(N, PB, PA, D, b2, a2, nullptr, nullptr, nullptr, nullptr, tr, tc, st.c.data());
  // st.l first receives log s_i = logsumexp_j ((S1_ij - r_i) + (S2_ij - c_j)).
  blocked_row_logsumexp(N, PA, PB, D, a1, b1, a2, b2, st.r.data(), st.c.data(), tr, tc, st.l.data());
  double total = 0;
  for (int64_t k = 0; k < N * PA; ++k) {
    const double log_s = st.l[k];
    const double l = log_s_plus_eps(log_s, opt.epsilon);
    st.l[k] = static_cast<float>(l);
    st.rho[k] = static_cast<float>(std::exp(log_s - l));
    total += l;
  }
  st.total = total;
  return st;
}

// Accumulates alpha * dL/d(input) into each non-null gradient ([N, PA, D] for ga*, [N, PB, D] for gb*).
void blocked_backward(const float* a1, const float* b1, const float* a2, const float* b2, const IconShape& sh,
                      const IconStats& st, float alpha, int64_t panel_cols, float* ga1, float* gb1, float* ga2,
                      float* gb2) {
  const int64_t N = sh.N, PA = sh.PA, PB = sh.PB, D = sh.D;
  const int64_t width = std::min(panel_cols, PB);
  const int64_t panels = (PB + width - 1) / width;
  const bool need_a = ga1 || ga2;
  // Per-thread partial dA1 and dA2 [PA, D] each: several column panels add into every row.
  std::vector<float> partial(need_a ? static_cast<size_t>(omp_get_max_threads() * 2 * PA * D) : 0);
  for (int64_t n = 0; n < N; ++n) {
    const float *a1n = a1 + n * PA * D, *b1n = b1 + n * PB * D, *a2n = a2 + n * PA * D, *b2n = b2 + n * PB * D;
    const float *r = st.r.data() + n * PA, *c = st.c.data() + n * PB, *l = st.l.data() + n * PA,
                *rho = st.rho.data() + n * PA;
#pragma omp parallel
    {
      float* part_a1 = need_a ? partial.data() + omp_get_thread_num() * 2 * PA * D : nullptr;
      float* part_a2 = need_a ? part_a1 + PA * D : nullptr;
      if (need_a) std::fill(part_a1, part_a1 + 2 * PA * D, 0.0f);
      // Three panels [PA, width]: S1 then dS1, S2 then q then dS2, and w; plus kappa [width].
      thread_local std::vector<float> scratch;
      scratch.resize(static_cast<size_t>(3 * PA * width + width));
      float *s1 = scratch.data(), *s2 = s1 + PA * width, *w = s2 + PA * width, *kappa = w + PA * width;
#pragma omp for schedule(dynamic)
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * width, bj = std::min(width, PB - j0);
        gemm(false, true, PA, bj, D, 1.0f, a1n, D, b1n + j0 * D, D, 0.0f, s1, bj);
        gemm(false, true, PA, bj, D, 1.0f, a2n, D, b2n + j0 * D, D, 0.0f, s2, bj);
        const float* cj = c + j0;
        std::fill(kappa, kappa + bj, 0.0f);
        for (int64_t i = 0; i < PA; ++i) {
          float *s1i = s1 + i * bj, *s2i = s2 + i * bj, *wi = w + i * bj;
          const float ri = r[i], li = l[i], alpha_rho = alpha * rho[i];
          for_lanes(bj, [&](int64_t j, auto lanes) {
            using F = decltype(lanes);
            const F v1 = load<F>(s1i + j), v2 = load<F>(s2i + j), cjj = load<F>(cj + j);
            const F log_p = v1 - ri, log_q = v2 - cjj;
            const F wij = fast_exp((log_p + log_q) - li);
            store(wi + j, wij);
            store(kappa + j, load<F>(kappa + j) + wij);
            store(s1i + j, alpha * wij - alpha_rho * fast_exp(log_p));  // dS1 = alpha (w - rho p)
            store(s2i + j, fast_exp(log_q));                             // q
          });
        }
        for (int64_t i = 0; i < PA; ++i) {
          float *s2i = s2 + i * bj, *wi = w + i * bj;
#pragma omp simd
          for (int64_t j = 0; j < bj; ++j) s2i[j] = alpha * (wi[j] - s2i[j] * kappa[j]);  // dS2 = alpha (w - q kappa)
        }
        if (ga1) gemm(false, false, PA, D, bj, 1.0f, s1, bj, b1n + j0 * D, D, 1.0f, part_a1, D);
        if (gb1) gemm(true, false, bj, D, PA, 1.0f, s1, bj, a1n, D, 1.0f, gb1 + (n * PB + j0) * D, D);
        if (ga2) gemm(false, false, PA, D, bj, 1.0f, s2, bj, b2n + j0 * D, D, 1.0f, part_a2, D);
        if (gb2) gemm(true, false, bj, D, PA, 1.0f, s2, bj, a2n, D, 1.0f, gb2 + (n * PB + j0) * D, D);
      }
      if (need_a) {  // after the implicit barrier: every thread's partials are complete
        const int threads = omp_get_num_threads();
#pragma omp for
        for (int64_t e = 0; e < PA * D; ++e) {
          float sum1 = 0, sum2 = 0;
          for (int t = 0; t < threads; ++t) {
            sum1 += partial[static_cast<size_t>(t * 2 * PA * D + e)];
            sum2 += partial[static_cast<size_t>(t * 2 * PA * D + PA * D + e)];
          }
          if (ga1) ga1[n * PA * D + e] += sum1;
          if (ga2) ga2[n * PA * D + e] += sum2;
        }
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
  // The backward recomputes the tiles, so it keeps the four inputs and the O(N * P) statistics; the total is
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
