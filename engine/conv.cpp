// equilab — 2-D convolution by im2col + sgemm, and the direct-loop reference.
//
// The output is cut into tiles (see Tiling): a run of output rows of one sample when the map is large, a run of
// whole samples when it is small. Threads take whole samples (OpenMP over the batch; each sgemm single-threaded
// inside the region, OpenBLAS's OpenMP build does that by itself). Per tile of S samples and P output pixels each:
//   col  [Cin*kh*kw, S*P]  = im2col (rows grouped by input channel, so group g's rows are one contiguous block)
//   Ycol [Cout, S*P]       = W [Cout, Cin/groups*kh*kw] x col                      (one sgemm per group)
// With S = 1 the sgemm writes straight into y (row stride Ho*Wo) on top of the bias; else Ycol is copied out.
// Tiles keep col near the L2 cache: one whole-batch GEMM would be wider, but its col matrix (Cin*9 x N*Ho*Wo,
// 150 MB for 64 samples of 64x32x32) would stream through memory twice.
// Backward:
//   db   += sums of grad_out over N, Ho, Wo
//   dW   += dYcol x col^T    per tile, col recomputed; per-thread partial sums added up after the loop (no races)
//   dx: stride 1 with Cin >= Cout — a convolution of dY with the flipped, channel-swapped weight, accumulated
//       straight into dx by the forward machinery (no col2im);
//       otherwise — dcol = W^T x dYcol, then col2im (+=) into dx; threads own whole samples, so no races.
// Padding: Zeros is handled inside im2col/col2im (out-of-range taps read 0 and are dropped on the way back).
// Reflect/Replicate/Circular pad the input explicitly through index maps (padded position -> source position),
// convolve without padding, and fold the padded gradient back through the same maps. Circular padding makes the
// convolution commute exactly with torus shifts (stride 1).
#include "engine/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "engine/autograd.h"
#include "engine/matmul.h"
#include "engine/parallel.h"
#include "engine/reduce.h"

