// The direct convolution micro-kernels (engine/direct_conv.h) against naive loops over unpadded planes: the
// forward-type kernel (overwrite with bias, accumulate, a band of rows) and the weight-type kernel, for planes whose
// pixel count fills whole vector chunks and that leave partial ones, every register block of output rows, kernels
// 1x1 to 9x9 (7 and 9 wide take the run-time-width forward path, 9 wide the tap-per-row weight path), dilations that
// push taps off the plane, planes padded for a larger dilation read through direct_conv_flat_view; and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/direct_conv.h"
#include "engine/error.h"
#include "engine/rng.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

struct Case {
  int64_t H, W, kh, kw, d, I, R;
};

const Case kCases[] = {{5, 7, 3, 3, 1, 2, 3},   {28, 28, 3, 3, 2, 5, 16}, {6, 33, 3, 3, 4, 3, 21},
                       {9, 16, 1, 1, 1, 30, 9},  {4, 17, 5, 5, 1, 2, 8},   {3, 40, 7, 7, 2, 1, 5},
                       {7, 9, 9, 9, 1, 2, 4},    {5, 6, 3, 5, 3, 3, 2},    {1, 1, 3, 3, 1, 4, 1},
                       {9, 9, 3, 3, 27, 2, 17}};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << c.H << "x" << c.W << ", kernel " << c.kh << "x" << c.kw << ", d " << c.d << ", I " << c.I << ", R " << c.R;
  return os.str();
}

std::vector<float> random_values(int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.normal();
  return v;
}

// in_i(y + (ki - kh/2) d, x + (kj - kw/2) d), zero outside the plane.
float tap(const Case& c, const std::vector<float>& planes, int64_t i, int64_t y, int64_t x, int64_t ki, int64_t kj) {
  const int64_t iy = y + (ki - c.kh / 2) * c.d, ix = x + (kj - c.kw / 2) * c.d;
  if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) return 0.0f;
  return planes[(i * c.H + iy) * c.W + ix];
}

// max(a, b), with NaN counting as infinitely bad (std::max would skip it).
float worse(float a, float b) { return std::isnan(b) ? INFINITY : std::max(a, b); }

// The padded copies of I planes [H, W], one after another, in the flat or the framed layout. The buffer starts
// full of NaN: a pad that skipped an element, or a kernel that read one it should not, would show.
std::vector<float> padded(const DirectConvShape& g, const std::vector<float>& planes, int64_t I, bool framed) {
  const int64_t plane = framed ? g.framed_plane() : g.flat_plane();
  std::vector<float> out(static_cast<size_t>(I * plane), std::numeric_limits<float>::quiet_NaN());
  for (int64_t i = 0; i < I; ++i) {
    if (framed) direct_conv_pad_framed(g, planes.data() + i * g.H * g.W, out.data() + i * plane);
    else direct_conv_pad_flat(g, planes.data() + i * g.H * g.W, out.data() + i * plane);
  }
  return out;
}

}  // namespace

TEST_CASE("direct conv: the forward-type kernel equals the naive loop (overwrite + bias, accumulate, row bands)") {
  Rng rng(3);
  for (const Case& c : kCases) {
    INFO(describe(c));
    const DirectConvShape g{c.H, c.W, c.kh, c.kw, c.d};
    const int64_t kk = c.kh * c.kw, hw = c.H * c.W;
    const std::vector<float> in = random_values(c.I * hw, rng), w = random_values(c.R * c.I * kk, rng);
    const std::vector<float> bias = random_values(c.R, rng), start = random_values(c.R * hw, rng);
    std::vector<float> expected(static_cast<size_t>(c.R * hw));
    for (int64_t r = 0; r < c.R; ++r)
      for (int64_t y = 0; y < c.H; ++y)
        for (int64_t x = 0; x < c.W; ++x) {
          double sum = 0;
          for (int64_t i = 0; i < c.I; ++i)
            for (int64_t ki = 0; ki < c.kh; ++ki)
              for (int64_t kj = 0; kj < c.kw; ++kj)
                sum += double(w[((r * c.I + i) * c.kh + ki) * c.kw + kj]) * tap(c, in, i, y, x, ki, kj);
          expected[(r * c.H + y) * c.W + x] = static_cast<float>(sum);
        }
    std::vector<float> packed(w.size());
    direct_conv_pack_weight(g, c.R, c.I, w.data(), packed.data());
    // The input planes as padded for g, and as padded for a larger dilation and viewed as g's layout.
    const DirectConvShape wider{c.H, c.W, c.kh, c.kw, 2 * c.d + 1};
    const std::vector<float> in_padded = padded(g, in, c.I, false), in_wider = padded(wider, in, c.I, false);
    std::vector<const float*> own, views;
    for (int64_t i = 0; i < c.I; ++i) {
      own.push_back(in_padded.data() + i * g.flat_plane());
      views.push_back(direct_conv_flat_view(wider, in_wider.data() + i * wider.flat_plane(), g));
    }
    // 0: out = bias + conv; 1: out += conv; 2: as 0, in two bands of rows; 3: as 0, reading the views
    for (int mode = 0; mode < 4; ++mode) {
      INFO("mode " << mode);
      std::vector<float> out = mode == 1 ? start : std::vector<float>(start.size(), 123.0f);
      std::vector<float*> planes;
      for (int64_t r = 0; r < c.R; ++r) planes.push_back(out.data() + r * hw);
      const float* const* from = mode == 3 ? views.data() : own.data();
      if (mode == 2) {
        const int64_t mid = c.H / 2;
        direct_conv_forward(g, from, c.I, packed.data(), c.R, bias.data(), planes.data(), false, mid, c.H);
        direct_conv_forward(g, from, c.I, packed.data(), c.R, bias.data(), planes.data(), false, 0, mid);
      } else {
        direct_conv_forward(g, from, c.I, packed.data(), c.R, mode == 1 ? nullptr : bias.data(), planes.data(),
                            mode == 1, 0, c.H);
      }
      float worst = 0;
      for (int64_t k = 0; k < c.R * hw; ++k) {
        const float want = expected[k] + (mode == 1 ? start[k] : bias[k / hw]);
        worst = worse(worst, std::abs(out[k] - want));
      }
      CHECK(worst < 1e-4f * (1 + c.I * kk / 8.0f));
    }
  }
}

