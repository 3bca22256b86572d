// SIE views (apps/sie/views.cpp): the relative group element of both forms against composition, the rotated-digit
// views (angle range, determinism, that a view IS the digit rotated by its pose and that the relative angle maps
// one view onto another), pair sampling and gathering, the 3DIE-mini adapter, and errors that name the fault.
//
// The app's sources are not part of libequilab.a, so views.cpp is compiled here (once for the whole test binary:
// other test files use its functions without including it again).
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "apps/sie/views.cpp"
#include "augment/rotation.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

constexpr float kPi = 3.14159265358979f;

// A set of `objects` x `views` 1x3x3 images (contents irrelevant here) with the given poses.
ViewSet pose_only_set(int objects, int views, int group_dim, const std::vector<float>& poses) {
  ViewSet s;
  const int64_t n = int64_t(objects) * views;
  s.data.images = Tensor({n, 1, 3, 3});
  s.data.labels.assign(n, 0);
  for (int64_t r = 0; r < n; ++r) s.data.labels[r] = static_cast<int>(r / views) % 3;
  s.data.num_classes = 3;
  s.data.name = "poses";
  s.views_per_object = views;
  s.group_dim = group_dim;
  const int64_t p = group_dim == 4 ? 4 : 1;
  s.poses = Tensor::from({n, p}, poses);
  return s;
}

Quat as_quat(const std::vector<float>& v) {
  REQUIRE(v.size() == 4);
  return Quat{v[0], v[1], v[2], v[3]};
}

float max_matrix_diff(const Mat3& a, const Mat3& b) {
  float m = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) m = std::max(m, std::fabs(a.m[i][j] - b.m[i][j]));
  return m;
}

Mat3 matmul3(const Mat3& a, const Mat3& b) {
  Mat3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      c.m[i][j] = 0;
      for (int k = 0; k < 3; ++k) c.m[i][j] += a.m[i][k] * b.m[k][j];
    }
  return c;
}

// A 1x1x16x16 image of two Gaussian blobs of different sizes away from the centre: smooth (so bilinear rotations
// nearly commute) and without rotational symmetry (so a wrong angle or sense shows).
Dataset blob_digits(int count) {
  Dataset d;
  d.images = Tensor({count, 1, 16, 16});
  d.num_classes = 2;
  d.name = "blobs";
  for (int k = 0; k < count; ++k) {
    d.labels.push_back(k % 2);
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const float a = std::exp(-((x - 10.f) * (x - 10.f) + (y - 7.5f) * (y - 7.5f)) / 4.f);
        const float b = std::exp(-((x - 6.f) * (x - 6.f) + (y - 4.f - 0.5f * k) * (y - 4.f - 0.5f * k)) / 2.f);
        d.images.data()[(k * 16 + y) * 16 + x] = 0.9f * a + 0.6f * b;
      }
  }
  return d;
}

// Max |a - b| inside the disc of radius 5 about the centre of [1, 1, 16, 16] images (corners leave the canvas).
float central_diff(const Tensor& a, const Tensor& b) {
  float m = 0;
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x)
      if ((x - 7.5f) * (x - 7.5f) + (y - 7.5f) * (y - 7.5f) <= 25.f)
        m = std::max(m, std::fabs(a.data()[y * 16 + x] - b.data()[y * 16 + x]));
  return m;
}

}  // namespace

TEST_CASE("sie_views: the quaternion relative element composes like rotations") {
  const Quat q[3] = {euler_xyz_to_quat(0.3f, -1.1f, 0.7f), euler_xyz_to_quat(-1.4f, 0.2f, 1.5f),
                     euler_xyz_to_quat(0.9f, 1.2f, -0.4f)};
  std::vector<float> poses;
  for (const Quat& x : q) poses.insert(poses.end(), {x.w, x.x, x.y, x.z});
  const ViewSet s = pose_only_set(1, 3, 4, poses);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const Quat rel = as_quat(s.relative(i, j));
      CHECK(rel.w >= 0);  // canonical
      CHECK(std::fabs(rel.w * rel.w + rel.x * rel.x + rel.y * rel.y + rel.z * rel.z - 1) < 1e-5f);
      // R(q_rel) R(q_i) = R(q_j): the relative element takes view i's pose to view j's.
      CHECK(max_matrix_diff(matmul3(quat_to_matrix(rel), quat_to_matrix(q[i])), quat_to_matrix(q[j])) < 1e-5f);
    }
  // Composition: relative(0, 2) = relative(1, 2) * relative(0, 1) (as rotations: quaternions up to sign).
  const Mat3 composed = matmul3(quat_to_matrix(as_quat(s.relative(1, 2))), quat_to_matrix(as_quat(s.relative(0, 1))));
  CHECK(max_matrix_diff(composed, quat_to_matrix(as_quat(s.relative(0, 2)))) < 1e-5f);
  // The identity from a view to itself, and the inverse for the swapped pair.
  const Quat self = as_quat(s.relative(1, 1));
  CHECK(self.w == doctest::Approx(1).epsilon(1e-6));
  const Mat3 back = matmul3(quat_to_matrix(as_quat(s.relative(2, 0))), quat_to_matrix(as_quat(s.relative(0, 2))));
  CHECK(max_matrix_diff(back, quat_to_matrix(Quat{})) < 1e-5f);
}

