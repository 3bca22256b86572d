// conv2d: hand-computed values for every option, the im2col kernel against the direct-loop reference (forward and
// backward), gradient checks, the circular-padding / roll commutation property, and bad input.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

Conv2dOptions options(int stride, int pad, PadMode mode = PadMode::Zeros, int dilation = 1, int groups = 1) {
  Conv2dOptions o;
  o.stride_h = o.stride_w = stride;
  o.pad_h = o.pad_w = pad;
  o.dilation_h = o.dilation_w = dilation;
  o.groups = groups;
  o.pad_mode = mode;
  return o;
}

// y[n, c, i, j] = x[n, c, (i - dy) mod H, (j - dx) mod W]: a torus shift, written out here so the test does not
// depend on another op.
Tensor roll2d(const Tensor& x, int64_t dy, int64_t dx) {
  Tensor y(x.shape());
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j)
        y.data()[(p * H + (i + dy + H) % H) * W + (j + dx + W) % W] = x.data()[(p * H + i) * W + j];
  return y;
}

Tensor grid3x3() { return Tensor::from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}); }

}  // namespace

TEST_CASE("conv2d: hand-computed values") {
  Tensor x = grid3x3();
  // 2x2 kernel of ones, no padding: sums of 2x2 blocks, plus bias.
  Tensor y = conv2d(x, Tensor::ones({1, 1, 2, 2}), Tensor::from({1}, {0.5f}), options(1, 0));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(y.to_vector() == std::vector<float>{12.5f, 16.5f, 24.5f, 28.5f});
  // 3x3 ones, zero padding 1, stride 2: the four corner windows each see a 2x2 block of real cells.
  CHECK(conv2d(x, Tensor::ones({1, 1, 3, 3}), Tensor(), options(2, 1)).to_vector() ==
        std::vector<float>{12, 16, 24, 28});
  // 3x3 ones, circular padding 1: every window sees the whole torus once.
  CHECK(conv2d(x, Tensor::ones({1, 1, 3, 3}), Tensor(), options(1, 1, PadMode::Circular)).to_vector() ==
        std::vector<float>(9, 45.0f));
  // A kernel with a single 1 at its top-left tap reads x_padded[i - 1][j - 1]: the padding itself.
  Tensor corner = Tensor::from({1, 1, 3, 3}, {1, 0, 0, 0, 0, 0, 0, 0, 0});
  auto shifted = [&](PadMode m) { return conv2d(x, corner, Tensor(), options(1, 1, m)).to_vector(); };
  CHECK(shifted(PadMode::Zeros) == std::vector<float>{0, 0, 0, 0, 1, 2, 0, 4, 5});
  CHECK(shifted(PadMode::Reflect) == std::vector<float>{5, 4, 5, 2, 1, 2, 5, 4, 5});
  CHECK(shifted(PadMode::Replicate) == std::vector<float>{1, 1, 2, 1, 1, 2, 4, 4, 5});
  CHECK(shifted(PadMode::Circular) == std::vector<float>{9, 7, 8, 3, 1, 2, 6, 4, 5});
  // Dilation 2 on a 5x5 ramp x[i][j] = 5 i + j: taps x[0][0], x[0][2], x[2][0], x[2][2] with weights 1, 2, 3, 4,
  // so out[oy][ox] = 82 + 10 ox + 50 oy.
  std::vector<float> ramp(25);
  for (int i = 0; i < 25; ++i) ramp[i] = static_cast<float>(i);
  Tensor yd = conv2d(Tensor::from({1, 1, 5, 5}, ramp), Tensor::from({1, 1, 2, 2}, {1, 2, 3, 4}), Tensor(),
                     options(1, 0, PadMode::Zeros, 2));
  CHECK(yd.shape() == Shape{1, 1, 3, 3});
  for (int64_t oy = 0; oy < 3; ++oy)
    for (int64_t ox = 0; ox < 3; ++ox) CHECK(yd.at({0, 0, oy, ox}) == 82 + 10 * ox + 50 * oy);
  // Two groups of one channel: each output channel sees only its own input channel.
  Tensor yg = conv2d(Tensor::from({1, 2, 1, 2}, {1, 2, 3, 4}), Tensor::from({2, 1, 1, 1}, {2, 3}), Tensor(),
                     options(1, 0, PadMode::Zeros, 1, 2));
  CHECK(yg.to_vector() == std::vector<float>{2, 4, 9, 12});
}