TEST_CASE("direct conv: the weight-type kernel equals the naive loop and accumulates across calls") {
  Rng rng(4);
  for (const Case& c : kCases) {
    INFO(describe(c));
    const DirectConvShape g{c.H, c.W, c.kh, c.kw, c.d};
    const int64_t kk = c.kh * c.kw, hw = c.H * c.W;
    const std::vector<float> in = random_values(c.I * hw, rng), grad = random_values(c.R * hw, rng);
    const std::vector<float> dw0 = random_values(c.R * c.I * kk, rng);
    std::vector<float> expected = dw0;
    for (int64_t r = 0; r < c.R; ++r)
      for (int64_t i = 0; i < c.I; ++i)
        for (int64_t ki = 0; ki < c.kh; ++ki)
          for (int64_t kj = 0; kj < c.kw; ++kj) {
            double sum = 0;
            for (int64_t y = 0; y < c.H; ++y)
              for (int64_t x = 0; x < c.W; ++x) sum += double(grad[(r * c.H + y) * c.W + x]) * tap(c, in, i, y, x, ki, kj);
            expected[((r * c.I + i) * c.kh + ki) * c.kw + kj] += 2 * static_cast<float>(sum);  // two calls below
          }
    std::vector<const float*> planes;
    for (int64_t r = 0; r < c.R; ++r) planes.push_back(grad.data() + r * hw);
    const int64_t rows = direct_conv_padded_rows(c.R);
    CHECK(rows >= c.R);
    std::vector<float> gt(static_cast<size_t>(hw * rows), -5.0f), acc(static_cast<size_t>(c.I * kk * rows), 0.0f);
    direct_conv_transpose_grad(g, planes.data(), c.R, gt.data());
    const std::vector<float> in_padded = padded(g, in, c.I, true);
    direct_conv_weight_grad(g, in_padded.data(), c.I, gt.data(), c.R, acc.data());
    direct_conv_weight_grad(g, in_padded.data(), c.I, gt.data(), c.R, acc.data());
    std::vector<float> dw = dw0;
    direct_conv_gather_weight_grad(g, acc.data(), c.R, c.I, dw.data());
    float worst = 0;
    for (size_t k = 0; k < dw.size(); ++k) worst = worse(worst, std::abs(dw[k] - expected[k]));
    CHECK(worst < 1e-4f * (1 + hw / 16.0f));
  }
}

TEST_CASE("direct conv: bad sizes are refused with the kernel's name") {
  const std::vector<float> buffer(4096, 0.0f);
  std::vector<float> out(4096);
  float* plane = out.data();
  const float* in = buffer.data();
  CHECK_THROWS_NAMING(direct_conv_pad_flat({4, 4, 2, 3, 1}, buffer.data(), out.data()), "direct_conv_pad_flat",
                      "2x3", "odd");
  CHECK_THROWS_NAMING(direct_conv_pad_framed({4, 0, 3, 3, 1}, buffer.data(), out.data()), "direct_conv_pad_framed",
                      "4x0");
  CHECK_THROWS_NAMING(direct_conv_forward({4, 40, 3, 33, 1}, &in, 1, buffer.data(), 1, nullptr, &plane,
                                          false, 0, 4),
                      "direct_conv_forward", "kernel width 33");
  CHECK_THROWS_NAMING(direct_conv_forward({4, 4, 3, 3, 0}, &in, 1, buffer.data(), 1, nullptr, &plane,
                                          false, 0, 4),
                      "direct_conv_forward", "dilation 0");
  CHECK_THROWS_NAMING(direct_conv_forward({4, 4, 3, 3, 1}, &in, 1, buffer.data(), 1, nullptr, &plane,
                                          false, 2, 5),
                      "direct_conv_forward", "rows [2, 5) of 4");
  CHECK_THROWS_NAMING(direct_conv_weight_grad({4, 4, 3, 3, 1}, buffer.data(), 0, buffer.data(), 1, out.data()),
                      "direct_conv_weight_grad", "0 input planes");
  CHECK_THROWS_NAMING(direct_conv_flat_view({4, 4, 3, 3, 1}, in, {4, 4, 3, 3, 2}), "direct_conv_flat_view",
                      "dilation 1 cannot be read as", "dilation 2");
  CHECK_THROWS_NAMING(direct_conv_flat_view({4, 4, 3, 3, 2}, in, {4, 5, 3, 3, 1}), "direct_conv_flat_view", "4x4",
                      "4x5");
}
