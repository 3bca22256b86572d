// equilab — the scale convolution kernels: tiles of (scale, row) pairs, im2col straight from [N, C, S, H, W],
// one sgemm per tile written in place; and the direct loops they are tested against. See scale_conv_kernel.h.
#include "engine/scale_conv_kernel.h"

#include <omp.h>

#include <algorithm>

#include "engine/error.h"
#include "engine/matmul.h"
#include "engine/parallel.h"
#include "engine/reduce.h"

namespace eq {

namespace {

void check_shape(const ScaleConvShape& g, const char* op) {
  check(g.N > 0 && g.Cin > 0 && g.Cout > 0 && g.S > 0 && g.H > 0 && g.W > 0 && g.Ks > 0 && g.kh > 0 && g.kw > 0,
        op, ": every size must be positive (N ", g.N, ", Cin ", g.Cin, ", Cout ", g.Cout, ", S ", g.S, ", H ", g.H,
        ", W ", g.W, ", Ks ", g.Ks, ", kernel ", g.kh, "x", g.kw, ")");
  check(g.kh % 2 == 1 && g.kw % 2 == 1, op, ": kernel ", g.kh, "x", g.kw, " must be odd");
  check(static_cast<int64_t>(g.dilation.size()) == g.S, op, ": ", g.dilation.size(), " dilations for ", g.S,
        " scales");
  for (int64_t d : g.dilation) check(d >= 1, op, ": dilation ", d, " must be >= 1");
}

// The thread's scratch buffer, grown on demand and reused across calls.
float* grow(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// Output rows [oy0, oy1) of one plane [H, W] as kh*kw tap rows at col + k*ld, each (oy1 - oy0)*W long. Stride 1,
// same size, zero padding d (k/2): tap (ki, kj) of pixel (oy, ox) reads (oy + (ki - kh/2) d, ox + (kj - kw/2) d).
// For one tap the valid pixels of consecutive rows form one contiguous run of the plane, so it is copied in one
// go; what that drags across row ends lands in padding columns, zeroed after.
void gather_taps(const float* __restrict plane, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t d, int64_t oy0,
                 int64_t oy1, float* __restrict col, int64_t ld) {
  const int64_t len = (oy1 - oy0) * W;
  for (int64_t ki = 0; ki < kh; ++ki)
    for (int64_t kj = 0; kj < kw; ++kj) {
      float* __restrict dst = col + (ki * kw + kj) * ld;
      const int64_t off_h = (ki - kh / 2) * d, off_w = (kj - kw / 2) * d;
      const int64_t y_lo = std::clamp(-off_h, oy0, oy1), y_hi = std::clamp(H - off_h, y_lo, oy1);
      const int64_t x_lo = std::clamp<int64_t>(-off_w, 0, W), x_hi = std::clamp<int64_t>(W - off_w, x_lo, W);
      std::fill(dst, dst + (y_lo - oy0) * W, 0.0f);
      std::fill(dst + (y_hi - oy0) * W, dst + len, 0.0f);
      const int64_t n = (y_hi - y_lo) * W;
      if (n == 0) continue;
      float* __restrict out = dst + (y_lo - oy0) * W;
      if (x_hi <= x_lo) {  // the tap misses every column (d (k/2) >= W): all padding
        std::fill(out, out + n, 0.0f);
        continue;
      }
      const float* __restrict src = plane + (y_lo + off_h) * W + off_w + x_lo;
      const int64_t run = n - (W - x_hi) - x_lo;
      for (int64_t i = 0; i < run; ++i) out[x_lo + i] = src[i];
      for (int64_t r = 0; r < n; r += W) {
        for (int64_t ox = 0; ox < x_lo; ++ox) out[r + ox] = 0;
        for (int64_t ox = x_hi; ox < W; ++ox) out[r + ox] = 0;
      }
    }
}

// One use of the tile machinery, over destination scales t: the columns of t are the taps of the source planes
// (c, source[t][j]) at dilation[t][j], rows (c, j, ki, kj), and key[t] selects the weight matrix weight[key]
// (M_key rows, one row of columns per source block). Consecutive scales with equal keys share GEMMs.
struct Pass {
  int64_t C = 0;                                       // source channels per scale
  std::vector<int64_t> key;                            // [S], in 1..Ks
  std::vector<std::vector<int64_t>> source, dilation;  // [S][source blocks per channel]
  std::vector<const float*> weight;                    // [Ks + 1]
  std::vector<std::vector<float>> owned;               // the copies weight[] may point into
  int64_t depth(const ScaleConvShape& g, int64_t t) const { return C * int64_t(source[t].size()) * g.kh * g.kw; }
};

// The forward (and the columns of dW): output scale s reads input scales s + j at dilation d_s; with w,
// weight[m] = w[:, :, :m] as [Cout, Cin*m*kk] (w itself for m = Ks).
Pass forward_pass(const ScaleConvShape& g, const float* w) {
  Pass p;
  p.C = g.Cin;
  for (int64_t s = 0; s < g.S; ++s) {
    p.key.push_back(std::min(g.Ks, g.S - s));  // the number of terms
    p.source.emplace_back(), p.dilation.emplace_back();
    for (int64_t j = 0; j < p.key.back(); ++j)
      p.source.back().push_back(s + j), p.dilation.back().push_back(g.dilation[s]);
  }
  p.weight.assign(g.Ks + 1, nullptr);
  p.owned.resize(g.Ks + 1);
  if (!w) return p;
  const int64_t kk = g.kh * g.kw;
  for (int64_t m = 1; m <= g.Ks; ++m) {
    if (m == g.Ks) {
      p.weight[m] = w;
      continue;
    }
    std::vector<float>& copy = p.owned[m];
    copy.resize(static_cast<size_t>(g.Cout * g.Cin * m * kk));
    for (int64_t oc = 0; oc < g.Cout * g.Cin; ++oc)  // (o, c) pairs; their j < m blocks are contiguous in both
      std::copy(w + oc * g.Ks * kk, w + (oc * g.Ks + m) * kk, copy.data() + oc * m * kk);
    p.weight[m] = copy.data();
  }
  return p;
}

// The input gradient, per output scale s: the gradient of its window x[:, :, s .. s+m-1] (m = min(Ks, S - s)) is
// one transposed convolution of dy[:, :, s] at dilation d_s with weight[m][(c, j), (o, k)] = w[o, c, j, kk - 1 - k]
// (spatially flipped, channels swapped): a GEMM with Cin*m rows and depth Cout*kk, whose rows are then added into
// the m input scales. (Gathering the terms per INPUT scale instead, down the scale axis, would give GEMMs of only
// Cin rows and depth Cout*m*kk: twice the im2col and packing per FLOP at Ks = 2.)
Pass input_grad_pass(const ScaleConvShape& g, const float* w) {
  Pass p;
  p.C = g.Cout;
  for (int64_t s = 0; s < g.S; ++s) {
    p.key.push_back(std::min(g.Ks, g.S - s));  // the number of input scales the window spans
    p.source.push_back({s}), p.dilation.push_back({g.dilation[s]});
  }
  p.weight.assign(g.Ks + 1, nullptr);
  p.owned.resize(g.Ks + 1);
  const int64_t kk = g.kh * g.kw;
  for (int64_t m = 1; m <= g.Ks; ++m) {
    std::vector<float>& wt = p.owned[m];
    wt.resize(static_cast<size_t>(g.Cin * m * g.Cout * kk));
    for (int64_t c = 0; c < g.Cin; ++c)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t o = 0; o < g.Cout; ++o)
          for (int64_t k = 0; k < kk; ++k)
            wt[((c * m + j) * g.Cout + o) * kk + k] = w[((o * g.Cin + c) * g.Ks + j) * kk + (kk - 1 - k)];
    p.weight[m] = wt.data();
  }
  return p;
}

// Rows r0 .. r1-1 of the run of destination scales starting at t0 (row r is scale t0 + r / H, output row r % H),
// all with key m. In [N, C, S, H, W] these rows of one channel are one contiguous block from t0*H*W + r0*W.
struct Tile {
  int64_t m, t0, r0, r1;
};

// Runs of consecutive scales with equal term counts, cut into tiles whose col buffer stays near the L2 cache (as
// conv.cpp's tiling) yet whose GEMM is wide.
std::vector<Tile> tiles(const Pass& p, const ScaleConvShape& g) {
  constexpr int64_t kColBytes = 512 << 10, kMinColumns = 128, kMaxColumns = 4096;
  std::vector<Tile> out;
  for (int64_t t0 = 0; t0 < g.S;) {
    int64_t t1 = t0 + 1;
    while (t1 < g.S && p.key[t1] == p.key[t0]) ++t1;
    const int64_t m = p.key[t0], rows = p.depth(g, t0), total = (t1 - t0) * g.H;
    const int64_t columns = std::clamp<int64_t>(kColBytes / (rows * int64_t(sizeof(float))), kMinColumns, kMaxColumns);
    const int64_t max_rows = std::clamp<int64_t>(columns / g.W, 1, total);
    const int64_t count = (total + max_rows - 1) / max_rows, per = (total + count - 1) / count;  // equal tiles
    for (int64_t r = 0; r < total; r += per) out.push_back({m, t0, r, std::min(total, r + per)});
    t0 = t1;
  }
  return out;
}

// col [depth, (r1 - r0)*W] of one tile from one sample's source src [C, S, H, W].
void tile_columns(const Pass& p, const ScaleConvShape& g, const float* src, const Tile& tile, float* col) {
  const int64_t ld = (tile.r1 - tile.r0) * g.W, kk = g.kh * g.kw, plane = g.H * g.W;
  for (int64_t r = tile.r0; r < tile.r1;) {  // one segment per scale the tile touches
    const int64_t t = tile.t0 + r / g.H, oy0 = r % g.H, oy1 = std::min(g.H, oy0 + (tile.r1 - r));
    float* segment = col + (r - tile.r0) * g.W;
    const int64_t blocks = static_cast<int64_t>(p.source[t].size());
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t j = 0; j < blocks; ++j)
        gather_taps(src + (c * g.S + p.source[t][j]) * plane, g.H, g.W, g.kh, g.kw, p.dilation[t][j], oy0, oy1,
                    segment + (c * blocks + j) * kk * ld, ld);
    r += oy1 - oy0;
  }
}

// fn(tile, offset of its first row in a [S, H, W] plane, columns, GEMM depth, col) for every tile of one sample.
template <class Fn>
void for_each_tile(const Pass& p, const ScaleConvShape& g, const std::vector<Tile>& all, const float* src, Fn fn) {
  thread_local std::vector<float> buffer;
  for (const Tile& t : all) {
    const int64_t cols = (t.r1 - t.r0) * g.W, depth = p.depth(g, t.t0);
    float* col = grow(buffer, depth * cols);
    tile_columns(p, g, src, t, col);
    fn(t, t.t0 * g.H * g.W + t.r0 * g.W, cols, depth, col);
  }
}

// Threads take whole samples (each sgemm single-threaded inside the region); with fewer samples than threads the
// samples run in turn and every sgemm is threaded instead.
bool parallel_over_samples(const ScaleConvShape& g) { return num_threads() > 1 && g.N >= num_threads(); }


}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Fast path
// ---------------------------------------------------------------------------------------------------------------