namespace eq {


namespace {

// Every size the kernels need, validated once. H, W describe the tensor the im2col reads: the explicitly padded
// input for non-zero pad modes (then pad_h = pad_w = 0 here), else the input itself.
struct ConvGeometry {
  int64_t N, Cin, H, W;     // as read by im2col
  int64_t in_H, in_W;       // the user's input
  int64_t Cout, kh, kw;
  int64_t groups, cin_g, cout_g;
  int64_t Ho, Wo;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t k_g() const { return cin_g * kh * kw; }  // GEMM depth per group
  int64_t hw_out() const { return Ho * Wo; }
};

// Source index for padded coordinate i (may be negative or >= size), or -1 for a zero.
inline int64_t pad_source(int64_t i, int64_t size, PadMode mode) {
  if (i >= 0 && i < size) return i;
  switch (mode) {
    case PadMode::Zeros: return -1;
    case PadMode::Reflect: return i < 0 ? -i : 2 * (size - 1) - i;  // needs pad < size, checked
    case PadMode::Replicate: return i < 0 ? 0 : size - 1;
    case PadMode::Circular: return ((i % size) + size) % size;
  }
  return -1;
}

ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt,
                           const char* op) {
  check(x.dim() == 4, op, ": expected input [N, Cin, H, W], got ", x.shape());
  check(w.dim() == 4, op, ": expected weight [Cout, Cin/groups, kh, kw], got ", w.shape());
  const Shape &xs = x.shape(), &ws = w.shape();
  check(opt.stride_h >= 1 && opt.stride_w >= 1 && opt.dilation_h >= 1 && opt.dilation_w >= 1 && opt.pad_h >= 0 &&
            opt.pad_w >= 0,
        op, ": stride and dilation must be >= 1 and padding >= 0 (stride ", opt.stride_h, "x", opt.stride_w,
        ", dilation ", opt.dilation_h, "x", opt.dilation_w, ", padding ", opt.pad_h, "x", opt.pad_w, ")");
  check(opt.groups >= 1 && xs[1] % opt.groups == 0 && ws[0] % opt.groups == 0, op, ": groups=", opt.groups,
        " must divide both the input channels and the output channels (input ", xs, ", weight ", ws, ")");
  check(ws[1] * opt.groups == xs[1], op, ": input has ", xs[1], " channels but weight expects ", ws[1] * opt.groups,
        " (input ", xs, ", weight ", ws, ", groups ", opt.groups, ")");
  check(ws[2] >= 1 && ws[3] >= 1, op, ": empty kernel in weight ", ws);
  if (b.defined())
    check(b.dim() == 1 && b.size(0) == ws[0], op, ": bias ", b.shape(), " does not match weight ", ws,
          " (expected [", ws[0], "])");
  if (opt.pad_mode == PadMode::Reflect)
    check(opt.pad_h < xs[2] && opt.pad_w < xs[3], op, ": reflect padding ", opt.pad_h, "x", opt.pad_w,
          " must be smaller than the input's spatial size (input ", xs, ")");
  if (opt.pad_mode != PadMode::Zeros && (opt.pad_h > 0 || opt.pad_w > 0))
    check(xs[2] >= 1 && xs[3] >= 1, op, ": cannot pad an input with no rows or columns ", xs);
  const int64_t span_h = opt.dilation_h * (ws[2] - 1) + 1, span_w = opt.dilation_w * (ws[3] - 1) + 1;
  const int64_t padded_h = xs[2] + 2 * opt.pad_h, padded_w = xs[3] + 2 * opt.pad_w;
  check(span_h <= padded_h && span_w <= padded_w, op, ": kernel ", ws[2], "x", ws[3], " (dilation ", opt.dilation_h,
        "x", opt.dilation_w, ") spans ", span_h, "x", span_w, ", larger than the padded input ", padded_h, "x",
        padded_w, " (input ", xs, ", weight ", ws, ", padding ", opt.pad_h, "x", opt.pad_w, ")");

  ConvGeometry g;
  g.N = xs[0], g.Cin = xs[1], g.in_H = xs[2], g.in_W = xs[3];
  g.Cout = ws[0], g.kh = ws[2], g.kw = ws[3];
  g.groups = opt.groups, g.cin_g = ws[1], g.cout_g = ws[0] / opt.groups;
  g.Ho = (padded_h - span_h) / opt.stride_h + 1;
  g.Wo = (padded_w - span_w) / opt.stride_w + 1;
  g.stride_h = opt.stride_h, g.stride_w = opt.stride_w;
  g.dilation_h = opt.dilation_h, g.dilation_w = opt.dilation_w;
  const bool explicit_pad = opt.pad_mode != PadMode::Zeros && (opt.pad_h > 0 || opt.pad_w > 0);
  g.H = explicit_pad ? padded_h : xs[2];
  g.W = explicit_pad ? padded_w : xs[3];
  g.pad_h = explicit_pad ? 0 : opt.pad_h;
  g.pad_w = explicit_pad ? 0 : opt.pad_w;
  return g;
}

// The thread's scratch buffer, grown on demand and reused across calls (thread_local at the call sites).
float* grow(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// Output columns ox whose tap ix = ox * stride + offset lands inside [0, size): the half-open range [lo, hi).
inline void valid_range(int64_t offset, int64_t stride, int64_t size, int64_t n_out, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
  lo = std::min(lo, n_out);
  hi = std::clamp(hi, lo, n_out);
}

// Stride 1 and "same" width (W == Wo): output row oy reads input row oy + offset, so the taps of a block of
// consecutive rows form one contiguous run in both x and col, apart from the padding columns [0, lo) and [hi, Wo).
inline bool contiguous_rows(const ConvGeometry& g) { return g.stride_h == 1 && g.stride_w == 1 && g.W == g.Wo; }

// Valid output rows [y_lo, y_hi) (within the tile [oy0, oy1)) and columns [lo, hi) of tap (ki, kj), and the tap's
// input offsets: output (oy, ox) reads input (oy * stride_h + off_h, ox * stride_w + off_w).
struct TapRange {
  int64_t off_h, off_w, y_lo, y_hi, lo, hi;
};
inline TapRange tap_range(const ConvGeometry& g, int64_t ki, int64_t kj, int64_t oy0, int64_t oy1) {
  TapRange t;
  t.off_h = ki * g.dilation_h - g.pad_h;
  t.off_w = kj * g.dilation_w - g.pad_w;
  valid_range(t.off_h, g.stride_h, g.H, g.Ho, t.y_lo, t.y_hi);
  t.y_lo = std::clamp(t.y_lo, oy0, oy1);
  t.y_hi = std::clamp(t.y_hi, t.y_lo, oy1);
  valid_range(t.off_w, g.stride_w, g.W, g.Wo, t.lo, t.hi);
  return t;
}

// Output rows oy in [oy0, oy1) of one sample: x [Cin, H, W] -> col rows (c, ki, kj), (oy1 - oy0) * Wo columns
// each, row stride ld. Valid ranges are computed once per tap, so the inner loops are plain copies.
void im2col(const float* __restrict x, const ConvGeometry& g, int64_t oy0, int64_t oy1, float* __restrict col,
            int64_t ld) {
  const int64_t Wo = g.Wo, H = g.H, W = g.W, sw = g.stride_w;
  const bool bulk = contiguous_rows(g);
  for (int64_t c = 0; c < g.Cin; ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const TapRange t = tap_range(g, ki, kj, oy0, oy1);
        float* __restrict row = col + ((c * g.kh + ki) * g.kw + kj) * ld;  // holds output rows oy0 .. oy1-1
        std::fill(row, row + (t.y_lo - oy0) * Wo, 0.0f);
        std::fill(row + (t.y_hi - oy0) * Wo, row + (oy1 - oy0) * Wo, 0.0f);
        if (t.y_hi == t.y_lo) continue;
        if (t.hi <= t.lo) {  // the tap misses every column (dilation * (k/2) >= W): all padding
          std::fill(row + (t.y_lo - oy0) * Wo, row + (t.y_hi - oy0) * Wo, 0.0f);
          continue;
        }
        float* __restrict dst = row + (t.y_lo - oy0) * Wo;
        const float* __restrict src = x + (c * H + t.y_lo * g.stride_h + t.off_h) * W + t.off_w;
        if (bulk) {
          // One long copy for the block; what it drags across row ends lands in padding columns, zeroed after.
          const int64_t n = (t.y_hi - t.y_lo) * Wo;
          for (int64_t j = t.lo; j < n - (Wo - t.hi); ++j) dst[j] = src[j];
          for (int64_t r = 0; r < n; r += Wo) {
            for (int64_t ox = 0; ox < t.lo; ++ox) dst[r + ox] = 0;
            for (int64_t ox = t.hi; ox < Wo; ++ox) dst[r + ox] = 0;
          }
          continue;
        }
        for (int64_t oy = t.y_lo; oy < t.y_hi; ++oy, dst += Wo, src += g.stride_h * W) {
          for (int64_t ox = 0; ox < t.lo; ++ox) dst[ox] = 0;
          if (sw == 1)
            for (int64_t ox = t.lo; ox < t.hi; ++ox) dst[ox] = src[ox];
          else
            for (int64_t ox = t.lo; ox < t.hi; ++ox) dst[ox] = src[ox * sw];
          for (int64_t ox = t.hi; ox < Wo; ++ox) dst[ox] = 0;
        }
      }
}

// The adjoint of im2col for output rows [oy0, oy1): dx [Cin, H, W] += taps of col (same layout). Taps that fell
// on zero padding are dropped. col is scratch: the bulk path zeroes those taps, then adds whole blocks.
void col2im(float* __restrict col, int64_t ld, const ConvGeometry& g, int64_t oy0, int64_t oy1,
            float* __restrict dx) {
  const int64_t Wo = g.Wo, H = g.H, W = g.W, sw = g.stride_w;
  const bool bulk = contiguous_rows(g);
  for (int64_t c = 0; c < g.Cin; ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const TapRange t = tap_range(g, ki, kj, oy0, oy1);
        if (t.y_hi == t.y_lo || t.hi <= t.lo) continue;  // no valid input cell for this tap
        float* __restrict src = col + ((c * g.kh + ki) * g.kw + kj) * ld + (t.y_lo - oy0) * Wo;
        float* __restrict dst = dx + (c * H + t.y_lo * g.stride_h + t.off_h) * W + t.off_w;
        if (bulk) {
          const int64_t n = (t.y_hi - t.y_lo) * Wo;
          for (int64_t r = 0; r < n; r += Wo) {
            for (int64_t ox = 0; ox < t.lo; ++ox) src[r + ox] = 0;
            for (int64_t ox = t.hi; ox < Wo; ++ox) src[r + ox] = 0;
          }
          for (int64_t j = t.lo; j < n - (Wo - t.hi); ++j) dst[j] += src[j];
          continue;
        }
        for (int64_t oy = t.y_lo; oy < t.y_hi; ++oy, src += Wo, dst += g.stride_h * W) {
          if (sw == 1)
            for (int64_t ox = t.lo; ox < t.hi; ++ox) dst[ox] += src[ox];
          else
            for (int64_t ox = t.lo; ox < t.hi; ++ox) dst[ox * sw] += src[ox];
        }
      }
}

// Explicit padding for the non-zero modes: maps from padded row/column to source row/column.
struct PadMaps {
  std::vector<int64_t> rows, cols;  // sizes H + 2 pad_h, W + 2 pad_w
};

PadMaps pad_maps(int64_t H, int64_t W, const Conv2dOptions& opt) {
  PadMaps m;
  for (int64_t i = -opt.pad_h; i < H + opt.pad_h; ++i) m.rows.push_back(pad_source(i, H, opt.pad_mode));
  for (int64_t j = -opt.pad_w; j < W + opt.pad_w; ++j) m.cols.push_back(pad_source(j, W, opt.pad_mode));
  return m;
}

// x [N*C, H, W] -> padded [N*C, Hp, Wp].
Storage pad_explicitly(const float* x, int64_t planes, int64_t H, int64_t W, const PadMaps& m) {
  const int64_t Hp = static_cast<int64_t>(m.rows.size()), Wp = static_cast<int64_t>(m.cols.size());
  Storage padded = std::make_shared<FloatBuffer>(static_cast<size_t>(planes * Hp * Wp));  // every element written
  FloatBuffer& out = *padded;
#pragma omp parallel for schedule(static) if (planes * Hp * Wp > kParallelGrain)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < Hp; ++i) {
      const float* src = x + (p * H + m.rows[i]) * W;
      float* dst = out.data() + (p * Hp + i) * Wp;
      for (int64_t j = 0; j < Wp; ++j) dst[j] = src[m.cols[j]];
    }
  return padded;
}

// The adjoint of pad_explicitly for one sample: dx [C, H, W] += padded gradient [C, Hp, Wp] folded back.
void fold_padding(const float* dpadded, int64_t C, int64_t H, int64_t W, const PadMaps& m, float* dx) {
  const int64_t Hp = static_cast<int64_t>(m.rows.size()), Wp = static_cast<int64_t>(m.cols.size());
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < Hp; ++i) {
      const float* src = dpadded + (c * Hp + i) * Wp;
      float* dst = dx + (c * H + m.rows[i]) * W;
      for (int64_t j = 0; j < Wp; ++j) dst[m.cols[j]] += src[j];
    }
}


