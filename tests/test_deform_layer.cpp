// DeformConv2d layer: a fresh layer is a plain convolution (v1) or half of one (v2), gradients reach the offset
// branch, parameter names and shapes, gradient checks with fractional offsets, bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "layers/conv2d.h"
#include "layers/deform_conv2d.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

struct LayerCase {
  const char* name;
  int cin, cout, k, stride, pad, dilation, groups, offset_groups;
  int64_t h, w;
};

const LayerCase kLayerCases[] = {
    {"3x3, padding 1", 4, 6, 3, 1, 1, 1, 1, 1, 7, 5},
    {"3x3, stride 2, padding 2, dilation 2, groups 2, offset groups 2", 4, 6, 3, 2, 2, 2, 2, 2, 9, 8},
    {"1x1, no padding", 3, 2, 1, 1, 0, 1, 1, 3, 5, 6},
    {"5x5, stride 3, padding 1", 2, 3, 5, 3, 1, 1, 1, 1, 11, 7},
};

DeformConv2dOptions deform_options(const LayerCase& c) {
  DeformConv2dOptions o;
  o.stride_h = o.stride_w = c.stride;
  o.pad_h = o.pad_w = c.pad;
  o.dilation_h = o.dilation_w = c.dilation;
  o.groups = c.groups;
  o.offset_groups = c.offset_groups;
  return o;
}

Conv2dOptions conv_options(const LayerCase& c) {
  Conv2dOptions o;
  o.stride_h = o.stride_w = c.stride;
  o.pad_h = o.pad_w = c.pad;
  o.dilation_h = o.dilation_w = c.dilation;
  o.groups = c.groups;
  return o;
}

// Fills the offset branch with small random weights and a bias that keeps offsets near +-0.3 / +-0.7 pixels: away
// from integer sampling positions, where bilinear interpolation has kinks that finite differences cannot handle.
void make_offsets_fractional(DeformConv2d& layer, Rng& rng) {
  Tensor& w = layer.offset_conv->weight;
  Tensor& b = layer.offset_conv->bias;
  for (int64_t i = 0; i < w.numel(); ++i) w.data()[i] = 0.01f * rng.uniform(-1, 1);
  for (int64_t i = 0; i < b.numel(); ++i) b.data()[i] = (i % 2 ? 0.3f : -0.7f) + 0.05f * rng.uniform(-1, 1);
}

}  // namespace

TEST_CASE("deform layer: a fresh v1 layer equals a Conv2d with the same weight and bias") {
  Rng rng(21);
  for (const LayerCase& c : kLayerCases) {
    INFO(c.name);
    DeformConv2d deform(c.cin, c.cout, c.k, rng, deform_options(c));
    Conv2d conv(c.cin, c.cout, c.k, rng, conv_options(c));
    conv.weight.copy_from(deform.weight);
    conv.bias.copy_from(deform.bias);
    Tensor x = Tensor::randn({2, c.cin, c.h, c.w}, rng);
    Tensor expected = conv.forward(x);
    Tensor out = deform.forward(x);
    CHECK(out.shape() == expected.shape());
    CHECK(max_abs_diff(out, expected) < 1e-5f);
    // Not vacuous: moving the offset branch off zero changes the result.
    make_offsets_fractional(deform, rng);
    CHECK(max_abs_diff(deform.forward(x), expected) > 1e-2f);
  }
}

TEST_CASE("deform layer: a fresh v2 layer is the convolution with every tap scaled by sigmoid(0) = 0.5") {
  Rng rng(22);
  for (const LayerCase& c : kLayerCases) {
    INFO(c.name);
    DeformConv2d deform(c.cin, c.cout, c.k, rng, deform_options(c), /*modulated=*/true);
    Tensor x = Tensor::randn({2, c.cin, c.h, c.w}, rng);
    Tensor half_conv = conv2d(x, deform.weight * 0.5f, deform.bias, conv_options(c));
    CHECK(max_abs_diff(deform.forward(x), half_conv) < 1e-5f);
    auto [offset, mask] = deform.offsets_and_mask(x);
    REQUIRE(mask.defined());
    CHECK(mask.shape()[1] == int64_t{c.offset_groups} * c.k * c.k);
    CHECK(offset.shape()[1] == 2 * int64_t{c.offset_groups} * c.k * c.k);
    for (float m : mask.to_vector()) CHECK(m == 0.5f);
  }
}