void scale_conv_forward(const ScaleConvShape& g, const float* x, const float* w, const float* b, float* y) {
  check_shape(g, "scale_conv_forward");
  const Pass p = forward_pass(g, w);
  const std::vector<Tile> all = tiles(p, g);
  const int64_t ld = g.S * g.H * g.W;  // row stride of one output channel
#pragma omp parallel for schedule(static) if (parallel_over_samples(g))
  for (int64_t n = 0; n < g.N; ++n)
    for_each_tile(p, g, all, x + n * g.Cin * ld,
                  [&](const Tile& t, int64_t offset, int64_t cols, int64_t depth, const float* col) {
                    float* out = y + n * g.Cout * ld + offset;
                    if (b)
                      for (int64_t o = 0; o < g.Cout; ++o) std::fill(out + o * ld, out + o * ld + cols, b[o]);
                    gemm(false, false, g.Cout, cols, depth, 1.0f, p.weight[t.m], depth, col, cols, b ? 1.0f : 0.0f,
                         out, ld);
                  });
}

void scale_conv_backward(const ScaleConvShape& g, const float* x, const float* w, const float* dy, float* dx,
                         float* dw, float* db) {
  check_shape(g, "scale_conv_backward");
  const int64_t ld = g.S * g.H * g.W, kk = g.kh * g.kw;
  if (db) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < g.Cout; ++o) {
      double sum = 0;  // every scale of channel o of a sample is one contiguous block
      for (int64_t n = 0; n < g.N; ++n) sum += contiguous_sum(dy + (n * g.Cout + o) * ld, ld);
      db[o] += static_cast<float>(sum);
    }
  }
  if (!dx && !dw) return;
  const bool parallel = parallel_over_samples(g);
  const Pass up = forward_pass(g, nullptr);  // dW reuses the forward's columns; no weight needed
  const std::vector<Tile> up_tiles = tiles(up, g);
  Pass down;  // the input gradient, per output scale (see input_grad_pass)
  std::vector<Tile> down_tiles;
  if (dx) down = input_grad_pass(g, w), down_tiles = tiles(down, g);

  // Per-thread partial weight gradients, one compact block [Cout, Cin*m*kk] per term count m (at offset
  // Cout*Cin*kk * m(m-1)/2), summed in thread order after the loop and scattered into dw.
  const int64_t block = g.Cout * g.Cin * kk, region = block * g.Ks * (g.Ks + 1) / 2;
  const int64_t partial_count = parallel ? num_threads() : 1;
  std::vector<float> partial(dw ? static_cast<size_t>(partial_count * region) : 0, 0.0f);