// How the work is cut into tiles, each one im2col buffer and one sgemm per group. A tile is either a run of output
// rows of one sample (large maps) or a run of whole samples (small maps), sized so that its col buffer stays near
// the core's L2 cache yet the GEMM stays wide. Threads take whole sample runs, so the col2im of different threads
// never touches the same dx sample.
struct Tiling {
  int64_t samples;    // per run (a work item of one thread)
  int64_t runs;       // ceil(N / samples)
  int64_t tile_rows;  // output rows per tile when samples == 1 (else Ho)
  bool parallel;      // runs on separate threads, each sgemm single-threaded; else serial runs, threaded sgemm
};

Tiling tiling(const ConvGeometry& g) {
  // Maps of kWideEnough pixels or more give wide enough GEMMs alone; smaller ones are grouped into runs of samples
  // (which costs a gather/scatter of the output and its gradient).
  constexpr int64_t kColBytes = 512 << 10, kMinColumns = 128, kMaxColumns = 4096, kWideEnough = 256;
  const int64_t rows = std::max<int64_t>(1, g.Cin * g.kh * g.kw), hw = std::max<int64_t>(1, g.hw_out());
  const int64_t columns = std::clamp<int64_t>(kColBytes / (rows * int64_t(sizeof(float))), kMinColumns, kMaxColumns);
  const int64_t threads = std::max(1, num_threads());
  Tiling t;
  if (hw >= std::min(columns, kWideEnough) || g.N <= threads) {
    t.samples = 1;
    // Equal tiles: a remainder of one or two rows would make a needlessly narrow GEMM.
    const int64_t max_rows = std::clamp<int64_t>(columns / std::max<int64_t>(1, g.Wo), 1, std::max<int64_t>(1, g.Ho));
    const int64_t tiles = (g.Ho + max_rows - 1) / max_rows;
    t.tile_rows = std::max<int64_t>(1, (g.Ho + tiles - 1) / tiles);
  } else {
    // A whole number of runs per thread, so no thread idles at the end.
    const int64_t wanted = std::max<int64_t>(1, columns / hw);
    const int64_t runs = std::min(g.N, threads * std::max<int64_t>(1, g.N / (threads * wanted)));
    t.samples = (g.N + runs - 1) / runs;
    t.tile_rows = g.Ho;
  }
  t.runs = g.N == 0 ? 0 : (g.N + t.samples - 1) / t.samples;
  t.parallel = threads > 1 && t.runs >= threads;
  return t;
}

