// Deformable convolution: hand-computed values, reduction to a plain convolution (zero and integer offsets), fast
// kernel vs the direct reference (forward and all five gradients), gradient checks, shape errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/deform_conv.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

using DeformFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const DeformConv2dOptions&);

int64_t out_size(int64_t in, int64_t k, int pad, int stride, int dilation) {
  return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

// A plain convolution written independently of the engine, for the reductions below:
// x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw] -> [N, Cout, Ho, Wo], zero padding.
Tensor direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, const DeformConv2dOptions& o) {
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = w.size(0), cin_g = w.size(1), kh = w.size(2), kw = w.size(3), cout_g = Cout / o.groups;
  const int64_t Ho = out_size(H, kh, o.pad_h, o.stride_h, o.dilation_h),
                Wo = out_size(W, kw, o.pad_w, o.stride_w, o.dilation_w);
  Tensor out({N, Cout, Ho, Wo});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < Cout; ++oc)
      for (int64_t yo = 0; yo < Ho; ++yo)
        for (int64_t xo = 0; xo < Wo; ++xo) {
          double s = b.defined() ? b.data()[oc] : 0.0;
          for (int64_t ci = 0; ci < cin_g; ++ci)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t c = (oc / cout_g) * cin_g + ci;
                const int64_t y = yo * o.stride_h - o.pad_h + i * o.dilation_h,
                              xx = xo * o.stride_w - o.pad_w + j * o.dilation_w;
                if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                s += static_cast<double>(w.data()[((oc * cin_g + ci) * kh + i) * kw + j]) *
                     x.data()[((n * Cin + c) * H + y) * W + xx];
              }
          out.data()[((n * Cout + oc) * Ho + yo) * Wo + xo] = static_cast<float>(s);
        }
  return out;
}

// x [N, C, H, W] inside a zero border of `pad` pixels -> [N, C, H + 2 pad, W + 2 pad].
Tensor zero_padded(const Tensor& x, int64_t pad) {
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), Hp = H + 2 * pad, Wp = W + 2 * pad;
  Tensor out({x.size(0), x.size(1), Hp, Wp});
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx)
        out.data()[(c * Hp + y + pad) * Wp + xx + pad] = x.data()[(c * H + y) * W + xx];
  return out;
}

// x shifted so that out[y][x] = x[y + dy][x + dx], zero where that falls outside.
Tensor shifted(const Tensor& x, int dy, int dx) {
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  Tensor out(x.shape());
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx) {
        const int64_t sy = y + dy, sx = xx + dx;
        out.data()[(c * H + y) * W + xx] =
            sy >= 0 && sy < H && sx >= 0 && sx < W ? x.data()[(c * H + sy) * W + sx] : 0.0f;
      }
  return out;
}

// Offsets whose fractional parts lie in [0.2, 0.8]: every sampling point stays away from the grid lines (and from
// the y = -1 / y = H cut-offs), where bilinear interpolation has kinks and finite differences would be wrong.
Tensor fractional_offsets(const Shape& shape, Rng& rng) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<float>(rng.randint(3) - 1) + rng.uniform(0.2f, 0.8f);
  return t;
}

struct Problem {
  Tensor x, offset, w, b, mask;  // mask undefined for v1
  DeformConv2dOptions opt;
};

Problem make_problem(Rng& rng, int64_t N, int64_t Cin, int64_t Cout, int64_t H, int64_t W, int64_t kh, int64_t kw,
                     DeformConv2dOptions opt, bool with_mask) {
  Problem p;
  p.opt = opt;
  const int64_t Ho = out_size(H, kh, opt.pad_h, opt.stride_h, opt.dilation_h);
  const int64_t Wo = out_size(W, kw, opt.pad_w, opt.stride_w, opt.dilation_w);
  p.x = Tensor::randn({N, Cin, H, W}, rng);
  p.w = Tensor::randn({Cout, Cin / opt.groups, kh, kw}, rng, 0, 0.5f);
  p.b = Tensor::randn({Cout}, rng);
  p.offset = fractional_offsets({N, 2 * opt.offset_groups * kh * kw, Ho, Wo}, rng);
  if (with_mask) p.mask = Tensor::uniform({N, opt.offset_groups * kh * kw, Ho, Wo}, rng, 0.2f, 1.0f);
  return p;
}