TEST_CASE("sie_views: the angle relative element is (cos, sin) of the difference and composes") {
  const std::vector<float> t = {-1.2f, 0.4f, 1.5f, 0.1f, -0.3f, 0.8f};
  const ViewSet s = pose_only_set(2, 3, 2, t);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const std::vector<float> g = s.relative(i, j);
      REQUIRE(g.size() == 2);
      CHECK(g[0] == doctest::Approx(std::cos(t[j] - t[i])).epsilon(1e-6));
      CHECK(g[1] == doctest::Approx(std::sin(t[j] - t[i])).epsilon(1e-6));
    }
  // As 2x2 rotations, g(0 -> 2) = g(1 -> 2) g(0 -> 1): complex multiplication of (cos, sin).
  const std::vector<float> a = s.relative(0, 1), b = s.relative(1, 2), c = s.relative(0, 2);
  CHECK(b[0] * a[0] - b[1] * a[1] == doctest::Approx(c[0]).epsilon(1e-5));
  CHECK(b[0] * a[1] + b[1] * a[0] == doctest::Approx(c[1]).epsilon(1e-5));
  // Rows of the second object (3..5) work too; rows of different objects do not.
  CHECK(s.relative(3, 5)[1] == doctest::Approx(std::sin(t[5] - t[3])).epsilon(1e-6));
  CHECK_THROWS_NAMING(s.relative(2, 3), "ViewSet::relative", "rows 2 and 3", "different objects");
  CHECK_THROWS_NAMING(s.relative(0, 6), "ViewSet::relative", "out of range", "6 views");
}

TEST_CASE("sie_views: rotated_digits draws angles in [-pi/2, pi/2], deterministically by seed") {
  const Dataset digits = blob_digits(5);
  const ViewSet a = rotated_digits(digits, 4, 7), b = rotated_digits(digits, 4, 7), c = rotated_digits(digits, 4, 8);
  CHECK(a.num_objects() == 5);
  CHECK(a.views_per_object == 4);
  CHECK(a.group_dim == 2);
  CHECK(a.data.images.shape() == Shape{20, 1, 16, 16});
  CHECK(a.poses.shape() == Shape{20, 1});
  CHECK(a.data.num_classes == 2);
  float lo = 10, hi = -10;
  for (int64_t r = 0; r < 20; ++r) {
    lo = std::min(lo, a.poses.data()[r]);
    hi = std::max(hi, a.poses.data()[r]);
    CHECK(a.data.labels[r] == digits.labels[r / 4]);  // the object's class on every view
  }
  CHECK(lo >= -kPi / 2);
  CHECK(hi <= kPi / 2);
  CHECK(hi - lo > 1.5f);  // 20 uniform draws spread over most of the range
  CHECK(a.poses.to_vector() == b.poses.to_vector());
  CHECK(a.data.images.to_vector() == b.data.images.to_vector());
  CHECK(a.poses.to_vector() != c.poses.to_vector());
  // The views of one object differ from each other (different angles).
  CHECK(max_abs_diff(gather_pairs(a, {{0, 1}}).first, gather_pairs(a, {{0, 1}}).second) > 0.05f);
}

TEST_CASE("sie_views: a rotated digit is the digit turned by its pose, and the relative angle maps view to view") {
  const Dataset digits = blob_digits(2);
  const ViewSet s = rotated_digits(digits, 3, 11);
  for (int64_t r = 0; r < 6; ++r) {
    const float* digit = digits.images.data() + (r / 3) * 256;
    const Tensor original = Tensor::from({1, 1, 16, 16}, std::vector<float>(digit, digit + 256));
    const float degrees = s.poses.data()[r] * 180.0f / kPi;
    const Tensor view = gather_pairs(s, {{r, r}}).first;
    CHECK(max_abs_diff(view, rotate(original, degrees)) < 1e-5f);
  }
  // Rotating view 0 by the relative angle recovers view 1 in the centre (two bilinear resamplings apart); the
  // opposite sense does not.
  const PairBatch p = gather_pairs(s, {{0, 1}});
  const float rel = std::atan2(p.group.data()[1], p.group.data()[0]) * 180.0f / kPi;
  const float right = central_diff(rotate(p.first, rel), p.second);
  const float wrong = central_diff(rotate(p.first, -rel), p.second);
  CHECK(right < 0.12f);  // peaks of height ~1; the narrow blob loses ~0.08 to the two interpolations
  CHECK(wrong > 4 * right);
}