// Calls tile(n0, S, oy0, oy1) for every tile of the output, over threads when the tiling says so.
template <class TileFn>
void for_each_tile(const ConvGeometry& g, const Tiling& t, TileFn tile) {
#pragma omp parallel for schedule(static) if (t.parallel)
  for (int64_t run = 0; run < t.runs; ++run) {
    const int64_t n0 = run * t.samples, S = std::min(t.samples, g.N - n0);
    for (int64_t oy0 = 0; oy0 < g.Ho; oy0 += t.tile_rows) tile(n0, S, oy0, std::min(g.Ho, oy0 + t.tile_rows));
  }
}

// y [N, Cout, Ho, Wo] = (or += when accumulate) the convolution g describes of x (as im2col reads it) with
// w [Cout, Cin/groups * kh * kw], plus bias [Cout] when given.
void conv_forward(const ConvGeometry& g, const float* px, const float* pw, const float* pb, float* py,
                  bool accumulate) {
  const int64_t hw = g.hw_out(), k_g = g.k_g(), in_plane = g.Cin * g.H * g.W, rows = g.Cin * g.kh * g.kw;
  for_each_tile(g, tiling(g), [&](int64_t n0, int64_t S, int64_t oy0, int64_t oy1) {
    thread_local std::vector<float> col_buffer, out_buffer;
    const int64_t per_sample = (oy1 - oy0) * g.Wo, cols = S * per_sample;
    float* col = grow(col_buffer, rows * cols);
    for (int64_t s = 0; s < S; ++s) im2col(px + (n0 + s) * in_plane, g, oy0, oy1, col + s * per_sample, cols);
    // One sample: the GEMM writes its [Cout, rows of Ho*Wo] block of y in place (row stride Ho*Wo). Several: into
    // a buffer [Cout, S*Ho*Wo], rearranged below. The bias is put in first so the GEMM adds to it (beta = 1).
    const bool in_place = S == 1;
    float* out = in_place ? py + n0 * g.Cout * hw + oy0 * g.Wo : grow(out_buffer, g.Cout * cols);
    const int64_t ldo = in_place ? hw : cols;
    if (pb && !(in_place && accumulate))
      for (int64_t co = 0; co < g.Cout; ++co) std::fill(out + co * ldo, out + co * ldo + cols, pb[co]);
    const float beta = pb || (in_place && accumulate) ? 1.0f : 0.0f;
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(false, false, g.cout_g, cols, k_g, 1.0f, pw + grp * g.cout_g * k_g, k_g, col + grp * k_g * cols, cols,
           beta, out + grp * g.cout_g * ldo, ldo);
    if (in_place) {
      if (pb && accumulate)
        for (int64_t co = 0; co < g.Cout; ++co)
          for (int64_t i = 0; i < cols; ++i) out[co * ldo + i] += pb[co];
      return;
    }
    for (int64_t s = 0; s < S; ++s)
      for (int64_t co = 0; co < g.Cout; ++co) {
        float* dst = py + ((n0 + s) * g.Cout + co) * hw;
        const float* src = out + co * cols + s * hw;
        if (accumulate)
          for (int64_t i = 0; i < hw; ++i) dst[i] += src[i];
        else
          std::memcpy(dst, src, sizeof(float) * hw);
      }
  });
}

