// The FMICON evaluation module (apps/fmicon/evaluate.cpp): the warp's ground truth reproduces A's coordinates,
// features that identify every pixel score PCK and J near 100%, constant features score near chance, the collapse
// diagnostic separates positional from content features, pictures are written, and bad input is named.
//
// The app's sources are not part of libequilab.a, so the module is compiled here. Photos are synthetic.
#include <doctest/doctest.h>

#include <filesystem>

#include "apps/fmicon/evaluate.cpp"
#include "engine/blur.h"
#include "engine/image_io.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

// Smooth random photos [C, H, W]: white noise blurred with std `blur` px, so every pixel has a distinctive
// C-dimensional value that changes smoothly (what bilinear warping reproduces well).
std::vector<Tensor> smooth_photos(int count, int64_t channels, int64_t h, int64_t w, float blur, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> photos;
  for (int i = 0; i < count; ++i) {
    Tensor noise = gaussian_blur(Tensor::randn({channels, h, w}, rng), blur);
    photos.push_back(noise.clone());
  }
  return photos;
}

CorrespondenceOptions small_options(int64_t count, int64_t size, uint64_t seed) {
  CorrespondenceOptions o;
  o.count = count;
  o.size = size;
  o.seed = seed;
  return o;
}

}  // namespace

TEST_CASE("fmicon_eval: the ground truth maps every valid pixel of A onto its content in B") {
  // A photo whose two channels are its own pixel coordinates (x / 64, y / 64); A is the whole photo (no crop
  // offset). Reading B bilinearly at target(p) must give back p's coordinates.
  const int64_t size = 48;
  Tensor photo({2, size, size});
  for (int64_t i = 0; i < size; ++i)
    for (int64_t j = 0; j < size; ++j) {
      photo.data()[i * size + j] = float(j) / 64;
      photo.data()[(size + i) * size + j] = float(i) / 64;
    }
  CorrespondenceOptions o = small_options(4, size, 7);
  o.affine_sigma = 0.1f;
  o.elastic_gradient = 0.2f;
  const CorrespondenceSet set = make_correspondence_set({photo}, o);
  REQUIRE(set.b.shape() == Shape{4, 2, size, size});
  // Sample B at the targets (pixel -> normalised coordinates, align_corners = false).
  Tensor grid({4, size, size, 2});
  for (int64_t i = 0; i < grid.numel(); ++i) grid.data()[i] = (2 * set.target.data()[i] + 1) / size - 1;
  const Tensor read_back = grid_sample(set.b, grid);
  double worst = 0, displacement = 0;
  int64_t valid = 0;
  for (int64_t s = 0; s < 4; ++s)
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) {
        const int64_t at = (s * size + i) * size + j;
        if (set.valid.data()[at] <= 0) continue;
        ++valid;
        const float x = read_back.data()[((s * 2 + 0) * size + i) * size + j] * 64;
        const float y = read_back.data()[((s * 2 + 1) * size + i) * size + j] * 64;
        worst = std::max(worst, std::hypot(x - double(j), y - double(i)));
        displacement += std::hypot(set.target.data()[at * 2] - double(j), set.target.data()[at * 2 + 1] - double(i));
        // The source map M sends the target back to p (checked on the nearest B pixel: |grad M| ~ 1.3).
        const int64_t qx = std::lround(set.target.data()[at * 2]), qy = std::lround(set.target.data()[at * 2 + 1]);
        const float* src = set.source.data() + ((s * size + qy) * size + qx) * 2;
        CHECK(std::hypot(src[0] - double(j), src[1] - double(i)) < 1.0);
      }
  INFO("valid " << valid << ", worst error " << worst << " px");
  CHECK(valid > 4 * size * size / 2);             // most of A is still seen in B
  CHECK(displacement / valid > 1.0);              // ...and the warp is far from the identity
  CHECK(worst < 0.05);                            // bilinear reading of a near-linear map: tiny error
  // Labels: labels_b at the nearest B pixel of the target is p's label, except in a ~1 px band along the Voronoi
  // edges (rounding t moves the source by up to ~0.9 px); a wrong carry would agree ~1 / regions of the time.
  int64_t agree = 0, compared = 0;
  for (int64_t s = 0; s < 4; ++s)
    for (int64_t i = 0; i < size * size; ++i) {
      const int64_t at = s * size * size + i;
      if (set.valid.data()[at] <= 0) continue;
      const int64_t qx = std::lround(set.target.data()[at * 2]), qy = std::lround(set.target.data()[at * 2 + 1]);
      const float lb = set.labels_b.data()[(s * size + qy) * size + qx];
      ++compared, agree += lb == set.labels_a.data()[at];
    }
  CHECK(double(agree) / compared > 0.85);
  // B pixels whose source leaves A are invalid and unlabelled.
  for (int64_t i = 0; i < set.valid_b.numel(); ++i)
    if (set.valid_b.data()[i] <= 0) CHECK(set.labels_b.data()[i] == -1.0f);
}

