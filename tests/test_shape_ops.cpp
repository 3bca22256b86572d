// Shape ops: storage sharing, permutations against the naive reference, slice/concat round trips, padding modes
// against hand-written arrays, gradient checks (pad's backward accumulates), bad-input errors.
#include <doctest/doctest.h>

#include <numeric>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

Tensor random_tensor(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  return Tensor::randn(s, rng);
}

std::vector<float> values(std::initializer_list<float> v) { return std::vector<float>(v); }

}  // namespace

TEST_CASE("shape_ops: reshape shares storage, infers -1, and its relatives") {
  Tensor x = Tensor::arange(24);
  Tensor r = reshape(x, {2, -1, 4});
  CHECK(r.shape() == Shape{2, 3, 4});
  r.data()[5] = 100;  // writes through to x
  CHECK(x.data()[5] == 100);
  CHECK(r.impl()->data == x.impl()->data);
  CHECK(reshape(x, {24}).shape() == Shape{24});
  Tensor img({8, 3, 5, 7});
  CHECK(flatten(img).shape() == Shape{8, 105});
  CHECK(flatten(img, 0).shape() == Shape{840});
  CHECK(flatten(img, -2).shape() == Shape{8, 3, 35});
  CHECK(unsqueeze(img, 0).shape() == Shape{1, 8, 3, 5, 7});
  CHECK(unsqueeze(img, -1).shape() == Shape{8, 3, 5, 7, 1});
  CHECK(unsqueeze(img, 2).shape() == Shape{8, 3, 1, 5, 7});
  CHECK(squeeze(Tensor({4, 1, 3}), 1).shape() == Shape{4, 3});
  CHECK(squeeze(Tensor({4, 3, 1}), -1).shape() == Shape{4, 3});
}

TEST_CASE("shape_ops: reshape-family gradients") {
  Tensor x = random_tensor({3, 5, 7}, 1).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return reshape(t[0], {5, -1}); }, {x});
  CHECK_GRADIENTS([](V t) { return flatten(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return squeeze(unsqueeze(t[0], 1), -3); }, {x});
  // Fan-out through a view: y = x + reshape(x) must give gradient 2 everywhere.
  Tensor a = Tensor::from({2, 2}, {1, 2, 3, 4}).set_requires_grad();
  Tensor twice = sum(a) + sum(reshape(a, {4}));
  twice.backward();
  CHECK(a.grad().to_vector() == values({2, 2, 2, 2}));
  // A view's gradient is its input's buffer (autograd's make_gradient): a chain of views, two views of one tensor
  // accumulating into it, a second backward adding to the gradient the first left, and a view as the tensor
  // backward() starts from (it has its own buffer, and its backward adds it to the input's).
  Tensor b = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}).set_requires_grad();
  for (int call = 1; call <= 2; ++call) {
    Tensor loss = sum(mul(reshape(flatten(b, 0), {3, 2}), 2.0f)) + sum(mul(unsqueeze(b, 0), 3.0f));
    loss.backward();
    CHECK(b.grad().to_vector() == std::vector<float>(6, 5.0f * static_cast<float>(call)));
  }
  reshape(b, {3, 2}).backward(Tensor::from({3, 2}, {1, 2, 3, 4, 5, 6}));
  CHECK(b.grad().to_vector() == values({11, 12, 13, 14, 15, 16}));
}

TEST_CASE("shape_ops: permute matches the naive reference, round-trips, and transposes") {
  const Shape s{2, 3, 4, 5};
  Tensor x = random_tensor(s, 2);
  std::vector<int> order{0, 1, 2, 3};
  do {  // all 24 permutations of a 4-d tensor
    Tensor fast = permute(x, order), ref = permute_reference(x, order);
    REQUIRE(fast.shape() == ref.shape());
    CHECK(fast.to_vector() == ref.to_vector());
    std::vector<int> inverse(4);
    for (int k = 0; k < 4; ++k) inverse[static_cast<size_t>(order[static_cast<size_t>(k)])] = k;
    CHECK(permute(fast, inverse).to_vector() == x.to_vector());
  } while (std::next_permutation(order.begin(), order.end()));
  // Not vacuous: a real permutation moves values.
  CHECK(permute(x, {0, 2, 1, 3}).to_vector() != x.to_vector());
  // Size-1 axes, 6 dims, negative axes, and a tensor large enough for the parallel path.
  Tensor y = random_tensor({2, 1, 4, 3}, 3);
  CHECK(permute(y, {3, -3, 0, 2}).to_vector() == permute_reference(y, {3, 1, 0, 2}).to_vector());
  Tensor z = random_tensor({2, 3, 1, 2, 3, 2}, 4);
  CHECK(permute(z, {5, 3, 0, 4, 2, 1}).to_vector() == permute_reference(z, {5, 3, 0, 4, 2, 1}).to_vector());
  Tensor big = random_tensor({8, 16, 32, 12}, 5);
  CHECK(permute(big, {0, 2, 3, 1}).to_vector() == permute_reference(big, {0, 2, 3, 1}).to_vector());
  // transpose of [[1, 2, 3], [4, 5, 6]]
  Tensor m = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(transpose(m, 0, 1).shape() == Shape{3, 2});
  CHECK(transpose(m, -1, 0).to_vector() == values({1, 4, 2, 5, 3, 6}));
}