// For stride 1 and padding <= dilation * (kernel - 1), the input gradient is itself a convolution: of dY, zero
// padded by dilation * (kernel - 1) - padding, with the weight flipped in space and its two channel axes swapped
// within each group. It skips the zeroing and scattered adds of col2im, but its im2col has Cout*kh*kw rows and its
// GEMM Cin rows, so it only pays when Cin >= Cout. Returns that geometry, or false (then col2im is used).
bool transposed_geometry(const ConvGeometry& g, ConvGeometry& t) {
  if (g.H != g.in_H || g.W != g.in_W || g.stride_h != 1 || g.stride_w != 1 || g.Cin < g.Cout) return false;
  const int64_t pad_h = g.dilation_h * (g.kh - 1) - g.pad_h, pad_w = g.dilation_w * (g.kw - 1) - g.pad_w;
  if (pad_h < 0 || pad_w < 0) return false;
  t = g;
  t.Cin = g.Cout, t.H = t.in_H = g.Ho, t.W = t.in_W = g.Wo;
  t.Cout = g.Cin, t.cin_g = g.cout_g, t.cout_g = g.cin_g;
  t.Ho = g.H, t.Wo = g.W;
  t.pad_h = pad_h, t.pad_w = pad_w;
  return true;
}

// w [Cout, Cin/groups, kh, kw] -> w' [Cin, Cout/groups, kh, kw] with w'[ci, co, ki, kj] = w[co, ci, kh-1-ki, kw-1-kj]
// (channel indices local to their group).
std::vector<float> transposed_weight(const ConvGeometry& g, const float* w) {
  const int64_t kk = g.kh * g.kw;
  std::vector<float> out(static_cast<size_t>(g.Cout * g.cin_g * kk));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t co = 0; co < g.cout_g; ++co)
      for (int64_t ci = 0; ci < g.cin_g; ++ci)
        for (int64_t k = 0; k < kk; ++k)
          out[((grp * g.cin_g + ci) * g.cout_g + co) * kk + (kk - 1 - k)] = w[((grp * g.cout_g + co) * g.cin_g + ci) * kk + k];
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// conv2d (fast)
// ---------------------------------------------------------------------------------------------------------------

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  const ConvGeometry g = conv_geometry(x, w, b, opt, "conv2d");
  const bool explicit_pad = g.H != g.in_H || g.W != g.in_W;
  PadMaps maps;
  Storage input = x.impl()->data;  // what im2col reads: x, or its padded copy
  if (explicit_pad) {
    maps = pad_maps(g.in_H, g.in_W, opt);
    input = pad_explicitly(x.data(), g.N * g.Cin, g.in_H, g.in_W, maps);
  }

  Tensor y = Tensor::empty({g.N, g.Cout, g.Ho, g.Wo});  // conv_forward without accumulate writes every element
  conv_forward(g, input->data(), w.data(), b.defined() ? b.data() : nullptr, y.data(), false);
  if (!any_requires_grad({&x, &w, &b})) return y;

  // dx needs only the weight; dW needs only the (padded) input.
  Storage keep_input = w.requires_grad() ? input : nullptr;
  Storage keep_w = x.requires_grad() ? w.impl()->data : nullptr;
  record(y, "conv2d", {x, w, b},
         [g, maps, explicit_pad, keep_input, keep_w](const float* gy, const std::vector<float*>& gin) {
           const int64_t hw = g.hw_out(), k_g = g.k_g(), in_plane = g.Cin * g.H * g.W;
           const int64_t rows = g.Cin * g.kh * g.kw, w_size = g.Cout * k_g;
           float *gx = gin[0], *gw = gin[1], *gb = gin[2];
           if (gb) {
#pragma omp parallel for schedule(static)
             for (int64_t co = 0; co < g.Cout; ++co) {
               double sum = 0;
               for (int64_t n = 0; n < g.N; ++n) sum += contiguous_sum(gy + (n * g.Cout + co) * hw, hw);
               gb[co] += static_cast<float>(sum);
             }
           }
           if (!gx && !gw) return;
           const float* px = keep_input ? keep_input->data() : nullptr;
           const float* pw = keep_w ? keep_w->data() : nullptr;

           ConvGeometry tg;
           if (gx && transposed_geometry(g, tg)) {
             const std::vector<float> wt = transposed_weight(g, pw);
             conv_forward(tg, gy, wt.data(), nullptr, gx, true);
             gx = nullptr;  // done
           }
           if (!gx && !gw) return;
           const Tiling t = tiling(g);
           // Per-thread partial weight gradients when runs are parallel; summed into gw after the loop.
           const int64_t partial_count = t.parallel ? std::max(1, num_threads()) : 0;
           std::vector<float> partial_gw(gw ? static_cast<size_t>(partial_count * w_size) : 0, 0.0f);
           const int64_t user_plane = g.Cin * g.in_H * g.in_W;

           for_each_tile(g, t, [&](int64_t n0, int64_t S, int64_t oy0, int64_t oy1) {
             thread_local std::vector<float> col_buffer, dy_buffer, pad_buffer;
             const int64_t per_sample = (oy1 - oy0) * g.Wo, cols = S * per_sample;
             // dY of the tile as [Cout, cols]: in place for one sample (row stride Ho*Wo), else gathered.
             const float* dy = gy + n0 * g.Cout * hw + oy0 * g.Wo;
             int64_t ldy = hw;
             if (S > 1) {
               float* buf = grow(dy_buffer, g.Cout * cols);
               for (int64_t s = 0; s < S; ++s)
                 for (int64_t co = 0; co < g.Cout; ++co)
                   std::memcpy(buf + co * cols + s * hw, gy + ((n0 + s) * g.Cout + co) * hw, sizeof(float) * hw);
               dy = buf, ldy = cols;
             }
             float* col = grow(col_buffer, rows * cols);
             if (gw) {
               for (int64_t s = 0; s < S; ++s)
                 im2col(px + (n0 + s) * in_plane, g, oy0, oy1, col + s * per_sample, cols);
               float* dw = t.parallel ? partial_gw.data() + omp_get_thread_num() * w_size : gw;
               for (int64_t grp = 0; grp < g.groups; ++grp)
                 gemm(false, true, g.cout_g, k_g, cols, 1.0f, dy + grp * g.cout_g * ldy, ldy, col + grp * k_g * cols,
                      cols, 1.0f, dw + grp * g.cout_g * k_g, k_g);
             }
             if (gx) {
               for (int64_t grp = 0; grp < g.groups; ++grp)  // dcol = W^T dY, reusing the col buffer
                 gemm(true, false, k_g, cols, g.cout_g, 1.0f, pw + grp * g.cout_g * k_g, k_g,
                      dy + grp * g.cout_g * ldy, ldy, 0.0f, col + grp * k_g * cols, cols);
               for (int64_t s = 0; s < S; ++s) {
                 float* dx = gx + (n0 + s) * user_plane;
                 if (!explicit_pad) {
                   col2im(col + s * per_sample, cols, g, oy0, oy1, dx);
                 } else {
                   // The padded gradient of a whole sample, folded back once its last tile is done.
                   float* dpad = grow(pad_buffer, in_plane);
                   if (oy0 == 0) std::fill(dpad, dpad + in_plane, 0.0f);
                   col2im(col + s * per_sample, cols, g, oy0, oy1, dpad);
                   if (oy1 == g.Ho) fold_padding(dpad, g.Cin, g.in_H, g.in_W, maps, dx);
                 }
               }
             }
           });
           if (gw && t.parallel) {
#pragma omp parallel for schedule(static) if (w_size > kParallelGrain)
             for (int64_t i = 0; i < w_size; ++i) {
               float sum = 0;
               for (int64_t k = 0; k < partial_count; ++k) sum += partial_gw[k * w_size + i];
               gw[i] += sum;
             }
           }
         });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// conv2d_reference: the definition, one output element at a time, with the same padding semantics. Its backward
