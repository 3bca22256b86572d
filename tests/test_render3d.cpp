// The SDF renderer behind 3DIE-mini: rotation maths (quaternions, matrices, Euler angles, relative rotations),
// primitive distances on hand-worked points, the Lipschitz property sphere tracing relies on, a unit sphere's
// silhouette and centre colour against an analytic ray-sphere test, the rotation convention seen in the image,
// and the renderer's input checks.
#include <doctest/doctest.h>

#include <cmath>

#include "apps/common/die_mini.h"
#include "apps/common/render3d.h"
#include "engine/rng.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

constexpr float kPi = 3.14159265358979f;

Quat random_quat(Rng& rng) {
  return canonical(normalized({rng.normal(), rng.normal(), rng.normal(), rng.normal()}));
}

float max_matrix_diff(const Mat3& a, const Mat3& b) {
  float m = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) m = std::max(m, std::fabs(a.m[i][j] - b.m[i][j]));
  return m;
}

float quat_diff(const Quat& a, const Quat& b) {
  return std::max({std::fabs(a.w - b.w), std::fabs(a.x - b.x), std::fabs(a.y - b.y), std::fabs(a.z - b.z)});
}

float vec_diff(Vec3 a, Vec3 b) { return std::max({std::fabs(a.x - b.x), std::fabs(a.y - b.y), std::fabs(a.z - b.z)}); }

SdfObject unit_sphere(Vec3 color) {
  SdfObject o;
  Primitive p;
  p.kind = PrimitiveKind::kEllipsoid;
  p.a = p.b = p.c = 1.0f;
  o.primitives = {p};
  o.scale = 1.0f;
  o.bound = 1.0f;
  o.base_color = o.accent_color = color;
  return o;
}

// Column centroid and row centroid of the pixels where `mask(r, g, b)` holds, and how many there are.
template <class Mask>
int centroid(const std::vector<uint8_t>& rgb, int n, Mask mask, float& cx, float& cy) {
  int count = 0;
  cx = cy = 0;
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      const int i = y * n + x;
      if (mask(rgb[i], rgb[n * n + i], rgb[2 * n * n + i])) {
        ++count;
        cx += x;
        cy += y;
      }
    }
  if (count) {
    cx /= count;
    cy /= count;
  }
  return count;
}

}  // namespace

TEST_CASE("render3d: quaternion <-> matrix round trips and Euler angles") {
  Rng rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    const Quat q = random_quat(rng);
    const Mat3 r = quat_to_matrix(q);
    // Orthonormal with determinant +1.
    CHECK(max_matrix_diff(r * r.transposed(), Mat3::identity()) < 1e-5f);
    const Vec3 c0{r.m[0][0], r.m[1][0], r.m[2][0]}, c1{r.m[0][1], r.m[1][1], r.m[2][1]},
        c2{r.m[0][2], r.m[1][2], r.m[2][2]};
    CHECK(dot(cross(c0, c1), c2) == doctest::Approx(1.0f).epsilon(1e-5));
    CHECK(quat_diff(matrix_to_quat(r), q) < 1e-5f);
    CHECK(q.w >= 0);

    // Euler angles in the dataset's range: the quaternion product and the three matrices agree.
    const float a = rng.uniform(-kPi / 2, kPi / 2), b = rng.uniform(-kPi / 2, kPi / 2),
                c = rng.uniform(-kPi / 2, kPi / 2);
    CHECK(max_matrix_diff(quat_to_matrix(euler_xyz_to_quat(a, b, c)), euler_xyz_to_matrix(a, b, c)) < 1e-5f);

    // Hamilton product composes rotations: R(q1 q2) = R(q1) R(q2).
    const Quat q2 = random_quat(rng);
    CHECK(max_matrix_diff(quat_to_matrix(q * q2), quat_to_matrix(q) * quat_to_matrix(q2)) < 1e-5f);
  }
  // Hand-worked: a quarter turn about x takes +y to +z (right-handed); about z takes +x to +y.
  CHECK(vec_diff(quat_to_matrix(euler_xyz_to_quat(kPi / 2, 0, 0)) * Vec3{0, 1, 0}, Vec3{0, 0, 1}) < 1e-6f);
  CHECK(vec_diff(quat_to_matrix(axis_angle({0, 0, 1}, kPi / 2)) * Vec3{1, 0, 0}, Vec3{0, 1, 0}) < 1e-6f);
  // Intrinsic X then Y' means R = Rx(a) Ry(b): with a = b = 90 degrees, Ry takes +z to +x and Rx keeps +x.
  // (The extrinsic order Ry Rx would send +z to -y instead.)
  CHECK(vec_diff(euler_xyz_to_matrix(kPi / 2, kPi / 2, 0) * Vec3{0, 0, 1}, Vec3{1, 0, 0}) < 1e-6f);
  // Canonical sign: -q becomes q, and w = 0 ties are broken by the first non-zero component.
  const Quat half_turn{0, 0, -1, 0};
  CHECK(quat_diff(canonical(half_turn), Quat{0, 0, 1, 0}) == 0.0f);
  CHECK(quat_diff(canonical(Quat{-0.5f, 0.5f, -0.5f, 0.5f}), Quat{0.5f, -0.5f, 0.5f, -0.5f}) == 0.0f);
  CHECK_THROWS_NAMING(normalized(Quat{0, 0, 0, 0}), "quaternion");
}

