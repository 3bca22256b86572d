// augment/: shifts (integer vs reference, sub-pixel vs an independent blend, gradients), affine warps and their
// inverses, rotations (conventions against rot90), deformation fields and ||grad tau||, Warp factories, and the
// EquivariantAugmentation wrapper (warp -> net -> unwarp) including its gradients.
#include <doctest/doctest.h>

#include <cmath>

#include "augment/affine.h"
#include "augment/deformation.h"
#include "augment/equivariant_wrapper.h"
#include "augment/rotation.h"
#include "augment/shift.h"
#include "augment/warp.h"
#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/conv2d.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

namespace {

// A smooth image batch [n, c, h, w]: low-frequency sines with a per-plane phase, so interpolation is accurate.
Tensor smooth_images(int64_t n, int64_t c, int64_t h, int64_t w) {
  Tensor x({n, c, h, w});
  for (int64_t p = 0; p < n * c; ++p)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        x.data()[(p * h + i) * w + j] = std::sin(0.15f * static_cast<float>(i) + 0.7f * static_cast<float>(p)) *
                                        std::cos(0.12f * static_cast<float>(j) - 0.4f * static_cast<float>(p));
  return x;
}

// Largest |a - b| over the pixels at least `margin` away from the border of the last two axes.
float interior_max_diff(const Tensor& a, const Tensor& b, int64_t margin) {
  REQUIRE(a.shape() == b.shape());
  const int64_t h = a.size(-2), w = a.size(-1), planes = a.numel() / (h * w);
  float m = 0;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = margin; i < h - margin; ++i)
      for (int64_t j = margin; j < w - margin; ++j) {
        const int64_t k = (p * h + i) * w + j;
        m = std::max(m, std::fabs(a.data()[k] - b.data()[k]));
      }
  return m;
}

Tensor matmul_affine(const float* a, const float* b) {  // (a o b) of two 2x3 maps as 3x3 with last row 0 0 1
  Tensor out({1, 2, 3});
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 3; ++c) out.data()[r * 3 + c] = a[r * 3] * b[c] + a[r * 3 + 1] * b[3 + c];
    out.data()[r * 3 + 2] += a[r * 3 + 2];
  }
  return out;
}

}  // namespace

TEST_CASE("augment shift: integer translation by hand, both borders") {
  Tensor x = Tensor::from({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(translate_int(x, {0}, {1}, ShiftPadding::Zeros).to_vector() == std::vector<float>{0, 1, 2, 0, 4, 5});
  CHECK(translate_int(x, {0}, {1}, ShiftPadding::Circular).to_vector() == std::vector<float>{3, 1, 2, 6, 4, 5});
  CHECK(translate_int(x, {-1}, {-1}, ShiftPadding::Zeros).to_vector() == std::vector<float>{5, 6, 0, 0, 0, 0});
  CHECK(translate_int(x, {5}, {0}, ShiftPadding::Zeros).to_vector() == std::vector<float>(6, 0.0f));
}

TEST_CASE("augment shift: zero-padded kernel matches the reference, per sample, rank 4 and 5") {
  Rng rng(11);
  for (const Shape& shape : {Shape{3, 2, 5, 7}, Shape{2, 3, 4, 6, 5}, Shape{4, 1, 1, 9}}) {
    Tensor x = Tensor::randn(shape, rng);
    const int64_t n = shape[0];
    std::vector<int> dy, dx;
    for (int s = 0; s < static_cast<int>(n); ++s) dy.push_back(s * 2 - 3), dx.push_back(4 - s * 3);
    INFO("shape " << shape_str(shape));
    CHECK(max_abs_diff(translate_int(x, dy, dx, ShiftPadding::Zeros), translate_int_reference(x, dy, dx)) == 0.0f);
    CHECK(max_abs_diff(translate_int(x, dy, dx, ShiftPadding::Circular), roll(x, dy, dx)) == 0.0f);
  }
}

TEST_CASE("augment shift: gradients of integer and sub-pixel translations") {
  Rng rng(5);
  Tensor x = Tensor::randn({2, 3, 5, 6}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return translate_int(t[0], {1, -2}, {-3, 2}, ShiftPadding::Zeros); }, {x});
  CHECK_GRADIENTS([](V t) { return translate(t[0], {0.3f, -1.6f}, {2.25f, 0}, ShiftPadding::Circular); }, {x});
  CHECK_GRADIENTS([](V t) { return translate(t[0], {0.3f, -1.6f}, {2.25f, 0}, ShiftPadding::Zeros); }, {x});
  Tensor p4 = Tensor::randn({2, 1, 4, 5, 5}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return translate(t[0], {0.5f, 1.0f}, {-0.5f, 0.25f}, ShiftPadding::Zeros); }, {p4});
}