// The options every test sweeps: stride 2, dilation 2, padding, weight groups 2, offset groups 2, odd sizes.
struct Case {
  const char* name;
  int64_t N, Cin, Cout, H, W, kh, kw;
  DeformConv2dOptions opt;
};
DeformConv2dOptions options(int stride, int pad, int dilation, int groups, int offset_groups) {
  DeformConv2dOptions o;
  o.stride_h = o.stride_w = stride, o.pad_h = o.pad_w = pad, o.dilation_h = o.dilation_w = dilation;
  o.groups = groups, o.offset_groups = offset_groups;
  return o;
}
const Case kCases[] = {
    {"3x3 plain", 2, 3, 4, 5, 6, 3, 3, options(1, 1, 1, 1, 1)},
    {"stride 2, groups 2, offset groups 2", 2, 4, 6, 7, 5, 3, 3, options(2, 1, 1, 2, 2)},
    {"dilation 2, padding 2, offset groups 2", 1, 4, 3, 6, 7, 3, 3, options(1, 2, 2, 1, 2)},
    {"2x3 kernel, stride 2, dilation 2, no padding", 3, 2, 2, 9, 8, 2, 3, options(2, 0, 2, 2, 1)},
};

}  // namespace

TEST_CASE("deform_conv: hand-computed values on a linear image") {
  // Inside the image, x[y][x] = 3y + x + 1, so bilinear interpolation returns exactly 3y + x + 1 at a fractional
  // point; a 1x1 kernel of weight 2 and bias 1 then gives 2 (3y + x + 1) + 1.
  Tensor x = Tensor::from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor w = Tensor::from({1, 1, 1, 1}, {2});
  Tensor b = Tensor::from({1}, {1});
  Tensor offset({1, 2, 3, 3});
  Tensor mask = Tensor::ones({1, 1, 3, 3});
  auto set = [&](int64_t p, float dy, float dx) { offset.data()[p] = dy, offset.data()[9 + p] = dx; };
  set(0, 0.5f, 0.25f);   // (0, 0) samples (0.5, 0.25): 3*0.5 + 0.25 + 1 = 2.75
  set(4, -0.75f, 0.5f);  // (1, 1) samples (0.25, 1.5): 3*0.25 + 1.5 + 1 = 3.25, masked by 0.5 below
  mask.data()[4] = 0.5f;
  set(8, 0.5f, 0.25f);   // (2, 2) samples (2.5, 2.25): only the neighbour (2, 2) = 9 is inside, weight 0.5*0.75
  set(1, -1.0f, 0.0f);   // (0, 1) samples (-1, 1): on the cut-off y <= -1, so 0
  set(2, -0.5f, 0.0f);   // (0, 2) samples (-0.5, 2): half of x[0][2] = 3
  set(5, NAN, 0.0f);     // (1, 2): a NaN or huge offset samples nothing (no crash, no garbage index)
  set(6, 0.0f, 1e30f);   // (2, 0)
  for (DeformFn f : {&deform_conv2d, &deform_conv2d_reference}) {
    Tensor out = f(x, offset, w, b, mask, DeformConv2dOptions{});
    CHECK(out.at({0, 0, 0, 0}) == doctest::Approx(2 * 2.75f + 1));
    CHECK(out.at({0, 0, 1, 1}) == doctest::Approx(2 * 0.5f * 3.25f + 1));
    CHECK(out.at({0, 0, 2, 2}) == doctest::Approx(2 * 0.5f * 0.75f * 9 + 1));
    CHECK(out.at({0, 0, 0, 1}) == doctest::Approx(1));
    CHECK(out.at({0, 0, 0, 2}) == doctest::Approx(2 * 0.5f * 3 + 1));
    CHECK(out.at({0, 0, 1, 0}) == doctest::Approx(2 * 4 + 1));  // zero offset: the pixel itself
    CHECK(out.at({0, 0, 1, 2}) == 1);
    CHECK(out.at({0, 0, 2, 0}) == 1);
    // An out-of-range tap adds exactly nothing, even when the image holds an infinity (0 * inf would be NaN).
    Tensor inf_x = x.clone();
    inf_x.data()[0] = inf_x.data()[8] = INFINITY;
    Tensor inf_out = f(inf_x, offset, w, b, mask, DeformConv2dOptions{});
    CHECK(inf_out.at({0, 0, 1, 2}) == 1);
    CHECK(inf_out.at({0, 0, 2, 0}) == 1);
  }
}