TEST_CASE("render3d: relative rotation q_rel = q2 conj(q1) takes view 1 to view 2") {
  Rng rng(2);
  for (int trial = 0; trial < 200; ++trial) {
    const Quat q1 = random_quat(rng), q2 = random_quat(rng);
    const Quat rel = relative_rotation(q1, q2);
    CHECK(rel.w >= 0);
    CHECK(max_matrix_diff(quat_to_matrix(rel) * quat_to_matrix(q1), quat_to_matrix(q2)) < 1e-5f);
    // A point of the object seen in view 1 at R1 p is seen in view 2 at R_rel R1 p.
    const Vec3 p{rng.normal(), rng.normal(), rng.normal()};
    CHECK(vec_diff(quat_to_matrix(rel) * (quat_to_matrix(q1) * p), quat_to_matrix(q2) * p) < 1e-4f);
  }
  CHECK(quat_diff(relative_rotation(Quat{0.5f, 0.5f, 0.5f, 0.5f}, Quat{0.5f, 0.5f, 0.5f, 0.5f}), Quat{}) < 1e-6f);
}

TEST_CASE("render3d: primitive distances on hand-worked points") {
  auto prim = [](PrimitiveKind kind, float a, float b, float c) {
    Primitive p;
    p.kind = kind;
    p.a = a;
    p.b = b;
    p.c = c;
    return p;
  };
  const Primitive cube = prim(PrimitiveKind::kBox, 1, 1, 1);
  CHECK(cube.distance({2, 0, 0}) == doctest::Approx(1.0f));
  CHECK(cube.distance({2, 2, 0}) == doctest::Approx(std::sqrt(2.0f)));
  CHECK(cube.distance({0.5f, 0, 0}) == doctest::Approx(-0.5f));
  const Primitive torus = prim(PrimitiveKind::kTorus, 1.0f, 0.25f, 0);
  CHECK(torus.distance({1, 0, 0}) == doctest::Approx(-0.25f));
  CHECK(torus.distance({0, 0, 0}) == doctest::Approx(0.75f));  // the hole
  CHECK(torus.distance({0, 0, 1.5f}) == doctest::Approx(0.25f));
  const Primitive cylinder = prim(PrimitiveKind::kCylinder, 0.5f, 1.0f, 0);
  CHECK(cylinder.distance({1.5f, 0, 0}) == doctest::Approx(1.0f));
  CHECK(cylinder.distance({0, 3, 0}) == doctest::Approx(2.0f));
  const Primitive capsule = prim(PrimitiveKind::kCapsule, 0.25f, 1.0f, 0);
  CHECK(capsule.distance({0, 2, 0}) == doctest::Approx(0.75f));  // beyond the rounded end
  CHECK(capsule.distance({1, 0.5f, 0}) == doctest::Approx(0.75f));
  const Primitive cone = prim(PrimitiveKind::kCone, 1.0f, 1.0f, 0.0f);  // base radius 1 at y = -1, tip at y = 1
  CHECK(cone.distance({0, 2, 0}) == doctest::Approx(1.0f));
  CHECK(cone.distance({0, -1.5f, 0}) == doctest::Approx(0.5f));
  CHECK(cone.distance({0, 0, 0}) < 0);
  const Primitive hex = prim(PrimitiveKind::kHexPrism, 1.0f, 0.5f, 0);  // flat sides at y = +-1, axis z
  CHECK(hex.distance({0, 2, 0}) == doctest::Approx(1.0f));
  CHECK(hex.distance({0, 0, 1.5f}) == doctest::Approx(1.0f));
  CHECK(hex.distance({2 / std::sqrt(3.0f), 0, 0}) == doctest::Approx(0.0f).epsilon(1e-5));  // a corner
  // Bounds: never more than the true distance, exact on the surface.
  const Primitive octa = prim(PrimitiveKind::kOctahedron, 1, 1, 1);
  CHECK(octa.distance({1, 0, 0}) == doctest::Approx(0.0f));
  CHECK(octa.distance({2, 0, 0}) > 0);
  CHECK(octa.distance({2, 0, 0}) <= 1.0f);  // the nearest point is the vertex (1, 0, 0)
  CHECK(octa.distance({1, 1, 1}) == doctest::Approx(2 / std::sqrt(3.0f)));  // straight to the face: exact
  const Primitive ellipsoid = prim(PrimitiveKind::kEllipsoid, 2, 1, 1);
  CHECK(ellipsoid.distance({2, 0, 0}) == doctest::Approx(0.0f));
  CHECK(ellipsoid.distance({3, 0, 0}) > 0);
  CHECK(ellipsoid.distance({3, 0, 0}) <= 1.0f);
  // Placement: a box moved to x = 3 and turned a quarter about z.
  Primitive moved = prim(PrimitiveKind::kBox, 1.0f, 0.25f, 0.25f);
  moved.offset = {3, 0, 0};
  moved.to_local = quat_to_matrix(axis_angle({0, 0, 1}, kPi / 2)).transposed();
  CHECK(moved.distance({3, 1.5f, 0}) == doctest::Approx(0.5f));  // its long axis now runs along y
  CHECK(moved.distance({4.5f, 0, 0}) == doctest::Approx(1.25f));
}

