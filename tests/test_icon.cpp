// FMICON loss: hand-computed value, the same loss composed from engine ops, blocked == dense (value and all four
// gradients) on odd sizes and tilings, bitwise the same every run with 1-3 threads, gradient checks, large feature
// norms, the write-up's "attempt 0" limit, invariance to a common permutation of B's pixels, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/matmul.h"
#include "engine/parallel.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "engine/softmax.h"
#include "losses/icon.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

// Four independent [n, p, d] maps (A: pa pixels, B: pb pixels), each pixel's feature of norm `radius` when
// radius > 0 (the FeatureBallNorm setting), plain N(0, 1) otherwise.
std::vector<Tensor> random_maps(Rng& rng, int64_t n, int64_t pa, int64_t pb, int64_t d, float radius = 0) {
  std::vector<Tensor> maps;
  for (int64_t p : {pa, pb, pa, pb}) {
    Tensor t = Tensor::randn({n, p, d}, rng);
    if (radius > 0)
      for (int64_t row = 0; row < n * p; ++row) {
        float* v = t.data() + row * d;
        float norm = 0;
        for (int64_t k = 0; k < d; ++k) norm += v[k] * v[k];
        for (int64_t k = 0; k < d; ++k) v[k] *= radius / std::sqrt(norm);
      }
    maps.push_back(t.set_requires_grad());
  }
  return maps;
}

// Gradients of the four maps after backward() of `loss_fn(maps)`, as fresh tensors (the maps' grads are cleared).
template <class LossFn>
std::vector<Tensor> grads_of(std::vector<Tensor>& maps, LossFn loss_fn, float* value = nullptr) {
  for (Tensor& m : maps) m.zero_grad();
  Tensor loss = loss_fn(maps);
  if (value) *value = loss.item();
  loss.backward();
  std::vector<Tensor> g;
  for (Tensor& m : maps) g.push_back(m.grad().clone());
  return g;
}

// max |a - b| relative to max |b|: the gradient agreement measure.
float relative_diff(const Tensor& a, const Tensor& b) {
  float scale = 0;
  for (float v : b.to_vector()) scale = std::max(scale, std::fabs(v));
  return max_abs_diff(a, b) / std::max(scale, 1e-30f);
}

// The loss composed from engine ops exactly as torch_reference.py writes it (softmaxes materialised).
Tensor icon_composed(const std::vector<Tensor>& m) {
  Tensor p_ab = softmax(matmul(m[0], transpose(m[1], 1, 2)), 2);  // row softmax over B's pixels
  Tensor p_ba = softmax(matmul(m[2], transpose(m[3], 1, 2)), 1);  // column softmax over A's pixels
  return -mean(log(sum(p_ab * p_ba, {2})));
}

}  // namespace

