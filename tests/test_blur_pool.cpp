// BlurPool / MaxBlurPool: taps, hand-computed outputs, the pad split, fast vs reference kernels, gradients, errors,
// and the anti-aliasing claim itself (a shift changes a blur-pooled net less than a max-pooled one).
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/blur.h"
#include "engine/blur_pool.h"
#include "engine/conv.h"
#include "engine/elementwise.h"
#include "engine/pool.h"
#include "engine/reduce.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/blur_pool.h"
#include "layers/pooling.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

TEST_CASE("blur_pool: binomial taps are Pascal's rows, normalised") {
  CHECK(binomial_taps(1) == std::vector<float>{1.0f});
  CHECK(binomial_taps(2) == std::vector<float>{0.5f, 0.5f});
  CHECK(binomial_taps(3) == std::vector<float>{0.25f, 0.5f, 0.25f});
  CHECK(binomial_taps(4) == std::vector<float>{0.125f, 0.375f, 0.375f, 0.125f});
  const std::vector<float> t7 = binomial_taps(7);  // [1, 6, 15, 20, 15, 6, 1] / 64
  CHECK(t7[3] == doctest::Approx(20.0 / 64));
  CHECK(t7[1] == doctest::Approx(6.0 / 64));
  CHECK_THROWS_NAMING(binomial_taps(0), "binomial_taps", "1..7");
  CHECK_THROWS_NAMING(binomial_taps(8), "binomial_taps", "8");
  CHECK(blur_pad_before(4) == 1);
  CHECK(blur_pad_after(4) == 2);
  CHECK(blur_pad_before(3) == 1);
  CHECK(blur_pad_after(3) == 1);
}

TEST_CASE("blur_pool: hand-computed filter 3 ([1,2,1]/4) outputs on 4x4 maps") {
  // A delta of 16 at (1, 1). Outputs sit at input rows/cols 0 and 2, each one step from the delta in both axes:
  // weight 1/4 * 1/4 -> 1. Reflect mirrors row/col -1 onto 1, so along an axis whose output sits at 0 the delta is
  // read twice (1/4 + 1/4): (0, 0) -> 1/2 * 1/2 * 16 = 4, (0, 1) and (1, 0) -> 1/2 * 1/4 * 16 = 2, (1, 1) -> 1.
  // Zeros padding reads it once everywhere.
  Tensor delta = Tensor::zeros({1, 1, 4, 4});
  delta.data()[1 * 4 + 1] = 16;
  CHECK(blur_pool2d(delta, 3, 2, PadMode::Reflect).to_vector() == std::vector<float>{4, 2, 2, 1});
  CHECK(blur_pool2d(delta, 3, 2, PadMode::Zeros).to_vector() == std::vector<float>{1, 1, 1, 1});
  // A ramp x[i, j] = 4i + j: a symmetric blur keeps a linear function where it needs no padding (output (1, 1) at
  // input (2, 2) -> 10); at row/col 0 reflect mirrors, e.g. columns (1, 0, 1) -> (1 + 0 + 0 + 1) / 4 = 0.5 instead
  // of 0. So (0,0) = 2.5, (0,1) = 4, (1,0) = 8.5, (1,1) = 10.
  Tensor ramp = reshape(Tensor::arange(16), {1, 1, 4, 4});
  const std::vector<float> y = blur_pool2d(ramp, 3, 2, PadMode::Reflect).to_vector();
  CHECK(y[0] == doctest::Approx(2.5f));
  CHECK(y[1] == doctest::Approx(4.0f));
  CHECK(y[2] == doctest::Approx(8.5f));
  CHECK(y[3] == doctest::Approx(10.0f));
}

TEST_CASE("blur_pool: filter 1 is plain subsampling x[::s, ::s]") {
  Rng rng(3);
  for (int stride : {1, 2, 3}) {
    Tensor x = Tensor::randn({2, 3, 7, 8}, rng);
    Tensor sub = slice(slice(x, 2, 0, 7, stride), 3, 0, 8, stride);
    CHECK(blur_pool2d(x, 1, stride, PadMode::Reflect).to_vector() == sub.to_vector());
    CHECK(blur_pool2d(x, 1, stride).shape() == sub.shape());
  }
}

