// equilab — direct convolution micro-kernels (see direct_conv.h): register blocks of output rows x pixels over
// flat padded planes (forward-type), per-pixel outer products over framed planes (weight-type).
#include "engine/direct_conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "engine/error.h"

namespace eq {

namespace {

// kLanes floats per vector; kRowBlock output rows x 2 vectors of pixels stay in registers in the forward-type kernel
// (16 of AVX-512's 32 registers; 8 of AVX's or SSE's 16).
#if defined(__AVX512F__)
constexpr int kLanes = 16, kRowBlock = 8;
#elif defined(__AVX__)
constexpr int kLanes = 8, kRowBlock = 4;
#else
constexpr int kLanes = 4, kRowBlock = 4;  // SSE: 16 registers of 4 floats
#endif
constexpr int64_t kMaxKernelWidth = 31;  // the forward-type kernel keeps one lane mask per kernel column
using vf = float __attribute__((vector_size(kLanes * sizeof(float))));
using vi = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));

template <class V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}
inline vf load(const float* p) { return load<vf>(p); }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

// One broadcast instruction (GCC turns both vf{} + a and a lane-by-lane fill into longer sequences), and the lanes
// of a vector load that are kept (the others read as 0): a mask register with AVX-512, a -1/0 lane vector otherwise.
#if defined(__AVX512F__)
inline vf splat(float a) { return _mm512_set1_ps(a); }
using Mask = __mmask16;
inline Mask lanes_within(vi v, int32_t lo, int32_t hi) {  // lo <= v < hi
  return _mm512_cmpge_epi32_mask(__m512i(v), _mm512_set1_epi32(lo)) &
         _mm512_cmplt_epi32_mask(__m512i(v), _mm512_set1_epi32(hi));
}
inline vf masked_load(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
#else
#if defined(__AVX__)
inline vf splat(float a) { return _mm256_set1_ps(a); }
#else
inline vf splat(float a) {
  vf v;
  for (int l = 0; l < kLanes; ++l) v[l] = a;
  return v;
}
#endif
using Mask = vi;
inline Mask lanes_within(vi v, int32_t lo, int32_t hi) { return (v >= lo) & (v < hi); }
inline vf masked_load(Mask m, const float* p) { return vf(vi(load(p)) & m); }
#endif

// Chunks of a pixel range ending at `end`: two vectors while more than one is left, then one.
inline int vectors_at(int64_t end, int64_t p0) { return end - p0 > kLanes ? 2 : 1; }

// The blocks of output rows: full kRowBlock blocks, the rest in halving blocks (8, 4, 2, 1).
inline int row_block_at(int64_t R, int64_t r0) {
  int rb = kRowBlock;
  while (rb > R - r0) rb /= 2;
  return rb;
}

// out[r](p0 .. p0 + NV*kLanes - 1) (flattened pixels, cut at `end`) for the RB rows of one block; wb = the block's
// packed weights [I, kk, RB]; column[p] = p mod W. KW = kernel width, or 0 for "g.kw at run time".
// In the flat layout the tap (ki, kj) of pixel p is at p + ki d W + kj d from the plane's start (its margin of pw
// absorbs the -(kw/2) d); lanes whose column x + (kj - kw/2) d leaves [0, W) are masked to zero.
template <int RB, int NV, int KW>
void forward_block(const DirectConvShape& g, const float* const* in, int64_t I, const float* wb, const float* bias,
                   float* const* out, bool accumulate, int64_t p0, int64_t end, const int32_t* column) {
  const int64_t kw = KW ? KW : g.kw, kk = g.kh * kw, row_step = g.d * g.W;
  Mask keep[KW ? KW : kMaxKernelWidth][NV];
  for (int64_t kj = 0; kj < kw; ++kj)
    for (int u = 0; u < NV; ++u) {
      const int32_t shift = static_cast<int32_t>((kj - kw / 2) * g.d);
      keep[kj][u] = lanes_within(load<vi>(column + p0 + u * kLanes), -shift, static_cast<int32_t>(g.W) - shift);
    }
  vf acc[RB][NV] = {};
  for (int64_t i = 0; i < I; ++i)
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const float* row = in[i] + p0 + ki * row_step;
      const float* wk = wb + (i * kk + ki * kw) * RB;
#pragma GCC unroll 7
      for (int64_t kj = 0; kj < kw; ++kj, wk += RB) {
        vf v[NV];
#pragma GCC unroll 2
        for (int u = 0; u < NV; ++u) {
          const float* q = row + kj * g.d + u * kLanes;
          v[u] = kj == kw / 2 ? load(q) : masked_load(keep[kj][u], q);  // the centre column never leaves the row
        }
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) {
          const vf w = splat(wk[r]);
#pragma GCC unroll 2
          for (int u = 0; u < NV; ++u) acc[r][u] += w * v[u];
        }
      }
    }
  const int64_t valid = std::min<int64_t>(NV * kLanes, end - p0);
  for (int r = 0; r < RB; ++r) {
    float* o = out[r] + p0;
    const float start = bias && !accumulate ? bias[r] : 0.0f;
    if (valid == NV * kLanes) {
      for (int u = 0; u < NV; ++u) store(o + u * kLanes, (accumulate ? load(o + u * kLanes) : splat(start)) + acc[r][u]);
      continue;
    }
    float lanes[NV * kLanes];  // the last chunk: only `valid` pixels exist
    std::memcpy(lanes, acc[r], sizeof lanes);
    for (int64_t k = 0; k < valid; ++k) o[k] = (accumulate ? o[k] : start) + lanes[k];
  }
}

