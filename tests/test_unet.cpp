// UNet (layers/unet.h): output shapes (odd sizes included), gradients through the whole net, errors naming the
// shapes, and the shift property of a pooling U-Net (equivariant in the interior for shifts by the total stride,
// not for a 1-pixel shift).
#include <doctest/doctest.h>

#include <cmath>

#include "augment/shift.h"
#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/unet.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

// Parameter `name` of the module (a handle to the same storage).
Tensor parameter(const Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return {};
}

// Largest |a - b| over rows and columns [lo, hi) of [N, C, H, W] maps.
float interior_diff(const Tensor& a, const Tensor& b, int64_t lo, int64_t hi) {
  REQUIRE(a.shape() == b.shape());
  const int64_t N = a.size(0), C = a.size(1), H = a.size(2), W = a.size(3);
  float m = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = lo; i < hi; ++i)
        for (int64_t j = lo; j < hi; ++j) {
          const int64_t k = ((n * C + c) * H + i) * W + j;
          m = std::max(m, std::fabs(a.data()[k] - b.data()[k]));
        }
  return m;
}

}  // namespace

TEST_CASE("unet: the output has the input's size and out_channels, for even and odd sizes and any depth") {
  Rng rng(1);
  UNet net(3, 5, 4, rng, 3);
  CHECK(net.forward(Tensor::uniform({2, 3, 16, 12}, rng)).shape() == Shape{2, 5, 16, 12});
  // Odd sizes: pooling floors (13 -> 6 -> 3), the upsampling goes back to the skip's exact size.
  CHECK(net.forward(Tensor::uniform({2, 3, 13, 11}, rng)).shape() == Shape{2, 5, 13, 11});
  CHECK(net.forward(Tensor::uniform({2, 3, 4, 5}, rng)).shape() == Shape{2, 5, 4, 5});  // the smallest allowed
  UNet flat(1, 2, 3, rng, 1);  // one level: no pooling at all
  CHECK(flat.forward(Tensor::uniform({2, 1, 3, 3}, rng)).shape() == Shape{2, 2, 3, 3});
  // Parameters: 3 + 2 conv blocks (two convs and two batch norms each) and the head's weight and bias.
  CHECK(net.parameters().size() == 5 * 2 * 3 + 2);
  CHECK(net.min_size() == 4);
}

TEST_CASE("unet: gradients to the input and to weights at every level (finite differences)") {
  Rng rng(2);
  UNet net(2, 3, 2, rng, 2);
  // Kinks (ReLU, max pooling) are rare on random inputs; the harness's relative metric tolerates a stray one.
  Tensor x = Tensor::randn({2, 2, 6, 5}, rng).set_requires_grad();
  const Tensor w_down0 = parameter(net, "down0.0.weight");
  const Tensor w_down1 = parameter(net, "down1.3.weight");
  const Tensor w_up0 = parameter(net, "up0.0.weight");
  const Tensor w_head = parameter(net, "head.weight");
  testing::GradCheckOptions opt;
  opt.step = 1e-3;
  opt.tolerance = 2e-2;
  opt.max_elements = 60;
  CHECK_GRADIENTS([&](V) { return net.forward(x); }, {x, w_down0, w_down1, w_up0, w_head}, opt);
}

TEST_CASE("unet: bad input is refused naming the layer and the shape") {
  Rng rng(3);
  UNet net(3, 4, 4, rng, 3);
  CHECK_THROWS_NAMING(net.forward(Tensor::zeros({2, 1, 16, 16})), "UNet", "[2, 1, 16, 16]", "3");
  CHECK_THROWS_NAMING(net.forward(Tensor::zeros({3, 16, 16})), "UNet", "[3, 16, 16]");
  CHECK_THROWS_NAMING(net.forward(Tensor::zeros({1, 3, 3, 16})), "UNet", "[1, 3, 3, 16]", "too small", "4");
  CHECK_THROWS_NAMING(UNet(3, 4, 0, rng), "UNet", "base_width");
  CHECK_THROWS_NAMING(UNet(3, 4, 4, rng, 0), "UNet", "levels");
}

TEST_CASE("unet: equivariant to shifts by the total stride in the interior, not to a 1-pixel shift") {
  // Eval mode (fixed BatchNorm statistics), so each output pixel depends only on its receptive field. With 3
  // levels the receptive field reaches ~29 px and the stride is 4: on 80 x 80 images the pixels in [34, 46) see
  // no border in either image.
  Rng rng(4);
  UNet net(1, 3, 4, rng, 3);
  net.eval();
  NoGrad no_grad;
  const Tensor x = Tensor::uniform({1, 1, 80, 80}, rng);
  const Tensor fx = net.forward(x);
  auto shifted_diff = [&](int s) {
    const Tensor f_of_shifted = net.forward(translate_int(x, {s}, {s}, ShiftPadding::Zeros));
    return interior_diff(f_of_shifted, translate_int(fx, {s}, {s}, ShiftPadding::Zeros), 34, 46);
  };
  float scale = 0;
  for (float v : fx.to_vector()) scale = std::max(scale, std::fabs(v));
  INFO("output scale " << scale << ", interior change under shifts 4, 8, 1: " << shifted_diff(4) << ", "
                       << shifted_diff(8) << ", " << shifted_diff(1));
  CHECK(shifted_diff(4) < 1e-6f * (1 + scale));  // the same arithmetic on shifted data: 0 in practice
  CHECK(shifted_diff(8) < 1e-6f * (1 + scale));
  // Max pooling picks other maxima under a 1-pixel shift: the interior changes by far more than rounding (here
  // ~2e-4 of the output scale; small because at initialisation most of the output comes through the
  // full-resolution skip path, which commutes with every shift).
  CHECK(shifted_diff(1) > 2e-5f * scale);
}