TEST_CASE("deform_conv: zero offsets and unit mask equal a plain convolution") {
  Rng rng(11);
  for (const Case& c : kCases) {
    INFO(std::string(c.name));
    Problem p = make_problem(rng, c.N, c.Cin, c.Cout, c.H, c.W, c.kh, c.kw, c.opt, true);
    Tensor zero_offset = Tensor::zeros(p.offset.shape());
    Tensor unit_mask = Tensor::ones(p.mask.shape());
    Tensor expected = direct_conv(p.x, p.w, p.b, c.opt);
    for (DeformFn f : {&deform_conv2d, &deform_conv2d_reference}) {
      CHECK(max_abs_diff(f(p.x, zero_offset, p.w, p.b, unit_mask, c.opt), expected) < 1e-4f);
      CHECK(max_abs_diff(f(p.x, zero_offset, p.w, p.b, Tensor(), c.opt), expected) < 1e-4f);  // v1
    }
  }
}

TEST_CASE("deform_conv: an integer offset on every tap equals a convolution of the shifted input") {
  // The shift acts on the padded canvas: a tap whose unshifted position is in the padding still reads the image
  // when the offset moves it inside. So: deform(x, pad p, shift) == conv(shift(zero_pad(x, p)), pad 0).
  Rng rng(12);
  const int dy = 1, dx = -2;
  for (const Case& c : kCases) {
    INFO(std::string(c.name));
    DeformConv2dOptions no_pad = c.opt;
    no_pad.pad_h = no_pad.pad_w = 0;
    const int64_t pad = c.opt.pad_h;
    Problem p = make_problem(rng, c.N, c.Cin, c.Cout, c.H, c.W, c.kh, c.kw, c.opt, false);
    Tensor offset(p.offset.shape());
    const int64_t P = offset.size(2) * offset.size(3);
    for (int64_t pair = 0; pair < offset.numel() / (2 * P); ++pair)  // interleaved (dy, dx) channel pairs
      for (int64_t q = 0; q < P; ++q)
        offset.data()[(2 * pair) * P + q] = dy, offset.data()[(2 * pair + 1) * P + q] = dx;
    Tensor expected = direct_conv(shifted(zero_padded(p.x, pad), dy, dx), p.w, p.b, no_pad);
    for (DeformFn f : {&deform_conv2d, &deform_conv2d_reference}) {
      Tensor out = f(p.x, offset, p.w, p.b, Tensor(), c.opt);
      CHECK(max_abs_diff(out, expected) < 1e-4f);
      // The check is sharp: reading dx as dy (the wrong channel order) gives a different answer.
      CHECK(max_abs_diff(out, direct_conv(shifted(zero_padded(p.x, pad), dx, dy), p.w, p.b, no_pad)) > 0.1f);
    }
  }
}

TEST_CASE("deform_conv: a zero mask leaves only the bias") {
  Rng rng(13);
  Problem p = make_problem(rng, 2, 4, 3, 5, 5, 3, 3, options(1, 1, 1, 1, 2), true);
  Tensor out = deform_conv2d(p.x, p.offset, p.w, p.b, Tensor::zeros(p.mask.shape()), p.opt);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 3; ++o)
      for (int64_t y = 0; y < 5; ++y)
        for (int64_t x = 0; x < 5; ++x) CHECK(out.at({n, o, y, x}) == p.b.data()[o]);
}