template <int NV, int KW>
void forward_rows(int rb, const DirectConvShape& g, const float* const* in, int64_t I, const float* wb,
                  const float* bias, float* const* out, bool accumulate, int64_t p0, int64_t end,
                  const int32_t* column) {
  switch (rb) {
    case 8: return forward_block<8, NV, KW>(g, in, I, wb, bias, out, accumulate, p0, end, column);
    case 4: return forward_block<4, NV, KW>(g, in, I, wb, bias, out, accumulate, p0, end, column);
    case 2: return forward_block<2, NV, KW>(g, in, I, wb, bias, out, accumulate, p0, end, column);
    default: return forward_block<1, NV, KW>(g, in, I, wb, bias, out, accumulate, p0, end, column);
  }
}

template <int KW>
void forward_any(int nv, int rb, const DirectConvShape& g, const float* const* in, int64_t I, const float* wb,
                 const float* bias, float* const* out, bool accumulate, int64_t p0, int64_t end,
                 const int32_t* column) {
  if (nv == 2) forward_rows<2, KW>(rb, g, in, I, wb, bias, out, accumulate, p0, end, column);
  else forward_rows<1, KW>(rb, g, in, I, wb, bias, out, accumulate, p0, end, column);
}

// The weight-type kernel is an outer product per pixel: acc[column] += g(p) * column(p), where g(p) is one vector of
// output rows (the gradient transposed to [pixel, row], rows padded to whole vectors) and a column is one tap
// (i, ki, kj) of one input plane, a scalar broadcast straight from the padded plane. NP pointers walk NP rows
// (i, ki) of padded planes, each giving KW taps at x + kj d: NP*KW accumulators; per pixel one vector load and
// NP*KW broadcast FMAs. (Vectorising over pixels instead loads every tap as an unaligned vector straddling cache
// lines, once per output row: loads, not FMAs, set the pace, at about half this speed.)
#if defined(__AVX512F__)
constexpr int kGradAccumulators = 27;  // of 32 vector registers
#else
constexpr int kGradAccumulators = 12;  // of 16
#endif
template <int KW>
constexpr int grad_rows_per_block() {  // a 1-wide row needs a pointer per accumulator: at most 16 of them
  return KW == 1 ? std::min(16, kGradAccumulators) : kGradAccumulators / KW;
}