TEST_CASE("blur_pool: even filters pad floor((k-1)/2) before and ceil((k-1)/2) after") {
  // Filter 2 at stride 2: pads (0, 1), so each output averages the 2x2 block starting at its own position — the
  // same as avg_pool2d(2, 2). A (1, 0) split would average blocks starting one pixel earlier.
  Rng rng(5);
  Tensor x = Tensor::randn({2, 3, 6, 8}, rng);
  Pool2dOptions avg;
  CHECK(max_abs_diff(blur_pool2d(x, 2, 2, PadMode::Zeros), avg_pool2d(x, avg)) < 1e-6f);
  // Filter 4 at stride 1 on a delta at (0, 0), zero padding (1 before, 2 after): output o reads o-1 .. o+2 with
  // taps [1, 3, 3, 1] / 8, so o = 0 meets the delta with tap 1 (3/8) and o = 1 with tap 0 (1/8):
  //   y[0,0] = 9/64, y[0,1] = y[1,0] = 3/64, y[1,1] = 1/64, zero elsewhere.
  // A (2, 1) split would give 9/64 at (0,0) but 9/64 at (1,1) too.
  Tensor delta = Tensor::zeros({1, 1, 6, 6});
  delta.data()[0] = 1;
  Tensor y = blur_pool2d(delta, 4, 1, PadMode::Zeros);
  CHECK(y.shape() == Shape{1, 1, 6, 6});
  CHECK(y.at({0, 0, 0, 0}) == doctest::Approx(9.0 / 64));
  CHECK(y.at({0, 0, 0, 1}) == doctest::Approx(3.0 / 64));
  CHECK(y.at({0, 0, 1, 0}) == doctest::Approx(3.0 / 64));
  CHECK(y.at({0, 0, 1, 1}) == doctest::Approx(1.0 / 64));
  CHECK(y.at({0, 0, 2, 2}) == 0.0f);
  // Output size is ceil(H / stride) for every filter.
  for (int k = 1; k <= 7; ++k) CHECK(blur_pool2d(Tensor::zeros({1, 1, 9, 10}), k, 2).shape() == Shape{1, 1, 5, 5});
}

TEST_CASE("blur_pool: separable fast kernel matches the direct 2-D reference") {
  Rng rng(11);
  const Shape shapes[] = {{2, 3, 9, 7}, {5, 8}, {2, 2, 3, 6, 5}, {1, 1, 13, 13}};
  for (const Shape& s : shapes)
    for (int k = 1; k <= 7; ++k)
      for (int stride : {1, 2, 3})
        for (PadMode pad : {PadMode::Reflect, PadMode::Replicate, PadMode::Zeros, PadMode::Circular}) {
          if (pad == PadMode::Reflect && blur_pad_after(k) >= std::min(s[s.size() - 2], s.back())) continue;
          Tensor x = Tensor::randn(s, rng);
          INFO("shape " << shape_str(s) << " filter " << k << " stride " << stride << " " << pad_mode_name(pad));
          CHECK(max_abs_diff(blur_pool2d(x, k, stride, pad), blur_pool2d_reference(x, k, stride, pad)) < 1e-5f);
        }
}

TEST_CASE("blur_pool: equals explicit pad2d + depthwise conv2d (the textbook composition)") {
  Rng rng(2);
  const int64_t C = 3;
  Tensor x = Tensor::randn({2, C, 11, 9}, rng);
  for (int k : {2, 3, 5}) {
    const std::vector<float> t = binomial_taps(k);
    Tensor w({C, 1, k, k});
    for (int64_t c = 0; c < C; ++c)
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) w.data()[(c * k + a) * k + b] = t[a] * t[b];
    Conv2dOptions opt;
    opt.stride_h = opt.stride_w = 2;
    opt.groups = C;
    Tensor padded = pad2d(x, blur_pad_before(k), blur_pad_after(k), blur_pad_before(k), blur_pad_after(k),
                          PadMode::Reflect);
    CHECK(max_abs_diff(blur_pool2d(x, k, 2, PadMode::Reflect), conv2d(padded, w, Tensor(), opt)) < 1e-5f);
  }
}