TEST_CASE("deform layer: parameter names, shapes and the offset branch's channel count") {
  Rng rng(23);
  DeformConv2dOptions o;
  o.pad_h = o.pad_w = 1;
  o.offset_groups = 2;
  DeformConv2d v1(4, 8, 3, rng, o), v2(4, 8, 3, rng, o, true);
  auto names = v2.named_parameters();
  REQUIRE(names.size() == 4);
  CHECK(names[0].first == "weight");
  CHECK(names[1].first == "bias");
  CHECK(names[2].first == "offset_conv.weight");
  CHECK(names[3].first == "offset_conv.bias");
  CHECK(v1.offset_conv->weight.shape() == Shape{2 * 2 * 9, 4, 3, 3});  // (dy, dx) x G x k*k
  CHECK(v2.offset_conv->weight.shape() == Shape{3 * 2 * 9, 4, 3, 3});  // + a mask per tap and group
  CHECK(v1.num_parameters() == 8 * 4 * 9 + 8 + 36 * 4 * 9 + 36);
  CHECK(v1.name() == "DeformConv2d(4, 8, k=3, pad=1, offset_groups=2)");
  CHECK(v2.name() == "DeformConv2dV2(4, 8, k=3, pad=1, offset_groups=2)");
}

TEST_CASE("deform layer: one backward on random data reaches the zero-initialised offset branch") {
  Rng rng(24);
  for (bool modulated : {false, true}) {
    INFO((modulated ? "v2" : "v1"));
    DeformConv2dOptions o;
    o.pad_h = o.pad_w = 1;
    DeformConv2d layer(3, 5, 3, rng, o, modulated);
    Tensor x = Tensor::randn({2, 3, 9, 7}, rng);
    Tensor r = Tensor::randn({2, 5, 9, 7}, rng);
    sum(layer.forward(x) * r).backward();
    for (const auto& [name, p] : layer.named_parameters()) {
      INFO(name);
      REQUIRE(p.has_grad());
      float largest = 0;
      for (float g : p.grad().to_vector()) largest = std::max(largest, std::fabs(g));
      CHECK(largest > 1e-3f);
    }
  }
}

TEST_CASE("deform layer: gradient checks through the offset branch (input and every parameter), odd sizes") {
  Rng rng(25);
  using V = const std::vector<Tensor>&;
  for (const LayerCase& c : {kLayerCases[0], kLayerCases[1], kLayerCases[3]})
    for (bool modulated : {false, true}) {
      INFO(c.name << (modulated ? ", v2" : ", v1"));
      DeformConv2d layer(c.cin, c.cout, c.k, rng, deform_options(c), modulated);
      make_offsets_fractional(layer, rng);
      Tensor x = Tensor::randn({2, c.cin, c.h, c.w}, rng).set_requires_grad();
      std::vector<Tensor> inputs = {x};
      for (const Tensor& p : layer.parameters()) inputs.push_back(p);
      eq::testing::GradCheckOptions opt;
      opt.step = 2e-3;  // keeps the perturbed offsets inside one bilinear cell
      CHECK_GRADIENTS([&layer](V t) { return layer.forward(t[0]); }, inputs, opt);
    }
}

TEST_CASE("deform layer: bad input and options name the layer and the shapes") {
  Rng rng(26);
  DeformConv2dOptions o;
  o.pad_h = o.pad_w = 1;
  DeformConv2d layer(4, 6, 3, rng, o);
  CHECK_THROWS_NAMING(layer.forward(Tensor({2, 3, 8, 8})), "DeformConv2d(4, 6, k=3)", "[2, 3, 8, 8]");
  CHECK_THROWS_NAMING(layer.forward(Tensor({4, 8, 8})), "DeformConv2d", "[4, 8, 8]");
  DeformConv2dOptions bad_groups;
  bad_groups.offset_groups = 3;
  CHECK_THROWS_NAMING(DeformConv2d(4, 6, 3, rng, bad_groups), "DeformConv2d", "offset_groups 3", "4");
  bad_groups = {};
  bad_groups.groups = 4;
  CHECK_THROWS_NAMING(DeformConv2d(4, 6, 3, rng, bad_groups), "DeformConv2d", "groups 4", "6");
  CHECK_THROWS_NAMING(DeformConv2d(0, 6, 3, rng), "DeformConv2d", "positive");
}