TEST_CASE("deform_conv: fast kernel matches the reference, forward and every gradient") {
  Rng rng(14);
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  // Large enough for the batch loop to run on several threads (per-thread grad-weight partials).
  cases.push_back(
      {"batch 4, 8 channels, 12x12, groups 2, offset groups 2", 4, 8, 6, 12, 12, 3, 3, options(1, 1, 1, 2, 2)});
  for (const Case& c : cases)
    for (bool with_mask : {true, false}) {
      INFO(std::string(c.name) << (with_mask ? ", v2 (mask)" : ", v1"));
      Problem p = make_problem(rng, c.N, c.Cin, c.Cout, c.H, c.W, c.kh, c.kw, c.opt, with_mask);
      // Arbitrary offsets here (not only fractional ones): some taps leave the image, some land on grid lines;
      // both kernels must still agree.
      p.offset = Tensor::randn(p.offset.shape(), rng, 0, 2.0f);
      for (int64_t i = 0; i < p.offset.numel(); i += 7) p.offset.data()[i] = std::round(p.offset.data()[i]);
      Tensor seed;
      std::vector<Tensor> results[2];
      int r = 0;
      for (DeformFn f : {&deform_conv2d, &deform_conv2d_reference}) {
        std::vector<Tensor> in = {p.x.clone(), p.offset.clone(), p.w.clone(), p.b.clone(),
                                  with_mask ? p.mask.clone() : Tensor()};
        for (Tensor& t : in)
          if (t.defined()) t.set_requires_grad();
        Tensor out = f(in[0], in[1], in[2], in[3], in[4], c.opt);
        if (!seed.defined()) seed = Tensor::randn(out.shape(), rng);
        out.backward(seed);
        results[r].push_back(out.detach());
        for (Tensor& t : in)
          if (t.defined()) results[r].push_back(t.grad());
        ++r;
      }
      REQUIRE(results[0].size() == results[1].size());
      const char* names[] = {"output", "grad input", "grad offset", "grad weight", "grad bias", "grad mask"};
      for (size_t k = 0; k < results[0].size(); ++k) {
        INFO(std::string(names[k]));
        float scale = 1;
        for (float v : results[1][k].to_vector()) scale = std::max(scale, std::fabs(v));
        CHECK(max_abs_diff(results[0][k], results[1][k]) < 1e-4f * scale);
      }
    }
}

TEST_CASE("deform_conv: gradient checks wrt input, offset, weight, bias and mask") {
  Rng rng(15);
  using V = const std::vector<Tensor>&;
  for (const Case& c : kCases) {
    INFO(std::string(c.name));
    Problem p = make_problem(rng, c.N, c.Cin, c.Cout, c.H, c.W, c.kh, c.kw, c.opt, true);
    for (Tensor* t : {&p.x, &p.offset, &p.w, &p.b, &p.mask}) t->set_requires_grad();
    const DeformConv2dOptions opt = c.opt;
    CHECK_GRADIENTS([opt](V t) { return deform_conv2d(t[0], t[1], t[2], t[3], t[4], opt); },
                    {p.x, p.offset, p.w, p.b, p.mask});
    CHECK_GRADIENTS([opt](V t) { return deform_conv2d(t[0], t[1], t[2], Tensor(), Tensor(), opt); },
                    {p.x, p.offset, p.w});  // v1, no bias
  }
  // The reference's own backward is checked too, so that fast == reference means both are right.
  Problem p = make_problem(rng, 2, 4, 2, 5, 4, 3, 3, options(2, 1, 1, 2, 2), true);
  for (Tensor* t : {&p.x, &p.offset, &p.w, &p.b, &p.mask}) t->set_requires_grad();
  const DeformConv2dOptions opt = p.opt;
  CHECK_GRADIENTS([opt](V t) { return deform_conv2d_reference(t[0], t[1], t[2], t[3], t[4], opt); },
                  {p.x, p.offset, p.w, p.b, p.mask});
}