TEST_CASE("render3d: every class's distance is 1-Lipschitz (sphere tracing never overshoots)") {
  Rng rng(3);
  for (int cls = 0; cls < kDieMiniClasses; ++cls) {
    Rng object_rng(100 + cls);
    const SdfObject object = make_die_object(cls, object_rng);
    INFO("class " << die_mini_class_names()[cls]);
    int violations = 0;
    for (int trial = 0; trial < 2000; ++trial) {
      const Vec3 p{rng.uniform(-1.3f, 1.3f), rng.uniform(-1.3f, 1.3f), rng.uniform(-1.3f, 1.3f)};
      const Vec3 q = p + Vec3{rng.normal(), rng.normal(), rng.normal()} * 0.05f;
      if (std::fabs(object.distance(p) - object.distance(q)) > 1.001f * length(p - q) + 1e-6f) ++violations;
    }
    CHECK(violations == 0);
  }
}

TEST_CASE("render3d: a unit sphere's silhouette and centre colour match the analytic ray-sphere answer") {
  const SdfObject sphere = unit_sphere({1, 0, 0});  // pure red: blue is 0 exactly on the sphere, never elsewhere
  Scene scene;
  scene.object = &sphere;
  scene.floor_color = {0, 0, 1};
  scene.light_dir = {0.3f, 0.8f, 0.52f};
  scene.light_color = {1, 1, 1};
  scene.ambient = 0.25f;
  const int n = 48;
  const std::vector<uint8_t> rgb = render(scene, {n, 1});
  int rendered = 0, analytic = 0, disagree = 0;
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      Vec3 o, d;
      camera_ray((x + 0.5f) / n, (y + 0.5f) / n, o, d);
      const float b = dot(o, d), c = dot(o, o) - 1.0f;
      const bool hit = b * b - c > 0 && -b > 0;
      const bool drawn = rgb[2 * n * n + y * n + x] == 0;
      rendered += drawn;
      analytic += hit;
      disagree += drawn != hit;
    }
  INFO("rendered " << rendered << " sphere pixels, analytic " << analytic << ", disagreeing " << disagree);
  CHECK(analytic > n * n / 8);  // the sphere fills a good part of the view
  CHECK(disagree <= 2);         // only rays grazing the rim may differ
  // Centre pixel: the normal is the hit point itself; colour = red * (sky ambient + Lambert), then gamma 1/2.2.
  const int cx = n / 2, cy = n / 2;
  Vec3 o, d;
  camera_ray((cx + 0.5f) / n, (cy + 0.5f) / n, o, d);
  const float b = dot(o, d), t = -b - std::sqrt(b * b - (dot(o, o) - 1.0f));
  const Vec3 normal = o + d * t;
  const Vec3 light = normalize(scene.light_dir);
  const float linear = scene.ambient * (0.75f + 0.25f * normal.y) + std::max(0.0f, dot(normal, light));
  const float expected = 255.0f * std::pow(std::min(linear, 1.0f), 1 / 2.2f);
  CHECK(std::fabs(rgb[cy * n + cx] - expected) <= 2.0f);
  CHECK(rgb[n * n + cy * n + cx] == 0);
  // Turning a sphere about its centre changes nothing (up to sphere-tracing noise at the rim).
  scene.rotation = axis_angle({0.3f, -1, 0.5f}, 1.1f);
  const std::vector<uint8_t> turned = render(scene, {n, 1});
  int changed = 0;
  for (size_t i = 0; i < rgb.size(); ++i) changed += std::abs(int(rgb[i]) - int(turned[i])) > 2;
  CHECK(changed <= 3);
}