TEST_CASE("blur_pool: gradient checks over filters, strides, pad modes and odd sizes") {
  Rng rng(4);
  const struct {
    Shape shape;
    int k, stride;
    PadMode pad;
  } cases[] = {{{2, 3, 7, 9}, 3, 2, PadMode::Reflect},   {{1, 2, 6, 5}, 4, 2, PadMode::Reflect},
               {{2, 1, 5, 5}, 5, 2, PadMode::Replicate}, {{1, 3, 8, 7}, 2, 3, PadMode::Zeros},
               {{2, 2, 5, 6}, 7, 2, PadMode::Circular},  {{1, 2, 4, 6}, 1, 2, PadMode::Reflect},
               {{3, 5}, 6, 1, PadMode::Replicate}};
  for (const auto& c : cases) {
    INFO("shape " << shape_str(c.shape) << " filter " << c.k << " stride " << c.stride << " " << pad_mode_name(c.pad));
    Tensor x = Tensor::randn(c.shape, rng).set_requires_grad();
    CHECK_GRADIENTS([&](V t) { return blur_pool2d(t[0], c.k, c.stride, c.pad); }, {x});
  }
}

TEST_CASE("blur_pool: too-small maps and bad arguments give clear errors") {
  // Filter 4 pads 2 at the bottom/right: a 2x2 map cannot be reflect-padded by 2.
  BlurPool pool(3, 4, 2, PadMode::Reflect);
  CHECK_THROWS_NAMING(pool(Tensor::zeros({1, 3, 2, 2})), "BlurPool(3, filter=4", "2x2", "pad", "[1, 3, 2, 2]");
  CHECK_THROWS_NAMING(blur_pool2d(Tensor::zeros({1, 3, 5, 2}), 5, 2, PadMode::Reflect), "blur_pool2d", "reflect",
                      "5x2", "[1, 3, 5, 2]");
  // The same map works with a smaller filter, or with replicate padding.
  CHECK(BlurPool(3, 3)(Tensor::zeros({1, 3, 2, 2})).shape() == Shape{1, 3, 1, 1});
  CHECK(BlurPool(3, 4, 2, PadMode::Replicate)(Tensor::zeros({1, 3, 2, 2})).shape() == Shape{1, 3, 1, 1});
  CHECK_THROWS_NAMING(pool(Tensor::zeros({1, 4, 8, 8})), "BlurPool", "[N, 3, H, W]", "[1, 4, 8, 8]");
  CHECK_THROWS_NAMING(pool(Tensor::zeros({3, 8, 8})), "BlurPool", "[3, 8, 8]");
  CHECK_THROWS_NAMING(BlurPool(3, 0), "BlurPool", "filter_size", "0");
  CHECK_THROWS_NAMING(BlurPool(3, 8), "BlurPool", "8");
  CHECK_THROWS_NAMING(BlurPool(3, 3, 0), "BlurPool", "stride");
  CHECK_THROWS_NAMING(blur_pool2d(Tensor::zeros({4}), 3, 2), "blur_pool2d", "[4]");
  CHECK_THROWS_NAMING(blur_pool2d(Tensor::zeros({2, 0, 4}), 3, 2), "blur_pool2d", "[2, 0, 4]");
  CHECK_THROWS_NAMING(MaxBlurPool(3, 3)(Tensor::zeros({1, 3, 2, 2})), "MaxBlurPool", "2x2");
}

TEST_CASE("blur_pool: MaxBlurPool = dense max then blur-pool; filter 1 reduces to MaxPool2d(2, 2)") {
  Rng rng(8);
  Tensor x = Tensor::randn({2, 4, 28, 28}, rng);
  MaxBlurPool mbp(4);  // kernel 2, filter 4, stride 2, reflect
  Tensor y = mbp(x);
  CHECK(y.shape() == Shape{2, 4, 14, 14});
  Pool2dOptions dense;
  dense.stride_h = dense.stride_w = 1;
  CHECK(max_abs_diff(y, blur_pool2d(max_pool2d(x, dense), 4, 2, PadMode::Reflect)) == 0.0f);
  // With no blur, the max at stride-1 positions 0, 2, 4, ... is exactly the 2x2 stride-2 max pool.
  CHECK(max_abs_diff(MaxBlurPool(4, 2, 1)(x), MaxPool2d(2)(x)) == 0.0f);
  CHECK(mbp.name() == "MaxBlurPool(k=2, 4, filter=4, stride=2, reflect)");
  CHECK(BlurPool(8, 5, 2, PadMode::Zeros).name() == "BlurPool(8, filter=5, stride=2, zeros)");
}