TEST_CASE("augment shift: sub-pixel shifts are bilinear blends of integer shifts") {
  // Circular by hand: [0, 1, 0, 0] moved right by 0.5 spreads the 1 over its old and new place.
  Tensor row = Tensor::from({1, 1, 1, 4}, {0, 1, 0, 0});
  CHECK(translate(row, {0}, {0.5f}, ShiftPadding::Circular).to_vector() == std::vector<float>{0, 0.5f, 0.5f, 0});
  CHECK(translate(row, {0}, {-1.25f}, ShiftPadding::Circular).to_vector() ==
        std::vector<float>{0.75f, 0, 0, 0.25f});
  // Zeros (affine_grid + grid_sample) against the independent blend of exact integer zero shifts.
  Rng rng(3);
  Tensor x = Tensor::randn({2, 2, 6, 7}, rng);
  const std::vector<float> dy = {1.25f, -0.5f}, dx = {-2.75f, 0.4f};
  Tensor blend = Tensor::zeros(x.shape());
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      std::vector<int> iy, ix;
      std::vector<float> weight;
      for (size_t s = 0; s < 2; ++s) {
        const float fy = std::floor(dy[s]), fx = std::floor(dx[s]);
        iy.push_back(static_cast<int>(fy) + a), ix.push_back(static_cast<int>(fx) + b);
        weight.push_back((a ? dy[s] - fy : 1 - (dy[s] - fy)) * (b ? dx[s] - fx : 1 - (dx[s] - fx)));
      }
      blend = blend + translate_int(x, iy, ix, ShiftPadding::Zeros) * Tensor::from({2, 1, 1, 1}, weight);
    }
  CHECK(max_abs_diff(translate(x, dy, dx, ShiftPadding::Zeros), blend) < 1e-5f);
  // Integer values take the exact path; a wrong sign would fail these.
  CHECK(max_abs_diff(translate(x, {2.0f, -1.0f}, {0.0f, 3.0f}, ShiftPadding::Zeros),
                     translate_int(x, {2, -1}, {0, 3}, ShiftPadding::Zeros)) == 0.0f);
  CHECK(max_abs_diff(translate(x, {0.5f, 0.5f}, {0, 0}, ShiftPadding::Circular),
                     translate(x, {-0.5f, -0.5f}, {0, 0}, ShiftPadding::Circular)) > 0.1f);
}

TEST_CASE("augment shift: random shifts are in range, cover it, and reproduce with the seed") {
  Rng a(9), b(9);
  const Shifts s = random_shifts(2000, 3, a), t = random_shifts(2000, 3, b);
  CHECK(s.dy == t.dy);
  CHECK(s.dx == t.dx);
  for (int v = -3; v <= 3; ++v) CHECK(std::count(s.dx.begin(), s.dx.end(), v) > 0);
  CHECK(*std::min_element(s.dy.begin(), s.dy.end()) == -3);
  CHECK(*std::max_element(s.dy.begin(), s.dy.end()) == 3);
  Rng c(1);
  Shifts drawn;
  Tensor x = Tensor::arange(2 * 16).set_requires_grad(false);
  Tensor img = reshape(x, {2, 1, 4, 4});
  Tensor moved = random_translate(img, 2, ShiftPadding::Circular, c, &drawn);
  CHECK(max_abs_diff(moved, roll(img, drawn.dy, drawn.dx)) == 0.0f);
}

TEST_CASE("augment shift: shift at a feature map's resolution uses its stride") {
  CHECK(shift_at_resolution(4, 28, 28) == 4.0f);
  CHECK(shift_at_resolution(4, 28, 14) == 2.0f);
  CHECK(shift_at_resolution(4, 28, 13) == 2.0f);  // "valid" stride-2 map
  CHECK(shift_at_resolution(1, 28, 7) == 0.25f);
  CHECK(shift_at_resolution(3, 14, 28) == 6.0f);  // upsampled decoder map
  CHECK_THROWS_NAMING(shift_at_resolution(1, 0, 3), "shift_at_resolution");
}