TEST_CASE("render3d: the image follows the rotation convention (world = R * object)") {
  // A small ball at +x of the object frame: at identity it sits right of centre; a quarter turn about z moves it
  // up (+y), a quarter turn about y sends it away from the camera (-z), back to the middle column.
  SdfObject ball = unit_sphere({1, 0, 0});
  ball.primitives[0].a = ball.primitives[0].b = ball.primitives[0].c = 0.3f;
  ball.primitives[0].offset = {0.7f, 0, 0};
  ball.scale = 1.0f;
  ball.bound = 1.0f;
  Scene scene;
  scene.object = &ball;
  scene.floor_color = {0, 0, 1};
  scene.shadows = false;
  const int n = 32;
  auto red = [](uint8_t, uint8_t, uint8_t b) { return b == 0; };
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // set by centroid() when REQUIRE passes
  REQUIRE(centroid(render(scene, {n, 1}), n, red, x0, y0) > 10);
  scene.rotation = axis_angle({0, 0, 1}, kPi / 2);
  REQUIRE(centroid(render(scene, {n, 1}), n, red, x1, y1) > 10);
  scene.rotation = axis_angle({0, 1, 0}, kPi / 2);
  REQUIRE(centroid(render(scene, {n, 1}), n, red, x2, y2) > 5);
  CHECK(x0 > n / 2 + 3);
  CHECK(std::fabs(x1 - (n - 1) / 2.0f) < 1.5f);
  CHECK(y1 < y0 - 3);
  CHECK(std::fabs(x2 - (n - 1) / 2.0f) < 1.5f);
}

TEST_CASE("render3d: same pose renders the same bytes; a different pose of an asymmetric object does not") {
  Rng rng(7);
  const SdfObject chair = make_die_object(12, rng);
  Scene scene;
  scene.object = &chair;
  scene.rotation = euler_xyz_to_quat(0.3f, -0.4f, 0.2f);
  const std::vector<uint8_t> a = render(scene, {24, 2}), b = render(scene, {24, 2});
  CHECK(a == b);
  scene.rotation = euler_xyz_to_quat(0.3f, 0.6f, 0.2f);
  const std::vector<uint8_t> c = render(scene, {24, 2});
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += std::abs(int(a[i]) - int(c[i]));
  CHECK(diff / a.size() > 3.0);  // mean absolute change in bytes
}

TEST_CASE("render3d: bad input is refused with the op named") {
  Scene scene;
  CHECK_THROWS_NAMING(render(scene, {32, 2}), "render", "no object");
  const SdfObject sphere = unit_sphere({1, 1, 1});
  scene.object = &sphere;
  CHECK_THROWS_NAMING(render(scene, {0, 2}), "render", "image size 0");
  CHECK_THROWS_NAMING(render(scene, {16, 0}), "render", "supersample 0");
  CHECK_THROWS_NAMING(normalize(Vec3{0, 0, 0}), "normalize");
  SdfObject empty;
  empty.primitives.clear();
  CHECK_THROWS_NAMING(empty.normalize_size(), "normalize_size", "no primitives");
}
