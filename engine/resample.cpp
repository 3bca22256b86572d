#include "engine/resample.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {


// ---------------------------------------------------------------------------------------------------------------
// Coordinates: normalised grid value -> pixel coordinate, with padding applied, and its derivative.
// ---------------------------------------------------------------------------------------------------------------

namespace {

struct AxisCoord {
  float pos;    // pixel coordinate (pixel centres at integers) after padding
  float gain;   // d(pos) / d(normalised coordinate): 0 where padding clamps, negative after an odd reflection
  bool valid;   // false for non-finite input: such a sample reads 0
};

// Mirrors `pos` into [lo, hi] by repeated reflection at both ends; flips the sign of `gain` on each reflection.
float reflect(float pos, float lo, float hi, float& gain) {
  const float span = hi - lo;
  if (span <= 0) {
    gain = 0;
    return lo;
  }
  float d = pos - lo;
  if (d < 0) {
    d = -d;
    gain = -gain;
  }
  const float extra = std::fmod(d, span);
  const bool odd_flips = std::fmod(std::floor(d / span), 2.0f) != 0;  // in float: huge d must not overflow an int
  if (!odd_flips) return lo + extra;
  gain = -gain;
  return hi - extra;
}

AxisCoord unnormalize(float x, int64_t size, bool align_corners, GridPadding padding) {
  if (!std::isfinite(x)) return {0, 0, false};
  const float n = static_cast<float>(size);
  AxisCoord c;
  c.valid = true;
  if (align_corners) {
    c.gain = (n - 1) / 2;
    c.pos = (x + 1) * c.gain;
  } else {
    c.gain = n / 2;
    c.pos = ((x + 1) * n - 1) / 2;
  }
  if (padding == GridPadding::Reflection)
    c.pos = align_corners ? reflect(c.pos, 0, n - 1, c.gain) : reflect(c.pos, -0.5f, n - 0.5f, c.gain);
  if (padding != GridPadding::Zeros) {  // both Border and Reflection end with a clamp
    if (c.pos < 0) c.pos = 0, c.gain = 0;
    if (c.pos > n - 1) c.pos = n - 1, c.gain = 0;
  }
  return c;
}

// The (up to) four input cells one output location reads, as offsets into an [H, W] plane (-1: outside, reads 0)
// with their weights; plus what the grid gradient needs. Bilinear tap order: (y0,x0), (y0,x1), (y1,x0), (y1,x1).
struct Taps {
  int64_t offset[4] = {-1, -1, -1, -1};
  float weight[4] = {0, 0, 0, 0};
  float fx = 0, fy = 0;          // fractional parts: weight of x1 and of y1
  float gain_x = 0, gain_y = 0;  // d(pixel coordinate)/d(grid value); 0 for nearest
};

Taps make_taps(float gx, float gy, int64_t H, int64_t W, const GridSampleOptions& opt) {
  Taps t;
  const AxisCoord cx = unnormalize(gx, W, opt.align_corners, opt.padding);
  const AxisCoord cy = unnormalize(gy, H, opt.align_corners, opt.padding);
  if (!cx.valid || !cy.valid) return t;
  // Far outside (zeros padding), every neighbour is outside: stop before floor() meets huge values.
  if (!(cx.pos > -2 && cx.pos < W + 1 && cy.pos > -2 && cy.pos < H + 1)) return t;
  if (opt.mode == SampleMode::Nearest) {
    const int64_t x = static_cast<int64_t>(std::nearbyint(cx.pos)), y = static_cast<int64_t>(std::nearbyint(cy.pos));
    if (x >= 0 && x < W && y >= 0 && y < H) t.offset[0] = y * W + x, t.weight[0] = 1;
    return t;
  }
  const int64_t x0 = static_cast<int64_t>(std::floor(cx.pos)), y0 = static_cast<int64_t>(std::floor(cy.pos));
  t.fx = cx.pos - static_cast<float>(x0);
  t.fy = cy.pos - static_cast<float>(y0);
  t.gain_x = cx.gain;
  t.gain_y = cy.gain;
  const int64_t xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
  const float wx[2] = {1 - t.fx, t.fx}, wy[2] = {1 - t.fy, t.fy};
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int k = 2 * a + b;
      if (ys[a] >= 0 && ys[a] < H && xs[b] >= 0 && xs[b] < W) {
        t.offset[k] = ys[a] * W + xs[b];
        t.weight[k] = wy[a] * wx[b];
      }
    }
  return t;
}

inline float tap_value(const float* plane, const Taps& t, int k) { return t.offset[k] >= 0 ? plane[t.offset[k]] : 0.0f; }