TEST_CASE("fmicon_eval: identity warp with distinctive pixels gives PCK = J = 100%") {
  CorrespondenceOptions o = small_options(3, 32, 1);
  o.affine_sigma = o.translation_sigma = o.elastic_gradient = 0;
  Rng rng(2);
  const std::vector<Tensor> photos = {Tensor::randn({8, 40, 40}, rng)};  // white noise: every pixel unique
  const CorrespondenceSet set = make_correspondence_set(photos, o);
  CHECK(testing::max_abs_diff(set.a, set.b) < 1e-4f);
  const DenseEvalResult r = evaluate_dense_features(raw_pixel_features(), set);
  CHECK(r.pck1 == doctest::Approx(100.0));
  CHECK(r.label_iou == doctest::Approx(100.0));
}

TEST_CASE("fmicon_eval: features that carry the content through the warp score high; constant ones do not") {
  // Oracle: 8 smooth noise channels. B is A warped, so raw pixels of B at target(p) equal A's at p.
  const std::vector<Tensor> photos = smooth_photos(2, 8, 80, 80, 1.5f, 3);
  const CorrespondenceSet set = make_correspondence_set(photos, small_options(6, 48, 4));
  const DenseEvalResult oracle = evaluate_dense_features(raw_pixel_features(), set);
  INFO("oracle PCK " << oracle.pck1 << " / " << oracle.pck2 << " / " << oracle.pck4 << ", J " << oracle.label_iou
                     << ", collapse " << oracle.position_collapse);
  CHECK(oracle.pck1 > 80);
  CHECK(oracle.pck4 > 95);
  CHECK(oracle.pck1 <= oracle.pck2);
  CHECK(oracle.pck2 <= oracle.pck4);
  CHECK(oracle.label_iou > 75);  // softmax over 10 neighbours blurs region edges by ~1-2 px
  CHECK(oracle.position_collapse < 0.2);

  const FeatureFn constant = [](const Tensor& x) { return Tensor::ones({x.size(0), 4, x.size(2), x.size(3)}); };
  const DenseEvalResult flat = evaluate_dense_features(constant, set);
  INFO("constant PCK " << flat.pck4 << ", J " << flat.label_iou);
  CHECK(flat.pck4 < 5);
  CHECK(flat.label_iou < oracle.label_iou - 40);
  CHECK(flat.position_collapse == 1.0);
}