TEST_CASE("shape_ops: permute and transpose gradients") {
  Tensor x = random_tensor({3, 5, 7}, 6).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return permute(t[0], {2, 0, 1}); }, {x});
  CHECK_GRADIENTS([](V t) { return transpose(t[0], 0, -1); }, {x});
  Tensor y = random_tensor({2, 1, 4, 3}, 7).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return permute(t[0], {3, 1, 0, 2}); }, {y});
}

TEST_CASE("shape_ops: slice values, negative bounds, step, clamping") {
  Tensor x = Tensor::arange(10);
  CHECK(slice(x, 0, 1, 8, 3).to_vector() == values({1, 4, 7}));
  CHECK(slice(x, 0, -3, -1).to_vector() == values({7, 8}));
  CHECK(slice(x, -1, 7, 100).to_vector() == values({7, 8, 9}));  // end clamped as in Python
  CHECK(slice(x, 0, 5, 2).numel() == 0);
  // [[0..4], [5..9]] columns 0, 2, 4
  Tensor m = reshape(x, {2, 5});
  CHECK(slice(m, 1, 0, 5, 2).to_vector() == values({0, 2, 4, 5, 7, 9}));
  CHECK(slice(m, 0, 1, 2).to_vector() == values({5, 6, 7, 8, 9}));
  Tensor y = random_tensor({3, 5, 7}, 8).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return slice(t[0], 1, 1, -1, 2); }, {y});
  CHECK_GRADIENTS([](V t) { return slice(t[0], -1, -6, 7, 3); }, {y});
}

TEST_CASE("shape_ops: concat and stack values and round trips") {
  Tensor a = Tensor::from({2, 2}, {1, 2, 3, 4}), b = Tensor::from({2, 1}, {5, 6});
  CHECK(concat({a, b}, 1).to_vector() == values({1, 2, 5, 3, 4, 6}));
  CHECK(concat({a, a}, 0).to_vector() == values({1, 2, 3, 4, 1, 2, 3, 4}));
  CHECK(stack({a, a * 10.0f}, 0).shape() == Shape{2, 2, 2});
  CHECK(stack({a, a * 10.0f}, -1).to_vector() == values({1, 10, 2, 20, 3, 30, 4, 40}));
  CHECK(stack({a, a}, 1).to_vector() == values({1, 2, 1, 2, 3, 4, 3, 4}));
  // concat then slice gives back the parts, along a middle axis with odd sizes.
  Tensor p = random_tensor({2, 3, 5}, 9), q = random_tensor({2, 4, 5}, 10), r = random_tensor({2, 1, 5}, 11);
  Tensor c = concat({p, q, r}, -2);
  CHECK(c.shape() == Shape{2, 8, 5});
  CHECK(slice(c, 1, 0, 3).to_vector() == p.to_vector());
  CHECK(slice(c, 1, 3, 7).to_vector() == q.to_vector());
  CHECK(slice(c, 1, 7, 8).to_vector() == r.to_vector());
  Tensor st = stack({p, p * 2.0f, p * 3.0f}, 3);
  CHECK(st.shape() == Shape{2, 3, 5, 3});
  CHECK(slice(st, 3, 1, 2).to_vector() == (p * 2.0f).to_vector());
}

TEST_CASE("shape_ops: concat and stack gradients, including an input without grad") {
  Tensor p = random_tensor({2, 3, 5}, 12).set_requires_grad(), q = random_tensor({2, 4, 5}, 13).set_requires_grad();
  Tensor frozen = random_tensor({2, 2, 5}, 14);
  CHECK_GRADIENTS([](V t) { return concat({t[0], t[1], t[2]}, 1); }, {p, q, frozen});
  Tensor r = random_tensor({2, 3, 5}, 15).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return stack({t[0], t[1]}, -1); }, {p, r});
  CHECK_GRADIENTS([](V t) { return stack({t[0], t[1], t[0]}, 0); }, {p, r});  // p used twice: fan-out
}