#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t n = 0; n < g.N; ++n) {
    const float* dy_n = dy + n * g.Cout * ld;
    if (dw) {
      float* mine = partial.data() + (parallel ? omp_get_thread_num() : 0) * region;
      for_each_tile(up, g, up_tiles, x + n * g.Cin * ld,
                    [&](const Tile& t, int64_t offset, int64_t cols, int64_t depth, const float* col) {
                      gemm(false, true, g.Cout, depth, cols, 1.0f, dy_n + offset, ld, col, cols, 1.0f,
                           mine + block * t.m * (t.m - 1) / 2, depth);
                    });
    }
    if (dx) {
      float* dx_n = dx + n * g.Cin * ld;
      for_each_tile(down, g, down_tiles, dy_n,
                    [&](const Tile& t, int64_t offset, int64_t cols, int64_t depth, const float* col) {
                      thread_local std::vector<float> window_buffer;
                      float* window = grow(window_buffer, g.Cin * t.m * cols);  // rows (c, j)
                      gemm(false, false, g.Cin * t.m, cols, depth, 1.0f, down.weight[t.m], depth, col, cols, 0.0f,
                           window, cols);
                      // Row (c, j) belongs to input scale (scale of the column) + j: plane c*S + j from offset.
                      for (int64_t c = 0; c < g.Cin; ++c)
                        for (int64_t j = 0; j < t.m; ++j) {
                          float* __restrict dst = dx_n + c * ld + j * g.H * g.W + offset;
                          const float* __restrict src = window + (c * t.m + j) * cols;
                          for (int64_t i = 0; i < cols; ++i) dst[i] += src[i];
                        }
                    });
    }
  }
  if (!dw) return;
  for (int64_t m = 1; m <= g.Ks; ++m) {
    const float* first = partial.data() + block * m * (m - 1) / 2;
#pragma omp parallel for schedule(static) if (g.Cout * g.Cin * m * kk > kParallelGrain)
    for (int64_t oc = 0; oc < g.Cout * g.Cin; ++oc)  // (o, c) pairs
      for (int64_t i = 0; i < m * kk; ++i) {
        float sum = 0;
        for (int64_t th = 0; th < partial_count; ++th) sum += first[th * region + oc * m * kk + i];
        dw[oc * g.Ks * kk + i] += sum;  // term j < m, tap k: i = j*kk + k in both layouts
      }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reference: the definition, one output element at a time
// ---------------------------------------------------------------------------------------------------------------

namespace {

// Calls tap(y index, x index, w index) for every (n, o, s, oy, ox, j, c, ki, kj) whose input pixel is inside the
// image and whose scale s + j exists.
template <class Fn>
void for_each_tap(const ScaleConvShape& g, Fn tap) {
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.Cout; ++o)
      for (int64_t s = 0; s < g.S; ++s)
        for (int64_t oy = 0; oy < g.H; ++oy)
          for (int64_t ox = 0; ox < g.W; ++ox) {
            const int64_t yi = (((n * g.Cout + o) * g.S + s) * g.H + oy) * g.W + ox;
            for (int64_t j = 0; j < g.Ks && s + j < g.S; ++j)
              for (int64_t c = 0; c < g.Cin; ++c)
                for (int64_t ki = 0; ki < g.kh; ++ki)
                  for (int64_t kj = 0; kj < g.kw; ++kj) {
                    const int64_t iy = oy + (ki - g.kh / 2) * g.dilation[s], ix = ox + (kj - g.kw / 2) * g.dilation[s];
                    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
                    tap(yi, (((n * g.Cin + c) * g.S + s + j) * g.H + iy) * g.W + ix,
                        (((o * g.Cin + c) * g.Ks + j) * g.kh + ki) * g.kw + kj);
                  }
          }
}

}  // namespace