TEST_CASE("fmicon_eval: collapse is ~1 for features of position only and ~0 for content features") {
  const std::vector<Tensor> photos = smooth_photos(3, 3, 64, 64, 1.0f, 5);
  const CorrespondenceSet set = make_correspondence_set(photos, small_options(8, 32, 6));
  // Attempt 0's failure: a fixed vector per pixel position, whatever the image.
  Rng rng(9);
  // 32 random channels: every position's vector is far from all others, so its own position wins every vote.
  const Tensor pattern = Tensor::randn({1, 32, 32, 32}, rng);
  const FeatureFn positional = [&](const Tensor& x) {
    Tensor f({x.size(0), 32, 32, 32});
    for (int64_t s = 0; s < x.size(0); ++s)
      std::copy(pattern.data(), pattern.data() + pattern.numel(), f.data() + s * pattern.numel());
    return f;
  };
  const DenseEvalResult pos = evaluate_dense_features(positional, set);
  CHECK(pos.position_collapse == doctest::Approx(1.0).epsilon(1e-6));
  // Positional features cannot follow the warp: every pixel matches its own position, which is exactly the
  // set's "no motion" baseline (a random pattern has a unique best match, itself).
  CHECK(pos.pck4 == doctest::Approx(pos.pck4_no_motion));
  CHECK(pos.label_iou == doctest::Approx(pos.label_iou_no_motion));
  CHECK(pos.pck4_no_motion < 60);
  const DenseEvalResult raw = evaluate_dense_features(raw_pixel_features(), set);
  CHECK(raw.position_collapse < 0.2);
  CHECK(raw.position_collapse > -0.2);
  // A mix: 6 positional channels next to 3 content channels lands in between.
  const FeatureFn mixed = [&](const Tensor& x) {
    Tensor f({x.size(0), 9, 32, 32});
    for (int64_t s = 0; s < x.size(0); ++s) {
      std::copy(pattern.data(), pattern.data() + 6 * 32 * 32, f.data() + s * 9 * 32 * 32);
      for (int64_t i = 0; i < 3 * 32 * 32; ++i)
        f.data()[s * 9 * 32 * 32 + 6 * 32 * 32 + i] = 3 * x.data()[s * 3 * 32 * 32 + i];
    }
    return f;
  };
  const double mix = evaluate_dense_features(mixed, set).position_collapse;
  CHECK(mix > raw.position_collapse + 0.1);
  CHECK(mix < pos.position_collapse - 0.1);
}

TEST_CASE("fmicon_eval: results do not depend on the batch size of the feature calls") {
  const std::vector<Tensor> photos = smooth_photos(1, 4, 40, 40, 1.0f, 11);
  const CorrespondenceSet set = make_correspondence_set(photos, small_options(5, 32, 12));
  DenseEvalOptions one, all;
  one.batch = 1, all.batch = 5;
  const DenseEvalResult r1 = evaluate_dense_features(raw_pixel_features(), set, one);
  const DenseEvalResult r5 = evaluate_dense_features(raw_pixel_features(), set, all);
  CHECK(r1.pck1 == r5.pck1);
  CHECK(r1.label_iou == r5.label_iou);
  CHECK(r1.position_collapse == r5.position_collapse);
  // The same seed builds the same set; another seed another one.
  const CorrespondenceSet again = make_correspondence_set(photos, small_options(5, 32, 12));
  CHECK(testing::max_abs_diff(again.b, set.b) == 0.0f);
  const CorrespondenceSet other = make_correspondence_set(photos, small_options(5, 32, 13));
  CHECK(testing::max_abs_diff(other.b, set.b) > 0.01f);
}

TEST_CASE("fmicon_eval: the feature picture is written with one row of six panels per pair") {
  const std::vector<Tensor> photos = smooth_photos(1, 3, 40, 40, 1.0f, 21);
  const CorrespondenceSet set = make_correspondence_set(photos, small_options(3, 32, 22));
  testing::TempDir dir("fmicon_eval");
  const std::string path = dir.file("features.png");
  write_feature_pictures(raw_pixel_features(), set, 2, path);
  REQUIRE(std::filesystem::exists(path));
  const Tensor image = load_image(path);
  CHECK(image.size(2) > 6 * 64);  // six 2x-scaled tiles side by side
  CHECK(image.size(1) > 2 * 64);
  CHECK_THROWS_NAMING(write_feature_pictures(raw_pixel_features(), set, 4, path), "write_feature_pictures", "4");
  CHECK_THROWS_NAMING(write_feature_pictures(raw_pixel_features(), set, 1, "/nonexistent/dir/x.png"),
                      "/nonexistent/dir/x.png");
}

TEST_CASE("fmicon_eval: PCA colours follow the leading direction of the features") {
  // Points spread along (1, 1, 0, 0) with little noise elsewhere: the first component is monotone in t.
  Rng rng(4);
  std::vector<float> x;
  for (int i = 0; i < 50; ++i) {
    const float t = float(i) / 49;
    x.insert(x.end(),
             {t + 0.01f * rng.normal(), t + 0.01f * rng.normal(), 0.01f * rng.normal(), 0.001f * rng.normal()});
  }
  const std::vector<float> rgb = pca_rgb(x.data(), 50, 4);
  const double first = rgb[0], last = rgb[49 * 3];
  CHECK(std::fabs(first - last) > 0.9);  // spans the full range end to end
  for (int i = 1; i < 50; ++i) {
    const bool rising = last > first;
    CHECK((rising ? rgb[i * 3] >= rgb[(i - 1) * 3] - 0.1f : rgb[i * 3] <= rgb[(i - 1) * 3] + 0.1f));
  }
}