TEST_CASE("icon: hand-computed value, 2 x 2 pixels, D = 1") {
  // S1_ij = a1_i b1_j, S2_ij = a2_i b2_j written out from the definition.
  const float a1[2] = {0.5f, -1.0f}, b1[2] = {1.0f, 2.0f}, a2[2] = {0.3f, 0.7f}, b2[2] = {-0.4f, 1.1f};
  double L = 0, L_eps = 0;
  for (int i = 0; i < 2; ++i) {
    double s = 0;
    for (int j = 0; j < 2; ++j) {
      const double p = std::exp(a1[i] * b1[j]) / (std::exp(a1[i] * b1[0]) + std::exp(a1[i] * b1[1]));
      const double q = std::exp(a2[i] * b2[j]) / (std::exp(a2[0] * b2[j]) + std::exp(a2[1] * b2[j]));
      s += p * q;
    }
    L += std::log(s);
    L_eps += std::log(s + 0.25);
  }
  Tensor ta1 = Tensor::from({1, 2, 1}, {a1[0], a1[1]}), tb1 = Tensor::from({1, 2, 1}, {b1[0], b1[1]});
  Tensor ta2 = Tensor::from({1, 2, 1}, {a2[0], a2[1]}), tb2 = Tensor::from({1, 2, 1}, {b2[0], b2[1]});
  IconOptions tiny_tiles;
  tiny_tiles.panel_cols = 1;
  CHECK(icon_loss(ta1, tb1, ta2, tb2).item() == doctest::Approx(-L / 2).epsilon(1e-6));
  CHECK(icon_loss(ta1, tb1, ta2, tb2, tiny_tiles).item() == doctest::Approx(-L / 2).epsilon(1e-6));
  CHECK(icon_loss_dense(ta1, tb1, ta2, tb2).item() == doctest::Approx(-L / 2).epsilon(1e-6));
  IconOptions sum_eps;
  sum_eps.reduction = IconReduction::Sum;
  sum_eps.epsilon = 0.25f;
  CHECK(icon_loss(ta1, tb1, ta2, tb2, sum_eps).item() == doctest::Approx(-L_eps).epsilon(1e-6));
  CHECK(icon_loss_dense(ta1, tb1, ta2, tb2, sum_eps).item() == doctest::Approx(-L_eps).epsilon(1e-6));
}

TEST_CASE("icon: equals the loss composed from matmul, softmax, log and mean (value and gradients)") {
  Rng rng(11);
  auto maps = random_maps(rng, 2, 13, 9, 5);
  IconOptions opt;
  opt.panel_cols = 3;
  float ours = 0, composed = 0;
  auto g_ours = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &ours);
  auto g_composed = grads_of(maps, [](auto& m) { return icon_composed(m); }, &composed);
  CHECK(ours == doctest::Approx(composed).epsilon(1e-5));
  for (int k = 0; k < 4; ++k) {
    INFO("input " << k);
    CHECK(relative_diff(g_ours[k], g_composed[k]) < 1e-4f);
  }
}

TEST_CASE("icon: blocked equals the dense reference on odd sizes and tilings (value and all four gradients)") {
  struct Case {
    int64_t n, pa, pb, d, panel_cols;
  };
  // Panels narrower than P and not dividing it (also not a multiple of the kernel's 16 columns), wider than P,
  // and PA != PB (row counts not multiples of the kernel's 12 rows or of the 16-row groups of the row statistics).
  // Panels of 37-64 columns go through the 64-column tiles, of 80 through one 64-column and one 32-column tile.
  const Case cases[] = {{2, 37, 37, 3, 5},  {1, 50, 50, 8, 16}, {2, 37, 50, 8, 7}, {1, 50, 37, 3, 32},
                        {3, 37, 37, 8, 50}, {1, 50, 50, 8, 1},  {1, 50, 90, 8, 80}};
  Rng rng(5);
  for (const Case& c : cases)
    for (IconReduction reduction : {IconReduction::Mean, IconReduction::Sum})
      for (float eps : {0.0f, 1e-4f}) {
        INFO("N " << c.n << " PA " << c.pa << " PB " << c.pb << " D " << c.d << " panel " << c.panel_cols
                  << " sum " << (reduction == IconReduction::Sum) << " eps " << eps);
        auto maps = random_maps(rng, c.n, c.pa, c.pb, c.d);
        IconOptions opt;
        opt.reduction = reduction;
        opt.epsilon = eps;
        opt.panel_cols = c.panel_cols;
        float blocked = 0, dense = 0;
        auto gb = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &blocked);
        auto gd = grads_of(maps, [&](auto& m) { return icon_loss_dense(m[0], m[1], m[2], m[3], opt); }, &dense);
        CHECK(blocked == doctest::Approx(dense).epsilon(1e-5));
        for (int k = 0; k < 4; ++k) {
          INFO("input " << k);
          CHECK(relative_diff(gb[k], gd[k]) < 1e-4f);
        }
      }
}