TEST_CASE("conv2d: im2col kernel equals the direct-loop reference, forward and backward") {
  struct Case {
    int64_t n, cin, cout, h, w, kh, kw;
    Conv2dOptions opt;
  };
  const PadMode modes[] = {PadMode::Zeros, PadMode::Reflect, PadMode::Replicate, PadMode::Circular};
  std::vector<Case> cases = {
      {2, 3, 4, 7, 6, 3, 3, options(1, 1)},
      {1, 2, 5, 9, 8, 3, 2, options(2, 1)},                             // N = 1: the serial, threaded-GEMM path
      {11, 3, 4, 5, 5, 3, 3, options(1, 1)},                            // small maps: several samples per GEMM
      {3, 4, 6, 9, 7, 3, 3, options(1, 2, PadMode::Zeros, 2)},          // dilation 2
      {3, 4, 6, 8, 8, 3, 3, options(2, 1, PadMode::Zeros, 1, 2)},       // groups 2, stride 2
      {4, 6, 6, 7, 7, 3, 3, options(1, 1, PadMode::Zeros, 1, 6)},       // depthwise
      {2, 5, 3, 6, 6, 1, 1, options(1, 0)},                             // 1x1
      {2, 3, 2, 4, 5, 5, 5, options(1, 2)},                             // kernel larger than the unpadded input
      {2, 2, 3, 4, 4, 3, 3, options(1, 5, PadMode::Circular)},          // circular padding wider than the input
      {2, 2, 3, 8, 8, 3, 3, options(3, 0)},                             // stride 3 that leaves cells unread
      // Cin >= Cout with stride 1: the input gradient runs as a convolution of dY with the flipped weight.
      {3, 6, 4, 9, 8, 3, 3, options(1, 2, PadMode::Zeros, 2, 2)},
      {2, 5, 5, 6, 7, 3, 3, options(1, 0)},
      {2, 4, 4, 7, 9, 3, 2, [] { Conv2dOptions o = options(1, 1); o.pad_w = 0; return o; }()},
      // Many channels on a larger map: each sample is cut into tiles of output rows (col stays L2-sized).
      {1, 64, 2, 20, 20, 3, 3, options(1, 1)},
      {1, 48, 64, 18, 18, 3, 3, options(1, 1)},
      {1, 48, 64, 18, 18, 3, 3, options(1, 1, PadMode::Circular)},
  };
  for (PadMode m : modes) {
    Conv2dOptions o = options(2, 2, m, 2, 2);
    cases.push_back({3, 4, 2, 9, 10, 3, 2, o});
    o = options(1, 1, m);
    o.pad_h = 2, o.stride_w = 2;
    cases.push_back({2, 3, 3, 6, 7, 3, 3, o});
  }
  Rng rng(21);
  for (const Case& c : cases) {
    INFO("case n=" << c.n << " cin=" << c.cin << " cout=" << c.cout << " " << c.h << "x" << c.w << " k=" << c.kh
                   << "x" << c.kw << " stride " << c.opt.stride_h << "x" << c.opt.stride_w << " pad " << c.opt.pad_h
                   << "x" << c.opt.pad_w << " dilation " << c.opt.dilation_h << " groups " << c.opt.groups
                   << " mode " << static_cast<int>(c.opt.pad_mode));
    Tensor x = Tensor::randn({c.n, c.cin, c.h, c.w}, rng).set_requires_grad();
    Tensor w = Tensor::randn({c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng).set_requires_grad();
    Tensor b = Tensor::randn({c.cout}, rng).set_requires_grad();
    Tensor slow = conv2d_reference(x, w, b, c.opt);
    testing::poison_next_allocation(slow.numel());  // conv2d's output is Tensor::empty: every element must be written
    Tensor fast = conv2d(x, w, b, c.opt);
    CHECK(testing::max_abs_diff(fast, slow) < 1e-4f);
    Tensor seed = Tensor::randn(fast.shape(), rng);
    fast.backward(seed);
    const Tensor gx = x.grad().clone(), gw = w.grad().clone(), gb = b.grad().clone();
    x.zero_grad(), w.zero_grad(), b.zero_grad();
    slow.backward(seed);
    CHECK(testing::max_abs_diff(gx, x.grad()) < 1e-4f);
    CHECK(testing::max_abs_diff(gw, w.grad()) < 2e-4f);
    CHECK(testing::max_abs_diff(gb, b.grad()) < 1e-4f);
  }
}

TEST_CASE("conv2d: gradient checks for every pad mode, stride, dilation, groups and depthwise") {
  Rng rng(3);
  struct Case {
    Shape x, w;
    Conv2dOptions opt;
  };
  std::vector<Case> cases = {
      {{2, 3, 5, 7}, {4, 3, 3, 3}, options(1, 1)},
      {{2, 3, 7, 6}, {2, 3, 3, 3}, options(2, 1)},
      {{1, 2, 9, 7}, {3, 2, 3, 3}, options(1, 2, PadMode::Zeros, 2)},
      {{2, 4, 5, 5}, {6, 2, 3, 3}, options(1, 1, PadMode::Zeros, 1, 2)},
      {{2, 3, 6, 5}, {3, 1, 3, 3}, options(1, 1, PadMode::Zeros, 1, 3)},  // depthwise
      {{3, 2, 4, 4}, {3, 2, 2, 2}, options(1, 0)},                          // 3 samples: parallel runs
      {{2, 4, 5, 6}, {3, 4, 3, 3}, options(1, 1)},                          // Cin >= Cout: transposed dx
      {{2, 4, 7, 6}, {4, 2, 3, 3}, options(1, 2, PadMode::Zeros, 2, 2)},
  };
  for (PadMode m : {PadMode::Reflect, PadMode::Replicate, PadMode::Circular}) {
    cases.push_back({{2, 2, 5, 6}, {3, 2, 3, 3}, options(1, 1, m)});
    cases.push_back({{1, 2, 7, 5}, {2, 1, 3, 3}, options(2, 2, m, 2, 2)});
  }
  for (const Case& c : cases) {
    INFO("x " << shape_str(c.x) << " w " << shape_str(c.w) << " stride " << c.opt.stride_h << " pad "
              << c.opt.pad_h << " dilation " << c.opt.dilation_h << " groups " << c.opt.groups << " mode "
              << static_cast<int>(c.opt.pad_mode));
    Tensor x = Tensor::randn(c.x, rng).set_requires_grad();
    Tensor w = Tensor::randn(c.w, rng).set_requires_grad();
    Tensor b = Tensor::randn({c.w[0]}, rng).set_requires_grad();
    const Conv2dOptions opt = c.opt;
    CHECK_GRADIENTS([opt](V t) { return conv2d(t[0], t[1], t[2], opt); }, {x, w, b});
    // Without bias, and with only the input needing a gradient (the weight is then not kept).
    CHECK_GRADIENTS([opt](V t) { return conv2d(t[0], t[1], Tensor(), opt); }, {x, w.detach()});
  }
}

TEST_CASE("conv2d: circular padding commutes with torus shifts; zero padding does not") {
  Rng rng(8);
  Tensor x = Tensor::randn({2, 3, 9, 8}, rng);
  Tensor w = Tensor::randn({4, 3, 3, 3}, rng);
  Tensor b = Tensor::randn({4}, rng);
  Tensor w5 = Tensor::randn({2, 3, 5, 5}, rng);
  for (auto [dy, dx] : {std::pair<int64_t, int64_t>{1, 0}, {0, 3}, {-2, 5}, {4, -1}}) {
    INFO("shift (" << dy << ", " << dx << ")");
    const Conv2dOptions circ = options(1, 1, PadMode::Circular);
    CHECK(testing::max_abs_diff(conv2d(roll2d(x, dy, dx), w, b, circ), roll2d(conv2d(x, w, b, circ), dy, dx)) <
          1e-5f);
    const Conv2dOptions circ5 = options(1, 2, PadMode::Circular);  // a wider kernel wraps two cells
    CHECK(testing::max_abs_diff(conv2d(roll2d(x, dy, dx), w5, Tensor(), circ5),
                                roll2d(conv2d(x, w5, Tensor(), circ5), dy, dx)) < 1e-5f);
    // The same property with zero padding fails near the borders, so the check above can fail.
    const Conv2dOptions zeros = options(1, 1);
    CHECK(testing::max_abs_diff(conv2d(roll2d(x, dy, dx), w, b, zeros), roll2d(conv2d(x, w, b, zeros), dy, dx)) >
          1e-2f);
  }
}

TEST_CASE("conv2d: bad input names the op and the shapes") {
  Tensor x({8, 3, 28, 28});
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 1, 3, 3}), Tensor(), options(1, 1)), "conv2d", "3 channels",
                      "[8, 3, 28, 28]", "[16, 1, 3, 3]");
  CHECK_THROWS_NAMING(conv2d(Tensor({3, 28, 28}), Tensor({16, 3, 3, 3}), Tensor(), options(1, 1)), "conv2d",
                      "[3, 28, 28]");
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 3, 3}), Tensor(), options(1, 1)), "conv2d", "[16, 3, 3]");
  CHECK_THROWS_NAMING(conv2d(Tensor({1, 1, 2, 2}), Tensor({1, 1, 5, 5}), Tensor(), options(1, 1)), "conv2d",
                      "larger than the padded input", "[1, 1, 2, 2]", "[1, 1, 5, 5]");
  CHECK_THROWS_NAMING(conv2d(Tensor({1, 1, 5, 5}), Tensor({1, 1, 3, 3}), Tensor(), options(1, 0, PadMode::Zeros, 3)),
                      "conv2d", "dilation", "[1, 1, 5, 5]");
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 1, 3, 3}), Tensor(), options(1, 1, PadMode::Zeros, 1, 2)), "conv2d",
                      "groups=2", "[8, 3, 28, 28]");
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 3, 3, 3}), Tensor(), options(1, 1, PadMode::Zeros, 1, 0)), "conv2d",
                      "groups=0");
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 3, 3, 3}), Tensor({8}), options(1, 1)), "conv2d", "bias", "[8]",
                      "[16, 3, 3, 3]");
  CHECK_THROWS_NAMING(conv2d(x, Tensor({16, 3, 3, 3}), Tensor(), options(0, 1)), "conv2d", "stride");
  CHECK_THROWS_NAMING(conv2d(Tensor({1, 1, 2, 2}), Tensor({1, 1, 1, 1}), Tensor(), options(1, 2, PadMode::Reflect)),
                      "conv2d", "reflect", "[1, 1, 2, 2]");
  CHECK_THROWS_NAMING(conv2d_reference(x, Tensor({16, 1, 3, 3}), Tensor(), options(1, 1)), "conv2d_reference",
                      "[8, 3, 28, 28]");
}