// For the NP rows rows[p] (framed row 0 of a plane, or a tap's shifted start): out[p*KW + kj][0 .. lanes) += sum over
// pixels (y, x) of gt[y*W + x][0 .. lanes) * rows[p][y*Wp + x + kj*d].
template <int NP, int KW>
void grad_block(const DirectConvShape& g, const float* const* rows, const float* gt, int64_t ld, float* const* out) {
  const int64_t Wp = g.framed_width(), d = g.d;
  vf acc[NP][KW] = {};
  for (int64_t y = 0; y < g.H; ++y) {
    const float* r[NP];
    for (int p = 0; p < NP; ++p) r[p] = rows[p] + y * Wp;
    const float* gp = gt + y * g.W * ld;
    for (int64_t x = 0; x < g.W; ++x, gp += ld) {
      const vf gv = load(gp);
#pragma GCC unroll 27
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 7
        for (int kj = 0; kj < KW; ++kj) acc[p][kj] += gv * splat(r[p][x + kj * d]);
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int kj = 0; kj < KW; ++kj) store(out[p * KW + kj], load(out[p * KW + kj]) + acc[p][kj]);
}

// All rows (count of them, pointers in rows) in blocks of NP; a short last block reads a zero plane and writes a
// scratch accumulator. Column q = p*KW + kj accumulates into acc + q*ld + lane offset v.
template <int KW>
void grad_all_rows(const DirectConvShape& g, const std::vector<const float*>& rows, const float* gt, int64_t ld,
                   float* acc) {
  constexpr int NP = grad_rows_per_block<KW>();
  thread_local std::vector<float> zeros, scratch;
  if (static_cast<int64_t>(zeros.size()) < g.framed_plane()) zeros.assign(static_cast<size_t>(g.framed_plane()), 0.0f);
  if (static_cast<int64_t>(scratch.size()) < NP * KW * kLanes) scratch.resize(NP * KW * kLanes);
  const int64_t count = static_cast<int64_t>(rows.size());
  for (int64_t v = 0; v < ld; v += kLanes)  // one vector of output rows at a time
    for (int64_t p0 = 0; p0 < count; p0 += NP) {
      const float* block_rows[NP];
      float* out[NP * KW];
      for (int p = 0; p < NP; ++p)
        for (int kj = 0; kj < KW; ++kj) {
          const bool real = p0 + p < count;
          block_rows[p] = real ? rows[p0 + p] : zeros.data();
          out[p * KW + kj] = real ? acc + ((p0 + p) * KW + kj) * ld + v : scratch.data() + (p * KW + kj) * kLanes;
        }
      grad_block<NP, KW>(g, block_rows, gt + v, ld, out);
    }
}

void check_shape(const DirectConvShape& g, const char* op) {
  check(g.H > 0 && g.W > 0 && g.kh > 0 && g.kw > 0 && g.d > 0, op, ": plane ", g.H, "x", g.W, ", kernel ", g.kh,
        "x", g.kw, " and dilation ", g.d, " must be positive");
  check(g.kh % 2 == 1 && g.kw % 2 == 1, op, ": kernel ", g.kh, "x", g.kw, " must be odd (same padding)");
}

}  // namespace

int64_t DirectConvShape::flat_plane() const { return pad_w() + (H + 2 * pad_h()) * W + pad_w() + 2 * kLanes; }

void direct_conv_pad_flat(const DirectConvShape& g, const float* src, float* dst) {
  check_shape(g, "direct_conv_pad_flat");
  const int64_t front = g.pad_w() + g.pad_h() * g.W, hw = g.H * g.W;
  std::fill(dst, dst + front, 0.0f);
  std::copy(src, src + hw, dst + front);
  std::fill(dst + front + hw, dst + g.flat_plane(), 0.0f);
}

const float* direct_conv_flat_view(const DirectConvShape& padded_for, const float* plane, const DirectConvShape& g) {
  check_shape(padded_for, "direct_conv_flat_view");
  check_shape(g, "direct_conv_flat_view");
  check(padded_for.H == g.H && padded_for.W == g.W && padded_for.kh == g.kh && padded_for.kw == g.kw &&
            padded_for.d >= g.d,
        "direct_conv_flat_view: a plane padded for ", padded_for.H, "x", padded_for.W, ", kernel ", padded_for.kh, "x",
        padded_for.kw, ", dilation ", padded_for.d, " cannot be read as ", g.H, "x", g.W, ", kernel ", g.kh, "x",
        g.kw, ", dilation ", g.d, " (need the same plane and kernel and a dilation at least as large)");
  // Both layouts put pixel (0, 0) pad_w + pad_h W floats from their start.
  return plane + (padded_for.pad_w() - g.pad_w()) + (padded_for.pad_h() - g.pad_h()) * g.W;
}

void direct_conv_pad_framed(const DirectConvShape& g, const float* src, float* dst) {
  check_shape(g, "direct_conv_pad_framed");
  const int64_t Wp = g.framed_width(), ph = g.pad_h(), pw = g.pad_w();
  std::fill(dst, dst + ph * Wp, 0.0f);
  for (int64_t y = 0; y < g.H; ++y) {  // plain loops: rows are short, and a memmove call per row cost more than this
    float* __restrict row = dst + (ph + y) * Wp;
    const float* __restrict from = src + y * g.W;
    for (int64_t x = 0; x < pw; ++x) row[x] = 0.0f;
    for (int64_t x = 0; x < g.W; ++x) row[pw + x] = from[x];
    for (int64_t x = pw + g.W; x < Wp; ++x) row[x] = 0.0f;
  }
  std::fill(dst + (ph + g.H) * Wp, dst + g.framed_plane(), 0.0f);
}

void direct_conv_pack_weight(const DirectConvShape& g, int64_t R, int64_t I, const float* w, float* packed) {
  const int64_t kk = g.kh * g.kw;
  for (int64_t r0 = 0; r0 < R;) {
    const int rb = row_block_at(R, r0);
    float* block = packed + r0 * I * kk;  // [I, kk, rb]
    for (int r = 0; r < rb; ++r)
      for (int64_t ik = 0; ik < I * kk; ++ik) block[ik * rb + r] = w[(r0 + r) * I * kk + ik];
    r0 += rb;
  }
}