void check_grid_sample(const Tensor& input, const Tensor& grid) {
  check(input.dim() == 4, "grid_sample: input must be [N, C, H, W], got ", input.shape());
  check(grid.dim() == 4 && grid.size(3) == 2, "grid_sample: grid must be [N, Ho, Wo, 2], got ", grid.shape(),
        " (input ", input.shape(), ")");
  check(grid.size(0) == input.size(0), "grid_sample: grid batch ", grid.size(0), " differs from input batch ",
        input.size(0), " (input ", input.shape(), ", grid ", grid.shape(), ")");
  check(input.size(2) > 0 && input.size(3) > 0, "grid_sample: input has an empty spatial axis ", input.shape());
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// grid_sample. Forward: parallel over output rows (n, i); each location's taps are computed once and reused for
// every channel. Backward to the input scatters, so it runs parallel over (n, c) planes, each thread owning one
// input plane (no atomics), from taps precomputed once per location. Backward to the grid: parallel over output
// rows, each location owning its (x, y) pair and summing over channels.
// ---------------------------------------------------------------------------------------------------------------

Tensor grid_sample(const Tensor& input, const Tensor& grid, const GridSampleOptions& opt) {
  check_grid_sample(input, grid);
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t Ho = grid.size(1), Wo = grid.size(2), HW = H * W, HWo = Ho * Wo;
  Tensor out({N, C, Ho, Wo});
  const float* px = input.data();
  const float* pg = grid.data();
  float* po = out.data();
#pragma omp parallel for if (N * C * HWo > kParallelGrain)
  for (int64_t row = 0; row < N * Ho; ++row) {
    const int64_t n = row / Ho;
    for (int64_t j = 0; j < Wo; ++j) {
      const int64_t loc = row * Wo + j;  // = n * HWo + i * Wo + j
      const Taps t = make_taps(pg[2 * loc], pg[2 * loc + 1], H, W, opt);
      const int64_t o = loc - n * HWo;
      for (int64_t c = 0; c < C; ++c) {
        const float* plane = px + (n * C + c) * HW;
        float v = 0;
        for (int k = 0; k < 4; ++k) v += t.weight[k] * tap_value(plane, t, k);
        po[(n * C + c) * HWo + o] = v;
      }
    }
  }
  if (!any_requires_grad({&input, &grid})) return out;

  Storage grid_values = grid.impl()->data;
  Storage input_values = grid.requires_grad() ? input.impl()->data : nullptr;  // only the grid gradient reads it
  record(out, "grid_sample", {input, grid},
         [grid_values, input_values, opt, N, C, H, W, Ho, Wo](const float* g, const std::vector<float*>& gin) {
           const int64_t HW = H * W, HWo = Ho * Wo;
           const float* pg = grid_values->data();
           if (float* gx = gin[0]) {
             std::vector<Taps> taps(static_cast<size_t>(N * HWo));
#pragma omp parallel for if (N * HWo > kParallelGrain / 8)
             for (int64_t loc = 0; loc < N * HWo; ++loc) taps[loc] = make_taps(pg[2 * loc], pg[2 * loc + 1], H, W, opt);
#pragma omp parallel for if (N * C * HWo > kParallelGrain)
             for (int64_t p = 0; p < N * C; ++p) {
               const int64_t n = p / C;
               float* plane = gx + p * HW;
               const float* gp = g + p * HWo;
               const Taps* tn = taps.data() + n * HWo;
               for (int64_t o = 0; o < HWo; ++o)
                 for (int k = 0; k < 4; ++k)
                   if (tn[o].offset[k] >= 0) plane[tn[o].offset[k]] += tn[o].weight[k] * gp[o];
             }
           }
           if (float* gg = gin[1]) {
             if (opt.mode == SampleMode::Nearest) return;  // piecewise constant in the grid: zero gradient
             const float* px = input_values->data();
#pragma omp parallel for if (N * C * HWo > kParallelGrain)
             for (int64_t row = 0; row < N * Ho; ++row) {
               const int64_t n = row / Ho;
               for (int64_t j = 0; j < Wo; ++j) {
                 const int64_t loc = row * Wo + j, o = loc - n * HWo;
                 const Taps t = make_taps(pg[2 * loc], pg[2 * loc + 1], H, W, opt);
                 // value = sum_k wy * wx * v_k, with wx1 = fx, wx0 = 1 - fx (same in y): differentiate the weights.
                 double d_fx = 0, d_fy = 0;
                 for (int64_t c = 0; c < C; ++c) {
                   const float* plane = px + (n * C + c) * HW;
                   const float v00 = tap_value(plane, t, 0), v01 = tap_value(plane, t, 1);
                   const float v10 = tap_value(plane, t, 2), v11 = tap_value(plane, t, 3);
                   const float go = g[(n * C + c) * HWo + o];
                   d_fx += go * ((v01 - v00) * (1 - t.fy) + (v11 - v10) * t.fy);
                   d_fy += go * ((v10 - v00) * (1 - t.fx) + (v11 - v01) * t.fx);
                 }
                 gg[2 * loc] += static_cast<float>(d_fx) * t.gain_x;
                 gg[2 * loc + 1] += static_cast<float>(d_fy) * t.gain_y;
               }
             }
           }
         });
  return out;
}

Tensor grid_sample_reference(const Tensor& input, const Tensor& grid, const GridSampleOptions& opt) {
  check_grid_sample(input, grid);
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t Ho = grid.size(1), Wo = grid.size(2);
  Tensor out({N, C, Ho, Wo});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          const float gx = grid.at({n, i, j, 0}), gy = grid.at({n, i, j, 1});
          const AxisCoord cx = unnormalize(gx, W, opt.align_corners, opt.padding);
          const AxisCoord cy = unnormalize(gy, H, opt.align_corners, opt.padding);
          auto pixel = [&](double y, double x) {
            const bool inside = cx.valid && cy.valid && y >= 0 && y < H && x >= 0 && x < W;
            return inside ? input.at({n, c, static_cast<int64_t>(y), static_cast<int64_t>(x)}) : 0.0f;
          };
          float v;
          if (opt.mode == SampleMode::Nearest) {
            v = pixel(std::nearbyint(cy.pos), std::nearbyint(cx.pos));
          } else {
            const double x0 = std::floor(cx.pos), y0 = std::floor(cy.pos), fx = cx.pos - x0, fy = cy.pos - y0;
            v = static_cast<float>((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1)) +
                                   fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)));
          }
          out.data()[((n * C + c) * Ho + i) * Wo + j] = v;
        }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// affine_grid: a batched 2x3 matrix applied to the fixed base grid of pixel-centre coordinates.