TEST_CASE("sie_views: sample_pairs draws two different views of each object with their relative element") {
  const ViewSet s = rotated_digits(blob_digits(6), 3, 2);
  Rng rng(4);
  const std::vector<int64_t> objects = {5, 0, 3, 3, 1};
  const PairBatch p = sample_pairs(s, objects, rng);
  CHECK(p.first.shape() == Shape{5, 1, 16, 16});
  CHECK(p.group.shape() == Shape{5, 2});
  for (size_t i = 0; i < objects.size(); ++i) {
    CHECK(p.first_rows[i] / 3 == objects[i]);
    CHECK(p.second_rows[i] / 3 == objects[i]);
    CHECK(p.first_rows[i] != p.second_rows[i]);
    CHECK(p.labels[i] == s.data.labels[p.first_rows[i]]);
    const std::vector<float> g = s.relative(p.first_rows[i], p.second_rows[i]);
    CHECK(p.group.data()[2 * i] == g[0]);
    CHECK(p.group.data()[2 * i + 1] == g[1]);
    const Tensor row = gather_pairs(s, {{p.second_rows[i], p.second_rows[i]}}).first;
    CHECK(std::equal(row.data(), row.data() + 256, p.second.data() + 256 * i));
  }
  // Over many draws every ordered pair of distinct views turns up.
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int k = 0; k < 200; ++k) {
    const PairBatch q = sample_pairs(s, {2}, rng);
    seen.insert({q.first_rows[0] % 3, q.second_rows[0] % 3});
  }
  CHECK(seen.size() == 6);
  CHECK_THROWS_NAMING(sample_pairs(s, {6}, rng), "sample_pairs", "object index 6", "6 objects");
  CHECK_THROWS_NAMING(sample_pairs(rotated_digits(blob_digits(2), 1, 0), {0}, rng), "sample_pairs", "1 view");
}

TEST_CASE("sie_views: gather_pairs and rotated_digits name the fault") {
  const ViewSet s = rotated_digits(blob_digits(2), 3, 0);
  CHECK_THROWS_NAMING(gather_pairs(s, {{0, 1}, {1, 4}}), "gather_pairs", "pair 1", "rows 1 and 4", "different objects");
  CHECK_THROWS_NAMING(gather_pairs(s, {{0, 9}}), "gather_pairs", "out of range", "6 views");
  CHECK_THROWS_NAMING(gather_pairs(s, {}), "gather_pairs", "no pairs");
  Dataset flat = blob_digits(2);
  flat.images = reshape(flat.images, {2, 16, 16});
  CHECK_THROWS_NAMING(rotated_digits(flat, 2, 0), "rotated_digits", "[2, 16, 16]");
  CHECK_THROWS_NAMING(rotated_digits(blob_digits(2), 0, 0), "rotated_digits", "views >= 1");
  ViewSet bad = s;
  bad.group_dim = 4;  // quaternion form with angle poses
  CHECK_THROWS_NAMING(bad.relative(0, 1), "ViewSet::relative", "group_dim 4", "[6, 1]");
}

TEST_CASE("sie_views: a 3DIE-mini set becomes a quaternion ViewSet with the file's relative rotations") {
  DieMiniConfig config;
  config.objects = 3;
  config.views = 3;
  config.image_size = 8;
  config.supersample = 1;
  config.seed = 3;
  const DieMini mini = generate_die_mini(config);
  const DieMiniDataset d = die_mini_dataset(mini, 0, 3, "tiny");
  const ViewSet s = view_set_from_die_mini(d);
  CHECK(s.group_dim == 4);
  CHECK(s.views_per_object == 3);
  CHECK(s.num_objects() == 3);
  CHECK(s.poses.shape() == Shape{9, 4});
  CHECK(s.data.images.shape() == Shape{9, 3, 8, 8});
  CHECK(max_abs_diff(s.data.images, d.data.images) == 0);
  CHECK(s.data.images.data() != d.data.images.data());  // its own copy
  // Pairs carry the views' pixels, the object's class and the rotation taking view 1 to view 2:
  // R(q_rel) R(q1) = R(q2), with w >= 0.
  const std::vector<std::pair<int64_t, int64_t>> rows = {{0, 2}, {4, 3}, {8, 6}};
  const PairBatch mine = gather_pairs(s, rows);
  const int64_t plane = 3 * 8 * 8;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto [r1, r2] = rows[i];
    const float* q = mine.group.data() + 4 * i;
    CHECK(q[0] >= 0);
    const Mat3 lhs = quat_to_matrix({q[0], q[1], q[2], q[3]}) * quat_to_matrix(d.rotations[r1]);
    const Mat3 rhs = quat_to_matrix(d.rotations[r2]);
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) CHECK(lhs.m[a][b] == doctest::Approx(rhs.m[a][b]).epsilon(1e-4));
    CHECK(mine.first.data()[i * plane + 37] == d.data.images.data()[r1 * plane + 37]);
    CHECK(mine.second.data()[i * plane + 37] == d.data.images.data()[r2 * plane + 37]);
    CHECK(mine.labels[i] == d.data.labels[r1]);
  }
}