TEST_CASE("augment affine: inverse composes to the identity; singular maps are rejected") {
  Rng rng(2);
  const AffineWarp w = random_affine(5, rng, 0.3f);
  for (int64_t s = 0; s < 5; ++s) {
    const Tensor id = matmul_affine(w.theta.data() + s * 6, w.inverse_theta.data() + s * 6);
    CHECK(max_abs_diff(id, identity_theta(1)) < 1e-5f);
  }
  CHECK(max_abs_diff(random_affine(3, rng, 0.0f).theta, identity_theta(3)) == 0.0f);
  Tensor singular = Tensor::from({1, 2, 3}, {1, 2, 0, 2, 4, 0});
  CHECK_THROWS_NAMING(invert_affine(singular), "invert_affine", "singular");
  CHECK_THROWS_NAMING(invert_affine(Tensor::zeros({2, 3})), "invert_affine", "[2, 3]");
}

TEST_CASE("augment affine: probability 1 uses the inverse of the drawn map") {
  Rng a(4), b(4);
  const AffineWarp plain = random_affine(3, a, 0.1f, 0.0f), swapped = random_affine(3, b, 0.1f, 1.0f);
  CHECK(max_abs_diff(plain.theta, swapped.inverse_theta) == 0.0f);
  CHECK(max_abs_diff(plain.inverse_theta, swapped.theta) == 0.0f);
}

TEST_CASE("augment affine: unwarp of the warp is the identity on the interior, at any resolution") {
  Rng rng(8);
  const AffineWarp w = random_affine(3, rng);
  for (int64_t size : {32, 17}) {
    Tensor x = smooth_images(3, 2, size, size);
    INFO("size " << size);
    CHECK(interior_max_diff(w.unwarp(w.warp(x)), x, size / 4) < 0.03f);
    CHECK(interior_max_diff(w.warp(x), x, size / 4) > 0.03f);  // the warp did something
  }
  // Gradients flow to the input and to theta.
  Tensor x = Tensor::randn({2, 1, 5, 6}, rng).set_requires_grad();
  // The grid gradient has kinks at pixel centres, where near-identity maps sample: use generic maps, and a small
  // step (theta moves sample points by ~W/2 pixels per unit).
  Tensor th = Tensor::from({2, 2, 3}, {0.9f, 0.2f, 0.07f, -0.15f, 1.1f, -0.05f,  //
                                      0.8f, -0.3f, 0.11f, 0.25f, 0.95f, 0.13f})
                  .set_requires_grad();
  eq::testing::GradCheckOptions opt;
  opt.step = 1e-3;
  CHECK_GRADIENTS([](V t) { return warp_affine(t[0], t[1]); }, {x, th}, opt);
  CHECK_THROWS_NAMING(warp_affine(x, identity_theta(3)), "warp_affine", "[3, 2, 3]", "[2, 1, 5, 6]");
}

TEST_CASE("augment rotation: conventions agree with rot90, rigid on non-square canvases") {
  Rng rng(6);
  Tensor sq = Tensor::randn({2, 3, 7, 7}, rng);
  CHECK(max_abs_diff(rotate(sq, 90), rot90(sq, 1)) < 1e-4f);
  CHECK(max_abs_diff(rotate(sq, -90), rot90(sq, 3)) < 1e-4f);
  CHECK(max_abs_diff(rotate(sq, 0), sq) < 1e-4f);
  CHECK(max_abs_diff(rotate(sq, 90, SampleMode::Nearest), rot90(sq, 1)) == 0.0f);
  Tensor wide = Tensor::randn({1, 2, 5, 8}, rng);
  CHECK(max_abs_diff(rotate(wide, 180), rot90(wide, 2)) < 1e-4f);  // needs the aspect-ratio correction
  CHECK(max_abs_diff(rotate(sq, 45), sq) > 0.1f);
  Tensor xg = Tensor::randn({1, 2, 5, 6}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return rotate(t[0], 30); }, {xg});
}

TEST_CASE("augment rotation: the p4 action rotates maps and cycles the rotation axis") {
  Rng rng(1);
  Tensor y = Tensor::randn({2, 3, 4, 5, 5}, rng);
  const Tensor r1 = rotate_p4(y, 1);
  for (int r = 0; r < 4; ++r)
    CHECK(max_abs_diff(slice(r1, 2, r, r + 1), rot90(slice(y, 2, (r + 3) % 4, (r + 3) % 4 + 1), 1)) == 0.0f);
  CHECK(max_abs_diff(rotate_p4(rotate_p4(y, 3), 1), y) == 0.0f);
  CHECK(max_abs_diff(rotate_p4(y, -1), rotate_p4(y, 3)) == 0.0f);
  CHECK(max_abs_diff(rotate_p4(y, 2), rot90(y, 2)) > 0.1f);  // the axis shift matters
  CHECK_THROWS_NAMING(rotate_p4(Tensor::zeros({2, 3, 3, 5, 5}), 1), "rotate_p4", "[2, 3, 3, 5, 5]");
}