TEST_CASE("icon: every run gives bitwise the same value and gradients, with 1, 2 or 3 threads") {
  // Each thread takes a fixed share of the (batch element, panel) tasks and keeps its own partial sums, merged in
  // thread order, so repeated runs agree to the bit; a schedule that hands tasks to whichever thread is free would
  // need partials per task group instead (with 3 threads on a 2-core machine the hand-out varies from run to run,
  // and per-thread partials would then differ in the last bits). Each thread count also matches the dense reference.
  Rng rng(8);
  auto maps = random_maps(rng, 2, 60, 300, 8);
  IconOptions opt;
  opt.panel_cols = 10;  // 30 panels per batch element
  float dense = 0;
  auto gd = grads_of(maps, [&](auto& m) { return icon_loss_dense(m[0], m[1], m[2], m[3], opt); }, &dense);
  const int before = num_threads();
  for (int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    set_num_threads(threads);
    float first = 0;
    auto g0 = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &first);
    CHECK(first == doctest::Approx(dense).epsilon(1e-5));
    for (int k = 0; k < 4; ++k) CHECK(relative_diff(g0[k], gd[k]) < 1e-4f);
    for (int run = 0; run < 6; ++run) {
      float again = 0;
      auto g = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &again);
      CHECK(again == first);
      for (int k = 0; k < 4; ++k) CHECK(max_abs_diff(g[k], g0[k]) == 0.0f);
    }
  }
  set_num_threads(before);
}

TEST_CASE("icon: gradient checks of the blocked op") {
  Rng rng(3);
  auto maps = random_maps(rng, 2, 5, 4, 3);
  IconOptions opt;
  opt.panel_cols = 3;
  CHECK_GRADIENTS([&](const std::vector<Tensor>& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, maps);
  opt.epsilon = 0.05f;  // large enough to matter (s_i is around 1/P)
  opt.reduction = IconReduction::Sum;
  CHECK_GRADIENTS([&](const std::vector<Tensor>& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, maps);
  // Through icon_pixels: [N, D, H, W] feature maps, H x W = 2 x 3 pixels.
  std::vector<Tensor> fmaps;
  for (int k = 0; k < 4; ++k) fmaps.push_back(Tensor::randn({1, 3, 2, 3}, rng).set_requires_grad());
  CHECK_GRADIENTS(
      [](const std::vector<Tensor>& m) {
        return icon_loss(icon_pixels(m[0]), icon_pixels(m[1]), icon_pixels(m[2]), icon_pixels(m[3]));
      },
      fmaps);
}

TEST_CASE("icon: stable with large feature norms (radius 30, logits up to 900)") {
  Rng rng(17);
  auto maps = random_maps(rng, 2, 37, 50, 8, 30.0f);
  IconOptions opt;
  opt.panel_cols = 7;
  float blocked = 0, dense = 0;
  auto gb = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &blocked);
  auto gd = grads_of(maps, [&](auto& m) { return icon_loss_dense(m[0], m[1], m[2], m[3], opt); }, &dense);
  REQUIRE(std::isfinite(blocked));
  CHECK(blocked > 10.0f);  // independent maps at this radius match very badly
  CHECK(blocked == doctest::Approx(dense).epsilon(1e-4));
  for (int k = 0; k < 4; ++k) {
    INFO("input " << k);
    for (float v : gb[k].to_vector()) REQUIRE(std::isfinite(v));
    CHECK(relative_diff(gb[k], gd[k]) < 1e-3f);
  }
  // The naive composition (softmaxes in float, then their product) underflows to log(0) here: the case matters.
  NoGrad no_grad;
  CHECK_FALSE(std::isfinite(icon_composed(maps).item()));
}

TEST_CASE("icon: well and badly matched rows of one batch element (product sums and log-domain rows together)") {
  // Radius 30: A pixels 0 .. 19 copy B pixels 0 .. 19 in both pairs (s_i near 1: the forward's product sum), the
  // others are independent (s_i far below e^-57: they are summed again in the log domain, and the backward takes
  // its log-domain branch for them). Both kinds share batch elements, panels and 16-row groups.
  Rng rng(23);
  auto maps = random_maps(rng, 2, 53, 41, 8, 30.0f);
  for (int pair = 0; pair < 2; ++pair) {
    float* a = maps[2 * pair].data();
    const float* b = maps[2 * pair + 1].data();
    for (int64_t n = 0; n < 2; ++n) std::copy_n(b + n * 41 * 8, 20 * 8, a + n * 53 * 8);
  }
  IconOptions opt;
  opt.panel_cols = 16;
  float blocked = 0, dense = 0;
  auto gb = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &blocked);
  auto gd = grads_of(maps, [&](auto& m) { return icon_loss_dense(m[0], m[1], m[2], m[3], opt); }, &dense);
  CHECK(blocked > 10.0f);  // the 33 unmatched rows of each element dominate the mean
  CHECK(blocked == doctest::Approx(dense).epsilon(1e-4));
  for (int k = 0; k < 4; ++k) {
    INFO("input " << k);
    CHECK(relative_diff(gb[k], gd[k]) < 1e-3f);
  }
  // A NaN feature is not hidden by either path: it reaches the loss.
  NoGrad no_grad;
  for (int k = 0; k < 4; ++k) {
    INFO("NaN in input " << k);
    std::vector<Tensor> copies;
    for (const Tensor& m : maps) copies.push_back(m.clone());
    copies[k].data()[5] = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(icon_loss(copies[0], copies[1], copies[2], copies[3]).item()));
  }
}

