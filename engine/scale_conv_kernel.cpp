// equilab — the scale convolution kernels: one direct convolution (engine/direct_conv.h) per output scale and
// sample, reading zero-padded copies of the scale window; and the direct loops they are tested against. See
// scale_conv_kernel.h.
#include "engine/scale_conv_kernel.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "engine/direct_conv.h"
#include "engine/error.h"
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
template <class T>
T* grow(std::vector<T>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// The plane geometry of output scale s: H x W, the kernel, dilation d_s.
DirectConvShape plane_shape(const ScaleConvShape& g, int64_t s) { return {g.H, g.W, g.kh, g.kw, g.dilation[s]}; }

// The number of terms of output scale s: the input scales s .. s+m-1 its window spans (the top of the scale axis
// is zero padding, skipped rather than multiplied).
int64_t terms(const ScaleConvShape& g, int64_t s) { return std::min(g.Ks, g.S - s); }

// The planes (c, j) of x[n, :, s .. s+m-1] in the framed layout for dilation d_s, one after another: the input of
// output scale s for the weight-type kernel (rows (c, j) match the weight's [Cout, Cin, m, kh, kw]). Returns the
// thread's buffer.
const float* framed_window(const ScaleConvShape& g, const float* x, int64_t n, int64_t s) {
  thread_local std::vector<float> buffer;
  const DirectConvShape sh = plane_shape(g, s);
  const int64_t m = terms(g, s), plane = sh.framed_plane(), hw = g.H * g.W;
  float* out = grow(buffer, g.Cin * m * plane);
  for (int64_t c = 0; c < g.Cin; ++c)
    for (int64_t j = 0; j < m; ++j)
      direct_conv_pad_framed(sh, x + ((n * g.Cin + c) * g.S + s + j) * hw, out + (c * m + j) * plane);
  return out;
}

// Flat padded copies of every plane of one sample of a [N, C, S, H, W] tensor, each padded once, for the largest
// dilation that reads it (scale t's planes for pad_for[t]): plane (c, t) at offset[t] + c * flat_plane(pad_for[t]).
struct FlatSample {
  std::vector<DirectConvShape> pad_for;  // [S]
  std::vector<int64_t> offset;           // [S + 1]
  FlatSample(int64_t C, std::vector<DirectConvShape> shapes) : pad_for(std::move(shapes)) {
    offset.assign(pad_for.size() + 1, 0);
    for (size_t t = 0; t < pad_for.size(); ++t) offset[t + 1] = offset[t] + C * pad_for[t].flat_plane();
  }
  // Pads sample n of `src` (C channels) into the thread's buffer and returns it.
  float* pad(const ScaleConvShape& g, const float* src, int64_t C, int64_t n) const {
    thread_local std::vector<float> buffer;
    float* out = grow(buffer, offset.back());
    for (int64_t t = 0; t < g.S; ++t)
      for (int64_t c = 0; c < C; ++c)
        direct_conv_pad_flat(pad_for[t], src + ((n * C + c) * g.S + t) * g.H * g.W,
                             out + offset[t] + c * pad_for[t].flat_plane());
    return out;
  }
  // Plane (c, t) of a padded sample, read as the flat layout of `as` (dilation <= pad_for[t]'s).
  const float* plane(const float* padded, int64_t c, int64_t t, const DirectConvShape& as) const {
    return direct_conv_flat_view(pad_for[t], padded + offset[t] + c * pad_for[t].flat_plane(), as);
  }
};

// Pointers to the planes (n, c, t) of a [N, C, S, H, W] tensor for c < C, in the thread's buffer (one list per
// thread at a time: the next call overwrites it).
float* const* channel_planes(const ScaleConvShape& g, float* base, int64_t C, int64_t n, int64_t t) {
  thread_local std::vector<float*> planes;
  float** out = grow(planes, C);
  for (int64_t c = 0; c < C; ++c) out[c] = base + ((n * C + c) * g.S + t) * g.H * g.W;
  return out;
}

// Weights of the m-term windows for the forward-type kernel, m = 1 .. Ks: w[:, :, :m] as [Cout, Cin*m, kh, kw],
// packed (index 0 unused).
std::vector<std::vector<float>> forward_weights(const ScaleConvShape& g, const float* w) {
  const int64_t kk = g.kh * g.kw;
  std::vector<std::vector<float>> packed(static_cast<size_t>(g.Ks + 1));
  std::vector<float> window(static_cast<size_t>(g.Cout * g.Cin * g.Ks * kk));
  for (int64_t m = 1; m <= g.Ks; ++m) {
    for (int64_t oc = 0; oc < g.Cout * g.Cin; ++oc)  // (o, c) pairs; their j < m blocks are contiguous in both
      std::copy(w + oc * g.Ks * kk, w + (oc * g.Ks + m) * kk, window.data() + oc * m * kk);
    packed[m].resize(static_cast<size_t>(g.Cout * g.Cin * m * kk));
    direct_conv_pack_weight(plane_shape(g, 0), g.Cout, g.Cin * m, window.data(), packed[m].data());
  }
  return packed;
}

// Weights of the input gradient, one per term j: the gradient that output scale s sends to input scale s + j is a
// convolution of dy[:, :, s] (Cout planes) at dilation d_s with w[:, :, j] spatially flipped and channel-swapped,
// [Cin, Cout, kh, kw], packed.
std::vector<std::vector<float>> input_grad_weights(const ScaleConvShape& g, const float* w) {
  const int64_t kk = g.kh * g.kw;
  std::vector<std::vector<float>> packed(static_cast<size_t>(g.Ks));
  std::vector<float> flipped(static_cast<size_t>(g.Cin * g.Cout * kk));
  for (int64_t j = 0; j < g.Ks; ++j) {
    for (int64_t c = 0; c < g.Cin; ++c)
      for (int64_t o = 0; o < g.Cout; ++o)
        for (int64_t k = 0; k < kk; ++k)
          flipped[(c * g.Cout + o) * kk + k] = w[((o * g.Cin + c) * g.Ks + j) * kk + (kk - 1 - k)];
    packed[j].resize(flipped.size());
    direct_conv_pack_weight(plane_shape(g, 0), g.Cin, g.Cout, flipped.data(), packed[j].data());
  }
  return packed;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Fast path
// ---------------------------------------------------------------------------------------------------------------

void scale_conv_forward(const ScaleConvShape& g, const float* x, const float* w, const float* b, float* y) {
  check_shape(g, "scale_conv_forward");
  const std::vector<std::vector<float>> packed = forward_weights(g, w);
  // Input scale t is read by the output scales s = t - j (j < Ks) at dilation d_s: padded once, for the largest.
  std::vector<DirectConvShape> pad_for;
  for (int64_t t = 0; t < g.S; ++t) {
    DirectConvShape sh = plane_shape(g, t);
    for (int64_t s = std::max<int64_t>(0, t - g.Ks + 1); s <= t; ++s) sh.d = std::max(sh.d, g.dilation[s]);
    pad_for.push_back(sh);
  }
  const FlatSample layout(g.Cin, pad_for);
  // Jobs are samples n (a job owns y[n]; dynamic: on a shared machine a static split left one thread waiting at the
  // barrier, and the result does not depend on which thread took a job).
#pragma omp parallel for schedule(dynamic)
  for (int64_t n = 0; n < g.N; ++n) {
    const float* padded = layout.pad(g, x, g.Cin, n);
    thread_local std::vector<const float*> in;
    for (int64_t s = 0; s < g.S; ++s) {
      const DirectConvShape sh = plane_shape(g, s);
      const int64_t m = terms(g, s);
      in.clear();
      for (int64_t c = 0; c < g.Cin; ++c)  // rows (c, j) of the packed [Cout, Cin*m, kh, kw] weights
        for (int64_t j = 0; j < m; ++j) in.push_back(layout.plane(padded, c, s + j, sh));
      direct_conv_forward(sh, in.data(), g.Cin * m, packed[m].data(), g.Cout, b, channel_planes(g, y, g.Cout, n, s),
                          false, 0, g.H);
    }
  }
}

void scale_conv_backward(const ScaleConvShape& g, const float* x, const float* w, const float* dy, float* dx,
                         float* dw, float* db) {
  check_shape(g, "scale_conv_backward");
  const int64_t ld = g.S * g.H * g.W, hw = g.H * g.W, kk = g.kh * g.kw;
  if (db) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < g.Cout; ++o) {
      double sum = 0;  // every scale of channel o of a sample is one contiguous block
      for (int64_t n = 0; n < g.N; ++n) sum += contiguous_sum(dy + (n * g.Cout + o) * ld, ld);
      db[o] += static_cast<float>(sum);
    }
  }

  if (dx) {
    // Gathered per INPUT scale t: dx[n, :, t] sums the terms j < Ks with s = t - j >= 0, each a forward-type
    // convolution of dy[n, :, s] at dilation d_s. Jobs are samples n (a job owns dx[n]), so that each plane
    // dy[n, o, s] is padded once and read by both input scales it reaches.
    const std::vector<std::vector<float>> packed = input_grad_weights(g, w);
    std::vector<DirectConvShape> pad_for;
    for (int64_t s = 0; s < g.S; ++s) pad_for.push_back(plane_shape(g, s));
    const FlatSample layout(g.Cout, pad_for);
#pragma omp parallel for schedule(dynamic)  // as in the forward: jobs own their planes
    for (int64_t n = 0; n < g.N; ++n) {
      const float* padded = layout.pad(g, dy, g.Cout, n);
      thread_local std::vector<const float*> in;
      for (int64_t t = 0; t < g.S; ++t) {
        float* const* out = channel_planes(g, dx, g.Cin, n, t);
        for (int64_t j = 0; j < g.Ks && j <= t; ++j) {
          const DirectConvShape sh = plane_shape(g, t - j);
          in.clear();
          for (int64_t o = 0; o < g.Cout; ++o) in.push_back(layout.plane(padded, o, t - j, sh));
          direct_conv_forward(sh, in.data(), g.Cout, packed[j].data(), g.Cin, nullptr, out, true, 0, g.H);
        }
      }
    }
  }

  if (!dw) return;
  // The jobs (n, s) in `chunks` fixed runs, each with its own accumulators (direct_conv_weight_grad's
  // [Cin*m*kk, padded Cout] layout, one block per term count m at offset block*m(m-1)/2); threads take runs as they
  // come, and the runs are summed in run order: the same result for any thread count, and no thread waits for a
  // slower one holding a fixed share.
  const int64_t rows = direct_conv_padded_rows(g.Cout), block = g.Cin * kk * rows;
  const int64_t region = block * g.Ks * (g.Ks + 1) / 2, jobs = g.N * g.S, chunks = std::min<int64_t>(jobs, 64);
  std::vector<float> partial(static_cast<size_t>(chunks * region), 0.0f);
#pragma omp parallel for schedule(dynamic)
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t job = chunk * jobs / chunks; job < (chunk + 1) * jobs / chunks; ++job) {
      const int64_t n = job / g.S, s = job % g.S, m = terms(g, s);
      const DirectConvShape sh = plane_shape(g, s);
      const float* in = framed_window(g, x, n, s);
      thread_local std::vector<float> buffer;
      float* gt = grow(buffer, hw * rows);
      direct_conv_transpose_grad(sh, channel_planes(g, const_cast<float*>(dy), g.Cout, n, s), g.Cout, gt);
      direct_conv_weight_grad(sh, in, g.Cin * m, gt, g.Cout, partial.data() + chunk * region + block * m * (m - 1) / 2);
    }
  for (int64_t chunk = 1; chunk < chunks; ++chunk)
    for (int64_t i = 0; i < region; ++i) partial[i] += partial[chunk * region + i];
  std::vector<float> window(static_cast<size_t>(g.Cout * g.Cin * g.Ks * kk));
  for (int64_t m = 1; m <= g.Ks; ++m) {
    std::fill(window.begin(), window.end(), 0.0f);  // dw[:, :, :m] as [Cout, Cin*m, kk]
    direct_conv_gather_weight_grad(plane_shape(g, 0), partial.data() + block * m * (m - 1) / 2, g.Cout, g.Cin * m,
                                   window.data());
    for (int64_t oc = 0; oc < g.Cout * g.Cin; ++oc)  // (o, c) pairs; their j < m blocks are contiguous in both
      for (int64_t i = 0; i < m * kk; ++i) dw[oc * g.Ks * kk + i] += window[oc * m * kk + i];
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