TEST_CASE("augment deformation: ||grad tau|| is 0 for zero and constant fields, exact on linear ones, linear") {
  Tensor zero = Tensor::zeros({2, 6, 7, 2});
  CHECK(displacement_gradient_norm(zero) == std::vector<float>{0, 0});
  Tensor constant = Tensor::full({1, 6, 7, 2}, 2.5f);
  CHECK(displacement_gradient_norm(constant)[0] == 0.0f);
  // tau_x = 0.1 j, tau_y = -0.2 i: Jacobian [[0.1, 0], [0, -0.2]], Frobenius sqrt(0.05) everywhere.
  Tensor linear({1, 6, 7, 2});
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 7; ++j) {
      linear.data()[(i * 7 + j) * 2] = 0.1f * static_cast<float>(j);
      linear.data()[(i * 7 + j) * 2 + 1] = -0.2f * static_cast<float>(i);
    }
  CHECK(displacement_gradient_norm(linear)[0] == doctest::Approx(std::sqrt(0.05)).epsilon(1e-5));
  Rng rng(3);
  Tensor tau = smooth_random_field(3, 12, 10, 2.0f, 0.2f, rng);
  const std::vector<float> g = displacement_gradient_norm(tau);
  for (float v : g) CHECK(v == doctest::Approx(0.2f).epsilon(1e-4));
  const std::vector<float> g3 = displacement_gradient_norm(tau * 3.0f);
  for (float v : g3) CHECK(v == doctest::Approx(0.6f).epsilon(1e-4));
  CHECK(displacement_gradient_norm(smooth_random_field(2, 8, 8, 1.5f, 0.0f, rng)) == std::vector<float>{0, 0});
  CHECK_THROWS_NAMING(displacement_gradient_norm(Tensor::zeros({1, 4, 4, 3})), "displacement_gradient_norm",
                      "[1, 4, 4, 3]");
}

TEST_CASE("augment deformation: deform moves content by tau and passes gradients to x and tau") {
  Rng rng(12);
  Tensor x = Tensor::randn({2, 3, 6, 7}, rng);
  CHECK(max_abs_diff(deform(x, Tensor::zeros({2, 6, 7, 2})), x) < 1e-4f);
  // A constant field (1, -2): content moves right 1 and up 2, i.e. the zero-padded integer shift.
  Tensor shift = Tensor::zeros({2, 6, 7, 2});
  for (int64_t k = 0; k < shift.numel(); k += 2) shift.data()[k] = 1.0f, shift.data()[k + 1] = -2.0f;
  CHECK(max_abs_diff(deform(x, shift), translate_int(x, {-2, -2}, {1, 1}, ShiftPadding::Zeros)) < 1e-4f);
  // Gradients; |tau| kept inside (0.2, 0.8) so finite differences do not cross pixel centres.
  Tensor xs = Tensor::randn({1, 2, 5, 6}, rng).set_requires_grad();
  Tensor tau = Tensor::uniform({1, 5, 6, 2}, rng, 0.2f, 0.8f).set_requires_grad();
  eq::testing::GradCheckOptions opt;
  opt.step = 1e-3;
  CHECK_GRADIENTS([](V t) { return deform(t[0], t[1]); }, {xs, tau}, opt);
  CHECK_THROWS_NAMING(deform(x, Tensor::zeros({2, 5, 7, 2})), "deform", "[2, 5, 7, 2]", "[2, 3, 6, 7]");
}