TEST_CASE("icon: 'attempt 0' — one fixed vector per position in all four maps drives the loss to 0") {
  const int64_t p = 37, d = 16;
  Rng rng(23);
  auto directions = random_maps(rng, 1, p, p, d, 1.0f)[0];  // unit vectors, one per pixel position
  std::vector<float> losses;
  for (float radius : {1.0f, 2.0f, 4.0f, 8.0f, 16.0f, 32.0f}) {
    Tensor f = directions * radius;
    losses.push_back(icon_loss(f, f, f, f).item());
  }
  INFO("losses by radius 1, 2, 4, ..., 32: " << losses[0] << " " << losses[1] << " " << losses[2] << " "
                                             << losses[3] << " " << losses[4] << " " << losses[5]);
  CHECK(losses[0] > 1.0f);  // at radius 1 the map is far from the identity
  for (size_t k = 0; k + 1 < losses.size(); ++k) {
    CHECK(losses[k + 1] <= losses[k]);
    CHECK(losses[k] >= 0.0f);  // L <= 0 always: s_i <= sum_j p_ij = 1
  }
  CHECK(losses.back() < 1e-3f);
  // Independent random features at the same radius: a large loss, so the check above could fail.
  auto random = random_maps(rng, 1, p, p, d, 32.0f);
  CHECK(icon_loss(random[0], random[1], random[2], random[3]).item() > 10.0f);
  // With an epsilon the limit moves to -log(1 + epsilon).
  IconOptions opt;
  opt.epsilon = 1e-4f;
  Tensor f = directions * 32.0f;
  CHECK(icon_loss(f, f, f, f, opt).item() == doctest::Approx(-std::log1p(1e-4)).epsilon(1e-3));
}