// ---------------------------------------------------------------------------------------------------------------

namespace {

// Normalised coordinate of pixel j's centre on an axis of `size` pixels (see the header).
std::vector<float> base_coords(int64_t size, bool align_corners) {
  std::vector<float> v(static_cast<size_t>(size));
  for (int64_t j = 0; j < size; ++j) {
    if (size == 1) v[j] = 0;
    else if (align_corners) v[j] = -1.0f + 2.0f * static_cast<float>(j) / static_cast<float>(size - 1);
    else v[j] = (2.0f * static_cast<float>(j) + 1.0f) / static_cast<float>(size) - 1.0f;
  }
  return v;
}

}  // namespace

Tensor affine_grid(const Tensor& theta, int64_t N, int64_t H, int64_t W, bool align_corners) {
  check(theta.dim() == 3 && theta.size(1) == 2 && theta.size(2) == 3, "affine_grid: theta must be [N, 2, 3], got ",
        theta.shape());
  check(theta.size(0) == N, "affine_grid: theta ", theta.shape(), " holds ", theta.size(0), " matrices but N = ", N);
  check(H > 0 && W > 0, "affine_grid: output size must be positive, got H = ", H, ", W = ", W, " (theta ",
        theta.shape(), ")");
  const std::vector<float> xs = base_coords(W, align_corners), ys = base_coords(H, align_corners);
  Tensor grid({N, H, W, 2});
  const float* pt = theta.data();
  float* pg = grid.data();
#pragma omp parallel for if (N * H * W > kParallelGrain)
  for (int64_t row = 0; row < N * H; ++row) {
    const float* t = pt + (row / H) * 6;
    const float y = ys[row % H];
    for (int64_t j = 0; j < W; ++j) {
      float* cell = pg + 2 * (row * W + j);
      cell[0] = t[0] * xs[j] + t[1] * y + t[2];
      cell[1] = t[3] * xs[j] + t[4] * y + t[5];
    }
  }
  record(grid, "affine_grid", {theta}, [xs, ys, N, H, W](const float* g, const std::vector<float*>& gin) {
    float* gt = gin[0];
#pragma omp parallel for if (N * H * W > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
      double acc[6] = {0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          const float* gc = g + 2 * ((n * H + i) * W + j);
          for (int r = 0; r < 2; ++r) {
            acc[3 * r] += gc[r] * xs[j];
            acc[3 * r + 1] += gc[r] * ys[i];
            acc[3 * r + 2] += gc[r];
          }
        }
      for (int k = 0; k < 6; ++k) gt[n * 6 + k] += static_cast<float>(acc[k]);
    }
  });
  return grid;
}