TEST_CASE("augment warp: inverses undo the warps (exact lattice moves, interior for resampling)") {
  Rng rng(21);
  Tensor x = Tensor::randn({3, 2, 8, 8}, rng);
  const Shifts s = random_shifts(3, 3, rng);
  const Warp roll_w = shift_warp(s, ShiftPadding::Circular, 8, 8);
  CHECK(max_abs_diff(roll_w.inverse(roll_w.apply(x)), x) == 0.0f);
  // On a stride-2 map an even shift becomes an exact half shift.
  const Warp even = shift_warp({{2, -4, 0}, {0, 2, 6}}, ShiftPadding::Circular, 8, 8);
  Tensor small = Tensor::randn({3, 4, 4, 4}, rng);
  CHECK(max_abs_diff(even.inverse(translate_int(small, {1, -2, 0}, {0, 1, 3}, ShiftPadding::Circular)), small) ==
        0.0f);
  const Warp quarter = rot90_warp(1);
  CHECK(max_abs_diff(quarter.inverse(quarter.apply(x)), x) == 0.0f);
  Tensor p4 = Tensor::randn({1, 2, 4, 5, 5}, rng);
  CHECK(max_abs_diff(quarter.inverse(rotate_p4(p4, 1)), p4) == 0.0f);
  Tensor smooth = smooth_images(2, 1, 24, 24);
  for (const Warp& w : {rotation_warp(20), rescale_warp(1.2f), fmicon_warp(2, 24, 24, rng)}) {
    INFO("warp " << w.name);
    CHECK(interior_max_diff(w.inverse(w.apply(smooth)), smooth, 6) < 0.05f);
  }
  const Warp no_inverse{"none", [](const Tensor& t) { return t; }, nullptr};
  CHECK_FALSE(compose(roll_w, no_inverse).has_inverse());
}

namespace {

// A module applying a fixed function: for wrapping plain ops in tests.
class Lambda : public Module {
 public:
  explicit Lambda(std::function<Tensor(const Tensor&)> f) : f_(std::move(f)) {}
  Tensor forward(const Tensor& x) override { return f_(x); }
  std::string name() const override { return "Lambda"; }

 private:
  std::function<Tensor(const Tensor&)> f_;
};

}  // namespace

TEST_CASE("augment wrapper: warp -> net -> unwarp, registered parameters, eval mode, exact for equivariant nets") {
  Rng rng(31);
  auto conv = std::make_shared<Conv2d>(2, 3, 3, rng, same_padding(3, PadMode::Circular));
  const Shifts s{{1, -3}, {2, 0}};
  EquivariantAugmentation wrapped(conv, [s](const Tensor& x) {
    return shift_warp(s, ShiftPadding::Circular, x.size(2), x.size(3));
  });
  CHECK(wrapped.parameters().size() == 2);
  CHECK(wrapped.named_parameters()[0].first == "net.weight");
  Tensor x = Tensor::randn({2, 2, 7, 6}, rng);
  NoGrad no_grad;
  // A circular conv commutes with roll, so unwarp(net(warp x)) = net(x) exactly.
  CHECK(max_abs_diff(wrapped(x), (*conv)(x)) < 1e-5f);
  CHECK(wrapped.last_warp().name == "shift(circular)");
  // A net that is not shift-equivariant: the wrapper's output differs from net(x) in training, equals it in eval.
  auto flip = std::make_shared<Lambda>([](const Tensor& t) { return flip_h(t); });
  EquivariantAugmentation flipped(flip, [s](const Tensor& t) { return shift_warp(s, ShiftPadding::Circular, 7, 6); });
  CHECK(max_abs_diff(flipped(x), flip_h(x)) > 0.1f);
  flipped.eval();
  CHECK(max_abs_diff(flipped(x), flip_h(x)) == 0.0f);
  const Warp one_way{"oneway", [](const Tensor& t) { return t; }, nullptr};
  EquivariantAugmentation broken(conv, [one_way](const Tensor&) { return one_way; });
  CHECK_THROWS_NAMING(broken(x), "EquivariantAugmentation", "oneway", "[2, 2, 7, 6]");
}

TEST_CASE("augment wrapper: gradients reach the net's parameters and the input (gradcheck)") {
  Rng rng(41);
  auto conv = std::make_shared<Conv2d>(1, 2, 3, rng);  // zero padding: not exactly equivariant, still differentiable
  const AffineWarp affine = random_affine(2, rng, 0.1f);
  const Shifts s{{1, 0}, {-1, 2}};
  EquivariantAugmentation wrapped(conv, [&](const Tensor& x) {
    return compose(affine_warp(affine), shift_warp(s, ShiftPadding::Circular, x.size(2), x.size(3)));
  });
  Tensor x = Tensor::randn({2, 1, 6, 5}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V t) { return wrapped(t[0]); }, {x, conv->weight, conv->bias});
  // And backward() through the wrapper fills the parameters' .grad.
  wrapped.zero_grad();
  sum(square(wrapped(x))).backward();
  CHECK(conv->weight.has_grad());
  float norm = 0;
  for (float v : conv->weight.grad().to_vector()) norm += v * v;
  CHECK(norm > 0);
}