TEST_CASE("fmicon_eval: the raw baselines centre pixels per image and patches per neighbourhood (by hand)") {
  const Tensor image = Tensor::from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor pixels = raw_pixel_features()(image);
  CHECK(pixels.shape() == Shape{1, 1, 3, 3});
  CHECK(pixels.at({0, 0, 0, 0}) == doctest::Approx(-4.0));  // 1 - mean 5
  CHECK(pixels.at({0, 0, 2, 2}) == doctest::Approx(4.0));
  const Tensor patches = raw_patch_features(1)(image);
  REQUIRE(patches.shape() == Shape{1, 9, 3, 3});
  // Centre pixel: the whole image minus 5; tap (dy, dx) = (-1, +1) is feature 2.
  CHECK(patches.at({0, 2, 1, 1}) == doctest::Approx(3.0 - 5.0));
  // Corner (0, 0): inside taps 1, 2, 4, 5 (sum 12), the rest zeros: mean 12 / 9; tap (0, 0) is feature 4.
  CHECK(patches.at({0, 4, 0, 0}) == doctest::Approx(1.0 - 12.0 / 9));
  CHECK(patches.at({0, 0, 0, 0}) == doctest::Approx(0.0 - 12.0 / 9));
  CHECK_THROWS_NAMING(raw_patch_features(-1), "raw_patch_features", "-1");
  CHECK_THROWS_NAMING(raw_patch_features(1)(Tensor::zeros({3, 3})), "raw_patch_features", "[3, 3]");
}

TEST_CASE("fmicon_eval: grey (C = 1) photos stay grey and evaluate") {
  const std::vector<Tensor> photos = smooth_photos(1, 1, 40, 40, 1.0f, 31);
  const CorrespondenceSet set = make_correspondence_set(photos, small_options(2, 32, 32));
  CHECK(set.a.shape() == Shape{2, 1, 32, 32});
  const DenseEvalResult r = evaluate_dense_features(raw_patch_features(2), set);
  CHECK(r.pck4 > r.pck4_no_motion);  // patches of a smooth random image do locate themselves
}

TEST_CASE("fmicon_eval: bad input names the function and the shapes") {
  Rng rng(1);
  const std::vector<Tensor> small = {Tensor::uniform({3, 20, 30}, rng)};
  CHECK_THROWS_NAMING(make_correspondence_set(small, small_options(2, 32, 0)), "make_correspondence_set",
                      "[3, 20, 30]", "32");
  const std::vector<Tensor> mixed = {Tensor::uniform({3, 40, 40}, rng), Tensor::uniform({1, 40, 40}, rng)};
  CHECK_THROWS_NAMING(make_correspondence_set(mixed, small_options(2, 32, 0)), "make_correspondence_set",
                      "[1, 40, 40]");
  CHECK_THROWS_NAMING(make_correspondence_set({}, small_options(2, 32, 0)), "make_correspondence_set");
  CHECK_THROWS_NAMING(make_correspondence_set(mixed, small_options(1, 32, 0)), "make_correspondence_set", "count");

  const CorrespondenceSet set = make_correspondence_set({mixed[0]}, small_options(2, 32, 0));
  const FeatureFn wrong_size = [](const Tensor& x) { return Tensor::zeros({x.size(0), 4, 16, 16}); };
  CHECK_THROWS_NAMING(evaluate_dense_features(wrong_size, set), "evaluate_dense_features", "[2, 3, 32, 32]",
                      "[2, 4, 16, 16]");
  CorrespondenceSet broken = set;
  broken.target = Tensor::zeros({2, 32, 32});
  CHECK_THROWS_NAMING(evaluate_dense_features(raw_pixel_features(), broken), "evaluate_dense_features",
                      "[2, 32, 32]");
  DenseEvalOptions bad;
  bad.label_top_k = 0;
  CHECK_THROWS_NAMING(evaluate_dense_features(raw_pixel_features(), set, bad), "evaluate_dense_features",
                      "label_top_k");
}