void scale_conv_forward_reference(const ScaleConvShape& g, const float* x, const float* w, const float* b, float* y) {
  check_shape(g, "scale_conv_forward_reference");
  const int64_t plane = g.S * g.H * g.W, count = g.N * g.Cout * plane;
  std::vector<double> acc(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) acc[i] = b ? b[(i / plane) % g.Cout] : 0.0;
  for_each_tap(g, [&](int64_t yi, int64_t xi, int64_t wi) { acc[yi] += double(w[wi]) * x[xi]; });
  for (int64_t i = 0; i < count; ++i) y[i] = static_cast<float>(acc[i]);
}

void scale_conv_backward_reference(const ScaleConvShape& g, const float* x, const float* w, const float* dy,
                                   float* dx, float* dw, float* db) {
  check_shape(g, "scale_conv_backward_reference");
  for_each_tap(g, [&](int64_t yi, int64_t xi, int64_t wi) {
    if (dx) dx[xi] += w[wi] * dy[yi];
    if (dw) dw[wi] += x[xi] * dy[yi];
  });
  const int64_t plane = g.S * g.H * g.W;
  if (db)
    for (int64_t i = 0; i < g.N * g.Cout * plane; ++i) db[(i / plane) % g.Cout] += dy[i];
}

}  // namespace eq