TEST_CASE("blur_pool: MaxBlurPool and conv_blur_pool gradients") {
  // Distinct values 0.1 apart (more than the finite-difference step) keep the max away from ties.
  Rng rng(12);
  const int64_t n = 2 * 2 * 7 * 6;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i) - 8.0f;
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(rng.randint(i + 1))]);
  Tensor x = Tensor::from({2, 2, 7, 6}, v).set_requires_grad();
  MaxBlurPool mbp(2, 2, 3, 2);
  CHECK_GRADIENTS([&](V t) { return mbp(t[0]); }, {x});

  auto block = conv_blur_pool(2, 3, 3, rng, 2, 3, /*batch_norm=*/false);
  CHECK(block->size() == 3);
  Tensor x2 = Tensor::randn({2, 2, 6, 6}, rng).set_requires_grad();
  CHECK((*block)(x2).shape() == Shape{2, 3, 3, 3});
  const auto params = block->parameters();
  eq::testing::GradCheckOptions small_step;  // ReLU kinks: a 1e-2 weight step flips a few pre-activations
  small_step.step = 1e-3;
  CHECK_GRADIENTS([&](V t) { return (*block)(t[0]); }, {x2, params[0], params[1]}, small_step);
  CHECK(conv_blur_pool(2, 3, 3, rng)->size() == 4);  // conv, batch norm, relu, blur-pool
}

namespace {

// A small random CNN with exactly shift-equivariant convolutions (circular padding), so that the downsampling is
// the only thing that can break shift equivariance: conv-relu-down-conv-relu-down-global average -> [N, C].
struct ShiftNet {
  Tensor w1, w2;
  Conv2dOptions opt;
  ShiftNet(Rng& rng) {
    w1 = Tensor::randn({8, 1, 3, 3}, rng, 0, 0.5f);
    w2 = Tensor::randn({8, 8, 3, 3}, rng, 0, 0.2f);
    opt.pad_h = opt.pad_w = 1;
    opt.pad_mode = PadMode::Circular;
  }
  template <class Down>
  Tensor operator()(const Tensor& x, Down down) const {
    Tensor h = down(relu(conv2d(x, w1, Tensor(), opt)));
    h = down(relu(conv2d(h, w2, Tensor(), opt)));
    return mean(h, {2, 3});
  }
};

float relative_change(const Tensor& a, const Tensor& b) {
  double d = 0, n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    d += std::pow(double(a.data()[i]) - b.data()[i], 2);
    n += std::pow(double(a.data()[i]), 2);
  }
  return static_cast<float>(std::sqrt(d / n));
}

}  // namespace

TEST_CASE("blur_pool: a 1-pixel shift changes a blur-pooled net less than a max-pooled one") {
  // The teaching claim as a property: same weights, same inputs (smooth random images, as natural images are
  // mostly low-frequency), shifted by one pixel; average relative change of the [N, C] output over 8 seeded draws.
  Rng rng(2024);
  ShiftNet net(rng);
  Pool2dOptions max2;  // MaxPool2d(2, 2)
  Pool2dOptions dense;
  dense.stride_h = dense.stride_w = 1;
  auto max_pool = [&](const Tensor& h) { return max_pool2d(h, max2); };
  auto max_blur_pool = [&](const Tensor& h) { return blur_pool2d(max_pool2d(h, dense), 4, 2, PadMode::Circular); };
  auto max_no_blur = [&](const Tensor& h) { return blur_pool2d(max_pool2d(h, dense), 1, 2, PadMode::Circular); };
  double change_max = 0, change_blur = 0, change_no_blur = 0;
  const int draws = 8;
  for (int i = 0; i < draws; ++i) {
    Tensor x = gaussian_blur(Tensor::randn({4, 1, 32, 32}, rng), 1.0f, -1, PadMode::Circular);
    Tensor xs = roll(x, 1, 1);
    change_max += relative_change(net(x, max_pool), net(xs, max_pool)) / draws;
    change_blur += relative_change(net(x, max_blur_pool), net(xs, max_blur_pool)) / draws;
    change_no_blur += relative_change(net(x, max_no_blur), net(xs, max_no_blur)) / draws;
  }
  INFO("relative output change under a 1-pixel shift: MaxPool " << change_max << ", MaxBlurPool(filter 4) "
                                                                << change_blur);
  CHECK(change_blur < 0.5 * change_max);
  // Not vacuous: without the blur (filter 1) the "anti-aliased" net is the max-pooled net and changes as much.
  CHECK(change_no_blur == doctest::Approx(change_max).epsilon(1e-4));
  CHECK(change_max > 1e-3);
}