void direct_conv_forward(const DirectConvShape& g, const float* const* in, int64_t I, const float* packed, int64_t R,
                         const float* bias, float* const* out, bool accumulate, int64_t y0, int64_t y1) {
  check_shape(g, "direct_conv_forward");
  check(I > 0 && R > 0 && 0 <= y0 && y0 <= y1 && y1 <= g.H, "direct_conv_forward: ", I, " input planes, ", R,
        " output planes and rows [", y0, ", ", y1, ") of ", g.H, " (need planes > 0, 0 <= y0 <= y1 <= H)");
  check(g.kw <= kMaxKernelWidth, "direct_conv_forward: kernel width ", g.kw, " exceeds ", kMaxKernelWidth,
        " (use conv2d)");
  const int64_t kk = g.kh * g.kw, begin = y0 * g.W, end = y1 * g.W;
  thread_local std::vector<int32_t> column;  // column[p] = p mod W, with a vector chunk of slack
  column.resize(static_cast<size_t>(end + 2 * kLanes));
  for (int64_t p = begin, x = 0; p < end + 2 * kLanes; ++p, x = x + 1 == g.W ? 0 : x + 1)  // no division: cheap
    column[p] = static_cast<int32_t>(x);
  for (int64_t p0 = begin; p0 < end;) {
    const int nv = vectors_at(end, p0);
    // All row blocks at one chunk before moving on: the kh rows of the I input planes they read stay in L1.
    for (int64_t r0 = 0; r0 < R;) {
      const int rb = row_block_at(R, r0);
      const float* wb = packed + r0 * I * kk;
      const float* b = bias ? bias + r0 : nullptr;
      switch (g.kw) {
        case 1: forward_any<1>(nv, rb, g, in, I, wb, b, out + r0, accumulate, p0, end, column.data()); break;
        case 3: forward_any<3>(nv, rb, g, in, I, wb, b, out + r0, accumulate, p0, end, column.data()); break;
        case 5: forward_any<5>(nv, rb, g, in, I, wb, b, out + r0, accumulate, p0, end, column.data()); break;
        default: forward_any<0>(nv, rb, g, in, I, wb, b, out + r0, accumulate, p0, end, column.data()); break;
      }
      r0 += rb;
    }
    p0 += nv * kLanes;
  }
}

int64_t direct_conv_padded_rows(int64_t R) { return (R + kLanes - 1) / kLanes * kLanes; }

void direct_conv_transpose_grad(const DirectConvShape& g, const float* const* grad, int64_t R, float* gt) {
  const int64_t ld = direct_conv_padded_rows(R), hw = g.H * g.W;
  for (int64_t p = 0; p < hw; ++p) {
    for (int64_t r = 0; r < R; ++r) gt[p * ld + r] = grad[r][p];
    for (int64_t r = R; r < ld; ++r) gt[p * ld + r] = 0.0f;
  }
}

void direct_conv_weight_grad(const DirectConvShape& g, const float* in, int64_t I, const float* gt, int64_t R,
                             float* acc) {
  check_shape(g, "direct_conv_weight_grad");
  check(I > 0 && R > 0, "direct_conv_weight_grad: ", I, " input planes and ", R, " gradient planes (need > 0)");
  const int64_t ld = direct_conv_padded_rows(R), plane = g.framed_plane(), Wp = g.framed_width();
  // Rows (i, ki) read kw taps each when kw has a kernel below; otherwise every tap (i, ki, kj) is its own row.
  const bool by_rows = g.kw == 1 || g.kw == 3 || g.kw == 5 || g.kw == 7;
  std::vector<const float*> rows;
  for (int64_t i = 0; i < I; ++i)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < (by_rows ? 1 : g.kw); ++kj) rows.push_back(in + i * plane + ki * g.d * Wp + kj * g.d);
  switch (by_rows ? g.kw : 1) {
    case 3: return grad_all_rows<3>(g, rows, gt, ld, acc);
    case 5: return grad_all_rows<5>(g, rows, gt, ld, acc);
    case 7: return grad_all_rows<7>(g, rows, gt, ld, acc);
    default: return grad_all_rows<1>(g, rows, gt, ld, acc);
  }
}

void direct_conv_gather_weight_grad(const DirectConvShape& g, const float* acc, int64_t R, int64_t I, float* dw) {
  const int64_t ld = direct_conv_padded_rows(R), columns = I * g.kh * g.kw;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t q = 0; q < columns; ++q) dw[r * columns + q] += acc[q * ld + r];
}

}  // namespace eq