// ---------------------------------------------------------------------------------------------------------------
// Lattice moves: roll, rot90, flips. Each is a bijection within every [H, W] plane, so the backward is the same
// map read the other way: grad_in[source(o)] += grad_out[o], each input cell written exactly once per plane.
// ---------------------------------------------------------------------------------------------------------------

namespace {

// out[p, i, j] (planes of Ho x Wo) = x[p, source(p, i, j)], source an offset inside x's [H, W] plane.
template <class Source>
Tensor remap_planes(const Tensor& x, int64_t Ho, int64_t Wo, const char* op, Source source) {
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t planes = H * W == 0 ? 0 : x.numel() / (H * W);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = Ho;
  out_shape[out_shape.size() - 1] = Wo;
  Tensor out(out_shape);
  const float* px = x.data();
  float* po = out.data();
#pragma omp parallel for if (x.numel() > kParallelGrain)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < Ho; ++i)
      for (int64_t j = 0; j < Wo; ++j) po[(p * Ho + i) * Wo + j] = px[p * H * W + source(p, i, j)];
  record(out, op, {x}, [source, planes, H, W, Ho, Wo](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (planes * H * W > kParallelGrain)
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) gx[p * H * W + source(p, i, j)] += g[(p * Ho + i) * Wo + j];
  });
  return out;
}

inline int64_t wrap(int64_t i, int64_t n) { return ((i % n) + n) % n; }

void check_rank2(const Tensor& x, const char* op) {
  check(x.dim() >= 2, op, ": input must have at least 2 axes [..., H, W], got ", x.shape());
}

}  // namespace

Tensor roll(const Tensor& x, int dy, int dx) {
  check_rank2(x, "roll");
  const int64_t H = x.size(-2), W = x.size(-1);
  if (H * W == 0) return remap_planes(x, H, W, "roll", [](int64_t, int64_t, int64_t) { return int64_t{0}; });
  const int64_t sy = wrap(dy, H), sx = wrap(dx, W);
  return remap_planes(x, H, W, "roll",
                      [=](int64_t, int64_t i, int64_t j) { return wrap(i - sy, H) * W + wrap(j - sx, W); });
}

Tensor roll(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx) {
  check(x.dim() >= 3, "roll: per-sample shifts need x [N, ..., H, W] (rank >= 3), got ", x.shape());
  const int64_t N = x.size(0), H = x.size(-2), W = x.size(-1);
  check(static_cast<int64_t>(dy.size()) == N && static_cast<int64_t>(dx.size()) == N, "roll: got ", dy.size(),
        " row shifts and ", dx.size(), " column shifts for a batch of ", N, " (x ", x.shape(), ")");
  if (H * W == 0) return remap_planes(x, H, W, "roll", [](int64_t, int64_t, int64_t) { return int64_t{0}; });
  const int64_t planes_per_sample = N == 0 ? 1 : x.numel() / (N * H * W);
  std::vector<int64_t> sy(static_cast<size_t>(N)), sx(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) sy[n] = wrap(dy[n], H), sx[n] = wrap(dx[n], W);
  return remap_planes(x, H, W, "roll", [=](int64_t p, int64_t i, int64_t j) {
    const int64_t n = p / planes_per_sample;
    return wrap(i - sy[n], H) * W + wrap(j - sx[n], W);
  });
}

Tensor rot90(const Tensor& x, int k) {
  check_rank2(x, "rot90");
  const int64_t H = x.size(-2), W = x.size(-1);
  switch (wrap(k, 4)) {
    case 0: return remap_planes(x, H, W, "rot90", [=](int64_t, int64_t i, int64_t j) { return i * W + j; });
    case 1: return remap_planes(x, W, H, "rot90", [=](int64_t, int64_t i, int64_t j) { return j * W + (W - 1 - i); });
    case 2:
      return remap_planes(x, H, W, "rot90",
                          [=](int64_t, int64_t i, int64_t j) { return (H - 1 - i) * W + (W - 1 - j); });
    default: return remap_planes(x, W, H, "rot90", [=](int64_t, int64_t i, int64_t j) { return (H - 1 - j) * W + i; });
  }
}

Tensor flip_h(const Tensor& x) {
  check_rank2(x, "flip_h");
  const int64_t H = x.size(-2), W = x.size(-1);
  return remap_planes(x, H, W, "flip_h", [=](int64_t, int64_t i, int64_t j) { return i * W + (W - 1 - j); });
}

Tensor flip_v(const Tensor& x) {
  check_rank2(x, "flip_v");
  const int64_t H = x.size(-2), W = x.size(-1);
  return remap_planes(x, H, W, "flip_v", [=](int64_t, int64_t i, int64_t j) { return (H - 1 - i) * W + j; });
}

}  // namespace eq