// runs the same loops with the roles swapped, so tests can compare both directions with the fast path.
// ---------------------------------------------------------------------------------------------------------------

Tensor conv2d_reference(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  ConvGeometry g = conv_geometry(x, w, b, opt, "conv2d_reference");
  const int64_t H = g.in_H, W = g.in_W;
  // Visit every (n, co, oy, ox, ci, ki, kj) tap that reads a real input element (not a zero-padding cell).
  auto for_each_tap = [g, H, W, opt](auto body) {
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co) {
        const int64_t grp = co / g.cout_g;
        for (int64_t oy = 0; oy < g.Ho; ++oy)
          for (int64_t ox = 0; ox < g.Wo; ++ox)
            for (int64_t ci = 0; ci < g.cin_g; ++ci)
              for (int64_t ki = 0; ki < g.kh; ++ki)
                for (int64_t kj = 0; kj < g.kw; ++kj) {
                  const int64_t iy = pad_source(oy * opt.stride_h - opt.pad_h + ki * opt.dilation_h, H, opt.pad_mode);
                  const int64_t ix = pad_source(ox * opt.stride_w - opt.pad_w + kj * opt.dilation_w, W, opt.pad_mode);
                  if (iy < 0 || ix < 0) continue;
                  const int64_t c = grp * g.cin_g + ci;
                  body(((n * g.Cout + co) * g.Ho + oy) * g.Wo + ox, ((n * g.Cin + c) * H + iy) * W + ix,
                       ((co * g.cin_g + ci) * g.kh + ki) * g.kw + kj, co);
                }
      }
  };
  Tensor y({g.N, g.Cout, g.Ho, g.Wo});
  float* py = y.data();
  const float *px = x.data(), *pw = w.data();
  if (b.defined())
    for (int64_t i = 0; i < y.numel(); ++i) py[i] = b.data()[(i / g.hw_out()) % g.Cout];
  for_each_tap([&](int64_t o, int64_t i, int64_t k, int64_t) { py[o] += px[i] * pw[k]; });
  record(y, "conv2d_reference", {x, w, b},
         [for_each_tap, xs = x.impl()->data, ws = w.impl()->data, hw = g.hw_out(), cout = g.Cout,
          ny = y.numel()](const float* gy, const std::vector<float*>& gin) {
           float *gx = gin[0], *gw = gin[1], *gb = gin[2];
           for_each_tap([&](int64_t o, int64_t i, int64_t k, int64_t) {
             if (gx) gx[i] += gy[o] * (*ws)[k];
             if (gw) gw[k] += gy[o] * (*xs)[i];
           });
           if (gb)
             for (int64_t o = 0; o < ny; ++o) gb[(o / hw) % cout] += gy[o];
         });
  return y;
}

}  // namespace eq