TEST_CASE("deform_conv: one input requiring grad gets the same gradient as when all do, and only it") {
  // The backward takes different paths depending on which gradients are needed (e.g. grad weight alone re-runs
  // the plain deformable im2col); each must agree with the all-inputs run of the reference.
  Rng rng(16);
  Problem p = make_problem(rng, 3, 4, 2, 5, 6, 3, 3, options(1, 1, 1, 2, 2), true);
  std::vector<Tensor> all = {p.x.clone(), p.offset.clone(), p.w.clone(), p.b.clone(), p.mask.clone()};
  for (Tensor& t : all) t.set_requires_grad();
  Tensor seed = Tensor::randn({3, 2, 5, 6}, rng);
  deform_conv2d_reference(all[0], all[1], all[2], all[3], all[4], p.opt).backward(seed);
  const char* names[] = {"input", "offset", "weight", "bias", "mask"};
  for (size_t only = 0; only < all.size(); ++only) {
    INFO("only " << std::string(names[only]) << " requires grad");
    std::vector<Tensor> in = {p.x.clone(), p.offset.clone(), p.w.clone(), p.b.clone(), p.mask.clone()};
    in[only].set_requires_grad();
    deform_conv2d(in[0], in[1], in[2], in[3], in[4], p.opt).backward(seed);
    for (size_t k = 0; k < in.size(); ++k) CHECK(in[k].has_grad() == (k == only));
    CHECK(max_abs_diff(in[only].grad(), all[only].grad()) < 1e-4f);
  }
}

TEST_CASE("deform_conv: bad shapes name the op and the shapes") {
  Tensor x({2, 4, 8, 8}), w({6, 4, 3, 3}), b({6});
  Tensor offset({2, 18, 6, 6}), mask({2, 9, 6, 6});
  DeformConv2dOptions opt;
  CHECK(deform_conv2d(x, offset, w, b, mask, opt).shape() == Shape{2, 6, 6, 6});  // the consistent set is fine
  CHECK_THROWS_NAMING(deform_conv2d(x, Tensor({2, 16, 6, 6}), w, b, mask, opt), "deform_conv2d",
                      "offset has 16 channels", "= 18", "[2, 16, 6, 6]");
  CHECK_THROWS_NAMING(deform_conv2d(x, Tensor({2, 18, 8, 8}), w, b, mask, opt), "deform_conv2d", "8x8", "6x6",
                      "[2, 18, 8, 8]");
  CHECK_THROWS_NAMING(deform_conv2d(x, Tensor({3, 18, 6, 6}), w, b, mask, opt), "deform_conv2d", "batch",
                      "[3, 18, 6, 6]");
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, w, b, Tensor({2, 18, 6, 6}), opt), "deform_conv2d", "mask",
                      "[2, 18, 6, 6]", "[2, 9, 6, 6]");
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, w, b, Tensor({2, 9, 5, 6}), opt), "deform_conv2d", "mask", "5x6");
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, Tensor({6, 3, 3, 3}), b, mask, opt), "deform_conv2d",
                      "input has 4 channels but weight expects 3", "[2, 4, 8, 8]", "[6, 3, 3, 3]");
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, w, Tensor({5}), mask, opt), "deform_conv2d", "bias", "[5]");
  CHECK_THROWS_NAMING(deform_conv2d(Tensor({4, 8, 8}), offset, w, b, mask, opt), "deform_conv2d", "[4, 8, 8]");
  DeformConv2dOptions three_groups;
  three_groups.offset_groups = 3;
  CHECK_THROWS_NAMING(deform_conv2d(x, Tensor({2, 54, 6, 6}), w, b, Tensor(), three_groups), "deform_conv2d",
                      "offset_groups 3", "[2, 4, 8, 8]");
  DeformConv2dOptions groups3;
  groups3.groups = 3;
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, Tensor({6, 1, 3, 3}), b, mask, groups3), "deform_conv2d", "groups 3");
  CHECK_THROWS_NAMING(deform_conv2d(Tensor({2, 4, 1, 1}), Tensor({2, 18, 1, 1}), w, b, Tensor(), opt), "deform_conv2d",
                      "larger than the padded input", "[2, 4, 1, 1]");
  DeformConv2dOptions zero_stride;
  zero_stride.stride_h = 0;
  CHECK_THROWS_NAMING(deform_conv2d(x, offset, w, b, mask, zero_stride), "deform_conv2d", "stride 0x1");
  CHECK_THROWS_NAMING(deform_conv2d(Tensor({0, 4, 8, 8}), Tensor({0, 18, 6, 6}), w, b, Tensor(), opt),
                      "deform_conv2d", "empty", "[0, 4, 8, 8]");
  CHECK_THROWS_NAMING(deform_conv2d_reference(x, Tensor({2, 16, 6, 6}), w, b, mask, opt), "deform_conv2d_reference",
                      "[2, 16, 6, 6]");
}