TEST_CASE("icon: invariant to a common permutation of B's pixels") {
  const int64_t n = 2, pa = 23, pb = 29, d = 6;
  Rng rng(31);
  auto maps = random_maps(rng, n, pa, pb, d, 3.0f);
  std::vector<int64_t> perm(pb);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t k = pb - 1; k > 0; --k) std::swap(perm[k], perm[rng.randint(k + 1)]);
  const auto permuted = [&](const Tensor& b) {  // row j of the result is row perm[j] of b, per batch element
    Tensor out({n, pb, d});
    for (int64_t s = 0; s < n; ++s)
      for (int64_t j = 0; j < pb; ++j)
        std::copy_n(b.data() + (s * pb + perm[j]) * d, d, out.data() + (s * pb + j) * d);
    return out.set_requires_grad();
  };
  std::vector<Tensor> moved = {maps[0], permuted(maps[1]), maps[2], permuted(maps[3])};
  IconOptions opt;
  opt.panel_cols = 6;
  float before = 0, after = 0;
  auto g_before = grads_of(maps, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &before);
  auto g_after = grads_of(moved, [&](auto& m) { return icon_loss(m[0], m[1], m[2], m[3], opt); }, &after);
  CHECK(after == doctest::Approx(before).epsilon(1e-5));
  CHECK(relative_diff(g_after[0], g_before[0]) < 1e-4f);
  CHECK(relative_diff(g_after[2], g_before[2]) < 1e-4f);
  for (int k : {1, 3}) {
    INFO("input " << k);
    // The gradient of a permuted map is the permuted gradient.
    Tensor expected = permuted(g_before[k]);
    CHECK(relative_diff(g_after[k], expected) < 1e-4f);
  }
  // Permuting only one of the two B maps breaks the correspondence: the loss changes.
  const float one_moved = icon_loss(maps[0], moved[1], maps[2], maps[3], opt).item();
  CHECK(std::fabs(one_moved - before) > 1e-2f);
}

TEST_CASE("icon: icon_pixels flattens [N, D, H, W] into [N, H * W, D]") {
  Rng rng(2);
  Tensor fmap = Tensor::randn({2, 3, 4, 5}, rng);
  Tensor pixels = icon_pixels(fmap);
  REQUIRE(pixels.shape() == Shape{2, 20, 3});
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t d = 0; d < 3; ++d)
      for (int64_t y = 0; y < 4; ++y)
        for (int64_t x = 0; x < 5; ++x) CHECK(pixels.at({s, y * 5 + x, d}) == fmap.at({s, d, y, x}));
}

TEST_CASE("icon: bad input names the op and the shapes") {
  Tensor a({1, 5, 3}), b({1, 4, 3});
  CHECK_THROWS_NAMING(icon_loss(a, b, Tensor({1, 6, 3}), b), "icon_loss", "a1 [1, 5, 3]", "a2 [1, 6, 3]");
  CHECK_THROWS_NAMING(icon_loss(a, b, a, Tensor({1, 4, 2})), "icon_loss", "b1 [1, 4, 3]", "b2 [1, 4, 2]");
  CHECK_THROWS_NAMING(icon_loss(a, Tensor({1, 4, 2}), a, Tensor({1, 4, 2})), "icon_loss", "feature sizes");
  CHECK_THROWS_NAMING(icon_loss(a, Tensor({2, 4, 3}), a, Tensor({2, 4, 3})), "icon_loss", "batch sizes");
  CHECK_THROWS_NAMING(icon_loss(Tensor({5, 3}), b, Tensor({5, 3}), b), "icon_loss", "[5, 3]", "icon_pixels");
  CHECK_THROWS_NAMING(icon_loss(Tensor({1, 0, 3}), b, Tensor({1, 0, 3}), b), "icon_loss", "empty", "[1, 0, 3]");
  CHECK_THROWS_NAMING(icon_loss_dense(a, b, Tensor({1, 6, 3}), b), "icon_loss_dense", "[1, 6, 3]");
  IconOptions bad_eps;
  bad_eps.epsilon = -1e-4f;
  CHECK_THROWS_NAMING(icon_loss(a, b, a, b, bad_eps), "icon_loss", "epsilon");
  IconOptions bad_tile;
  bad_tile.panel_cols = 0;
  CHECK_THROWS_NAMING(icon_loss(a, b, a, b, bad_tile), "icon_loss", "panel_cols");
  CHECK_THROWS_NAMING(icon_pixels(Tensor({2, 3, 4})), "icon_pixels", "[2, 3, 4]");
}