TEST_CASE("shape_ops: pad modes against hand-written arrays") {
  Tensor x = Tensor::from({3}, {1, 2, 3});
  CHECK(pad(x, 0, 2, 2, PadMode::Reflect).to_vector() == values({3, 2, 1, 2, 3, 2, 1}));
  CHECK(pad(x, 0, 2, 2, PadMode::Replicate).to_vector() == values({1, 1, 1, 2, 3, 3, 3}));
  CHECK(pad(x, 0, 2, 2, PadMode::Circular).to_vector() == values({2, 3, 1, 2, 3, 1, 2}));
  CHECK(pad(x, 0, 1, 2, PadMode::Zeros).to_vector() == values({0, 1, 2, 3, 0, 0}));
  CHECK(pad(x, 0, 0, 1, PadMode::Reflect).to_vector() == values({1, 2, 3, 2}));
  CHECK(pad(x, 0, 3, 3, PadMode::Circular).to_vector() == values({1, 2, 3, 1, 2, 3, 1, 2, 3}));  // pad == size is fine
  // Padding the first axis of [[1, 2], [3, 4], [5, 6]] moves whole rows.
  Tensor m = Tensor::from({3, 2}, {1, 2, 3, 4, 5, 6});
  CHECK(pad(m, 0, 1, 1, PadMode::Reflect).to_vector() == values({3, 4, 1, 2, 3, 4, 5, 6, 3, 4}));
  // pad2d reflect of [[1, 2, 3], [4, 5, 6]] by 1 on every side.
  Tensor img = Tensor::from({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor padded = pad2d(img, 1, 1, 1, 1, PadMode::Reflect);
  CHECK(padded.shape() == Shape{1, 1, 4, 5});
  CHECK(padded.to_vector() == values({5, 4, 5, 6, 5,  //
                                      2, 1, 2, 3, 2,  //
                                      5, 4, 5, 6, 5,  //
                                      2, 1, 2, 3, 2}));
  CHECK(pad2d(img, 0, 1, 2, 0, PadMode::Zeros).to_vector() == values({0, 0, 1, 2, 3,  //
                                                                       0, 0, 4, 5, 6,  //
                                                                       0, 0, 0, 0, 0}));
  CHECK(pad2d(img, 1, 0, 0, 1, PadMode::Circular).to_vector() == values({4, 5, 6, 4,  //
                                                                         1, 2, 3, 1,  //
                                                                         4, 5, 6, 4}));
}

TEST_CASE("shape_ops: pad backward accumulates every source contribution") {
  // reflect [1, 2, 3] by 2 reads cells [2, 1, 0, 1, 2, 1, 0]: cell 0 twice, cell 1 three times, cell 2 twice.
  Tensor x = Tensor::from({3}, {1, 2, 3}).set_requires_grad();
  sum(pad(x, 0, 2, 2, PadMode::Reflect)).backward();
  CHECK(x.grad().to_vector() == values({2, 3, 2}));
  x.zero_grad();
  sum(pad(x, 0, 2, 2, PadMode::Replicate)).backward();  // [0, 0, 0, 1, 2, 2, 2]
  CHECK(x.grad().to_vector() == values({3, 1, 3}));
  x.zero_grad();
  sum(pad(x, 0, 2, 2, PadMode::Circular)).backward();  // [1, 2, 0, 1, 2, 0, 1]
  CHECK(x.grad().to_vector() == values({2, 3, 2}));
  x.zero_grad();
  sum(pad(x, 0, 2, 2, PadMode::Zeros)).backward();
  CHECK(x.grad().to_vector() == values({1, 1, 1}));
}

TEST_CASE("shape_ops: pad and pad2d equal the naive reference; gradient checks in every mode") {
  Tensor x = random_tensor({2, 5, 7}, 16);
  Tensor img = random_tensor({2, 3, 4, 5}, 17).set_requires_grad();
  for (PadMode mode : {PadMode::Zeros, PadMode::Reflect, PadMode::Replicate, PadMode::Circular}) {
    INFO("mode " << pad_mode_name(mode));
    for (int axis : {0, 1, -1}) {
      const int64_t before = axis == 0 ? 1 : 3, after = axis == 0 ? 0 : 4;
      CHECK(pad(x, axis, before, after, mode).to_vector() == pad_reference(x, axis, before, after, mode).to_vector());
    }
    // pad2d is one fused pass; the reference pads the two axes one after the other.
    Tensor fused = pad2d(img, 2, 1, 3, 0, mode);
    Tensor two_step = pad_reference(pad_reference(img, 2, 2, 1, mode), 3, 3, 0, mode);
    CHECK(fused.to_vector() == two_step.to_vector());
    CHECK_GRADIENTS([mode](V t) { return pad2d(t[0], 2, 1, 3, 0, mode); }, {img});
    CHECK_GRADIENTS([mode](V t) { return pad(t[0], -2, 3, 2, mode); }, {img});
    CHECK_GRADIENTS([mode](V t) { return pad(t[0], 1, 0, 2, mode); }, {img});
  }
  // Large enough for the parallel path.
  Tensor big = random_tensor({16, 8, 30, 30}, 18);
  CHECK(pad2d(big, 2, 2, 2, 2, PadMode::Reflect).to_vector() ==
        pad_reference(pad_reference(big, 2, 2, 2, PadMode::Reflect), 3, 2, 2, PadMode::Reflect).to_vector());
}

TEST_CASE("shape_ops: pad mode names and the border index rule") {
  for (PadMode mode : {PadMode::Zeros, PadMode::Reflect, PadMode::Replicate, PadMode::Circular})
    CHECK(parse_pad_mode(pad_mode_name(mode)) == mode);
  CHECK_THROWS_NAMING(parse_pad_mode("mirror"), "parse_pad_mode", "mirror", "zeros", "reflect", "replicate",
                      "circular");
  // Axis of 4 cells a b c d.
  CHECK(pad_source_index(-1, 4, PadMode::Zeros) == -1);
  CHECK(pad_source_index(2, 4, PadMode::Zeros) == 2);
  CHECK(pad_source_index(-3, 4, PadMode::Replicate) == 0);
  CHECK(pad_source_index(9, 4, PadMode::Replicate) == 3);
  CHECK(pad_source_index(-1, 4, PadMode::Circular) == 3);
  CHECK(pad_source_index(9, 4, PadMode::Circular) == 1);
  CHECK(pad_source_index(-2, 4, PadMode::Reflect) == 2);
  CHECK(pad_source_index(4, 4, PadMode::Reflect) == 2);
  CHECK(pad_source_index(7, 4, PadMode::Reflect) == 1);  // a b c d c b | a b: periodic beyond one reflection
  CHECK(pad_source_index(5, 1, PadMode::Reflect) == 0);
}

TEST_CASE("shape_ops: bad input names the op and the shapes") {
  Tensor x({2, 3});
  CHECK_THROWS_NAMING(reshape(x, {4, 2}), "reshape", "[2, 3]", "[4, 2]");
  CHECK_THROWS_NAMING(reshape(x, {-1, -1}), "reshape", "-1", "[2, 3]");
  CHECK_THROWS_NAMING(reshape(x, {4, -1}), "reshape", "[2, 3]");
  CHECK_THROWS_NAMING(reshape(x, {-2, -3}), "reshape", "negative");
  CHECK_THROWS_NAMING(flatten(x, 2), "flatten", "[2, 3]");
  CHECK_THROWS_NAMING(unsqueeze(x, 3), "unsqueeze", "[2, 3]");
  CHECK_THROWS_NAMING(squeeze(x, 1), "squeeze", "size 3", "[2, 3]");
  CHECK_THROWS_NAMING(permute(x, {0, 0}), "permute", "[0, 0]", "[2, 3]");
  CHECK_THROWS_NAMING(permute(x, {1, 0, 2}), "permute", "[1, 0, 2]", "[2, 3]");
  CHECK_THROWS_NAMING(permute(x, {0, 2}), "permute", "[2, 3]");
  CHECK_THROWS_NAMING(transpose(x, 0, 2), "transpose", "[2, 3]");
  CHECK_THROWS_NAMING(slice(x, 2, 0, 1), "slice", "[2, 3]");
  CHECK_THROWS_NAMING(slice(x, 1, 0, 3, 0), "slice", "step", "[2, 3]");
  CHECK_THROWS_NAMING(concat({x, Tensor({3, 3})}, 1), "concat", "[3, 3]", "[2, 3]");
  CHECK_THROWS_NAMING(concat({x, Tensor({2, 3, 1})}, 0), "concat", "[2, 3, 1]", "[2, 3]");
  CHECK_THROWS_NAMING(concat({}, 0), "concat");
  CHECK_THROWS_NAMING(stack({x, Tensor({3, 2})}, 0), "stack", "[3, 2]", "[2, 3]");
  CHECK_THROWS_NAMING(stack({x}, 3), "stack", "[2, 3]");
  CHECK_THROWS_NAMING(pad(x, 1, 3, 0, PadMode::Reflect), "pad", "reflect", "[2, 3]");
  CHECK_THROWS_NAMING(pad(x, 1, 0, 4, PadMode::Circular), "pad", "circular", "[2, 3]");
  CHECK_THROWS_NAMING(pad(x, 0, -1, 0, PadMode::Zeros), "pad", "negative", "[2, 3]");
  CHECK_THROWS_NAMING(pad2d(x, 2, 0, 0, 0, PadMode::Reflect), "pad2d", "reflect", "[2, 3]");
  CHECK_THROWS_NAMING(pad2d(Tensor({5}), 1, 1, 1, 1, PadMode::Zeros), "pad2d", "[5]");
}
