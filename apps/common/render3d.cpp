// equilab — SDF sphere tracer for 3DIE-mini. See render3d.h for the conventions.
//
// Distance formulas for the primitives follow Inigo Quilez's catalogue ("distance functions", iquilezles.org);
// where an exact distance is awkward (ellipsoid, stretched octahedron) we use a lower bound, which sphere tracing
// tolerates (it only takes smaller steps).
#include "apps/common/render3d.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"

namespace eq {

// --- vectors, matrices, quaternions -------------------------------------------------------------------------------
Vec3 cross(Vec3 a, Vec3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
float length(Vec3 a) { return std::sqrt(dot(a, a)); }
Vec3 normalize(Vec3 a) {
  const float n = length(a);
  check(n > 0 && std::isfinite(n), "normalize: cannot normalise the vector (", a.x, ", ", a.y, ", ", a.z, ")");
  return a * (1.0f / n);
}

Mat3 Mat3::identity() {
  Mat3 r;
  r.m[0][0] = r.m[1][1] = r.m[2][2] = 1.0f;
  return r;
}
Vec3 Mat3::operator*(Vec3 v) const {
  return {m[0][0] * v.x + m[0][1] * v.y + m[0][2] * v.z, m[1][0] * v.x + m[1][1] * v.y + m[1][2] * v.z,
          m[2][0] * v.x + m[2][1] * v.y + m[2][2] * v.z};
}
Mat3 Mat3::operator*(const Mat3& o) const {
  Mat3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = m[i][0] * o.m[0][j] + m[i][1] * o.m[1][j] + m[i][2] * o.m[2][j];
  return r;
}
Mat3 Mat3::transposed() const {
  Mat3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = m[j][i];
  return r;
}

Quat operator*(const Quat& a, const Quat& b) {
  return {a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z, a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
          a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x, a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w};
}
Quat conj(const Quat& q) { return {q.w, -q.x, -q.y, -q.z}; }
Quat normalized(const Quat& q) {
  const float n = std::sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  check(n > 0 && std::isfinite(n), "quaternion: cannot normalise (", q.w, ", ", q.x, ", ", q.y, ", ", q.z, ")");
  return {q.w / n, q.x / n, q.y / n, q.z / n};
}
Quat canonical(const Quat& q) {
  // The first non-zero component in the order w, x, y, z decides the sign, so the choice is unique.
  for (float c : {q.w, q.x, q.y, q.z})
    if (c != 0.0f) return c > 0 ? q : Quat{-q.w, -q.x, -q.y, -q.z};
  return q;
}
Quat axis_angle(Vec3 axis, float angle) {
  const Vec3 u = normalize(axis);
  const float s = std::sin(0.5f * angle);
  return {std::cos(0.5f * angle), u.x * s, u.y * s, u.z * s};
}
Quat euler_xyz_to_quat(float a, float b, float c) {
  return canonical(normalized(axis_angle({1, 0, 0}, a) * axis_angle({0, 1, 0}, b) * axis_angle({0, 0, 1}, c)));
}
Mat3 quat_to_matrix(const Quat& q) {
  const float w = q.w, x = q.x, y = q.y, z = q.z;
  Mat3 r;
  r.m = {{{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
          {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
          {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}}};
  return r;
}
Quat matrix_to_quat(const Mat3& r) {
  // Shepperd's method: divide by the largest of 4w^2, 4x^2, 4y^2, 4z^2 for accuracy.
  const auto& m = r.m;
  const float trace = m[0][0] + m[1][1] + m[2][2];
  Quat q;
  if (trace >= m[0][0] && trace >= m[1][1] && trace >= m[2][2]) {
    const float s = 2.0f * std::sqrt(std::max(1.0f + trace, 1e-12f));
    q = {0.25f * s, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s};
  } else if (m[0][0] >= m[1][1] && m[0][0] >= m[2][2]) {
    const float s = 2.0f * std::sqrt(std::max(1.0f + m[0][0] - m[1][1] - m[2][2], 1e-12f));
    q = {(m[2][1] - m[1][2]) / s, 0.25f * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s};
  } else if (m[1][1] >= m[2][2]) {
    const float s = 2.0f * std::sqrt(std::max(1.0f + m[1][1] - m[0][0] - m[2][2], 1e-12f));
    q = {(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, 0.25f * s, (m[1][2] + m[2][1]) / s};
  } else {
    const float s = 2.0f * std::sqrt(std::max(1.0f + m[2][2] - m[0][0] - m[1][1], 1e-12f));
    q = {(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25f * s};
  }
  return canonical(normalized(q));
}
Mat3 euler_xyz_to_matrix(float a, float b, float c) {
  const float ca = std::cos(a), sa = std::sin(a), cb = std::cos(b), sb = std::sin(b), cc = std::cos(c),
              sc = std::sin(c);
  Mat3 rx, ry, rz;
  rx.m = {{{1, 0, 0}, {0, ca, -sa}, {0, sa, ca}}};
  ry.m = {{{cb, 0, sb}, {0, 1, 0}, {-sb, 0, cb}}};
  rz.m = {{{cc, -sc, 0}, {sc, cc, 0}, {0, 0, 1}}};
  return rx * ry * rz;
}
Quat relative_rotation(const Quat& q1, const Quat& q2) { return canonical(normalized(q2 * conj(q1))); }

Vec3 hsv_to_rgb(float h, float s, float v) {
  h = h - std::floor(h);
  const float k[3] = {5.0f, 3.0f, 1.0f};
  float out[3];
  for (int i = 0; i < 3; ++i) {
    const float t = std::fmod(k[i] + 6.0f * h, 6.0f);
    out[i] = v - v * s * std::max(0.0f, std::min({t, 4.0f - t, 1.0f}));
  }
  return {out[0], out[1], out[2]};
}

// --- primitives --------------------------------------------------------------------------------------------------
namespace {

float len2(float x, float y) { return std::sqrt(x * x + y * y); }

float sd_box(Vec3 p, float a, float b, float c) {
  const float qx = std::fabs(p.x) - a, qy = std::fabs(p.y) - b, qz = std::fabs(p.z) - c;
  const float outside = length({std::max(qx, 0.0f), std::max(qy, 0.0f), std::max(qz, 0.0f)});
  return outside + std::min(std::max(qx, std::max(qy, qz)), 0.0f);
}

// |p / r| - 1 changes by at most |dp| / min(r), so (|p / r| - 1) * min(r) never exceeds the true distance.
float sd_ellipsoid(Vec3 p, float a, float b, float c) {
  const float k = length({p.x / a, p.y / b, p.z / c});
  return (k - 1.0f) * std::min({a, b, c});
}

float sd_cylinder(Vec3 p, float r, float h) {
  const float dx = len2(p.x, p.z) - r, dy = std::fabs(p.y) - h;
  return std::min(std::max(dx, dy), 0.0f) + len2(std::max(dx, 0.0f), std::max(dy, 0.0f));
}

float sd_capped_cone(Vec3 p, float r_bottom, float h, float r_top) {
  const float qx = len2(p.x, p.z), qy = p.y;
  const float k1x = r_top, k1y = h, k2x = r_top - r_bottom, k2y = 2.0f * h;
  const float cax = qx - std::min(qx, qy < 0 ? r_bottom : r_top), cay = std::fabs(qy) - h;
  const float t = std::clamp(((k1x - qx) * k2x + (k1y - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0f, 1.0f);
  const float cbx = qx - k1x + k2x * t, cby = qy - k1y + k2y * t;
  const float s = (cbx < 0 && cay < 0) ? -1.0f : 1.0f;
  return s * std::sqrt(std::min(cax * cax + cay * cay, cbx * cbx + cby * cby));
}

float sd_torus(Vec3 p, float ring, float tube) { return len2(len2(p.x, p.z) - ring, p.y) - tube; }

float sd_capsule(Vec3 p, float r, float h) {
  const float y = p.y - std::clamp(p.y, -h, h);
  return length({p.x, y, p.z}) - r;
}

// The face planes |x|/a + |y|/b + |z|/c = 1; the left side is Lipschitz with constant |(1/a, 1/b, 1/c)|.
float sd_octahedron(Vec3 p, float a, float b, float c) {
  const float f = std::fabs(p.x) / a + std::fabs(p.y) / b + std::fabs(p.z) / c - 1.0f;
  return f / std::sqrt(1 / (a * a) + 1 / (b * b) + 1 / (c * c));
}

float sd_hex_prism(Vec3 p, float apothem, float half_length) {
  const float kx = -0.8660254f, ky = 0.5f, kz = 0.57735f;
  float x = std::fabs(p.x), y = std::fabs(p.y);
  const float z = std::fabs(p.z);
  const float fold = 2.0f * std::min(kx * x + ky * y, 0.0f);  // reflect into the fundamental wedge
  x -= fold * kx;
  y -= fold * ky;
  const float cx = std::clamp(x, -kz * apothem, kz * apothem);
  const float dx = len2(x - cx, y - apothem) * (y - apothem < 0 ? -1.0f : 1.0f);
  const float dy = z - half_length;
  return std::min(std::max(dx, dy), 0.0f) + len2(std::max(dx, 0.0f), std::max(dy, 0.0f));
}

}  // namespace

float Primitive::distance(Vec3 p) const {
  const Vec3 q = to_local * (p - offset);
  switch (kind) {
    case PrimitiveKind::kBox: return sd_box(q, a, b, c);
    case PrimitiveKind::kEllipsoid: return sd_ellipsoid(q, a, b, c);
    case PrimitiveKind::kCylinder: return sd_cylinder(q, a, b);
    case PrimitiveKind::kCone: return sd_capped_cone(q, a, b, c);
    case PrimitiveKind::kTorus: return sd_torus(q, a, b);
    case PrimitiveKind::kCapsule: return sd_capsule(q, a, b);
    case PrimitiveKind::kOctahedron: return sd_octahedron(q, a, b, c);
    case PrimitiveKind::kHexPrism: return sd_hex_prism(q, a, b);
  }
  fail("Primitive::distance: unknown primitive kind ", static_cast<int>(kind));
}

float Primitive::bounding_radius() const {
  float own = 0;
  switch (kind) {
    case PrimitiveKind::kBox: own = length({a, b, c}); break;
    case PrimitiveKind::kEllipsoid:
    case PrimitiveKind::kOctahedron: own = std::max({a, b, c}); break;
    case PrimitiveKind::kCylinder: own = len2(a, b); break;
    case PrimitiveKind::kCone: own = len2(std::max(a, c), b); break;
    case PrimitiveKind::kTorus:
    case PrimitiveKind::kCapsule: own = a + b; break;
    case PrimitiveKind::kHexPrism: own = len2(a / 0.8660254f, b); break;
  }
  return length(offset) + own;
}

// --- objects -----------------------------------------------------------------------------------------------------
float SdfObject::distance(Vec3 p) const {
  const Vec3 q = p * (1.0f / scale);
  float d = std::numeric_limits<float>::max();
  for (const Primitive& prim : primitives)
    if (!prim.subtract) d = std::min(d, prim.distance(q));
  for (const Primitive& prim : primitives)
    if (prim.subtract) d = std::max(d, -prim.distance(q));
  return d * scale;
}

Vec3 SdfObject::normal(Vec3 p) const {
  // Tetrahedron of four samples: a gradient estimate with 4 evaluations instead of 6.
  const float h = 0.002f;
  const Vec3 k1{1, -1, -1}, k2{-1, -1, 1}, k3{-1, 1, -1}, k4{1, 1, 1};
  const Vec3 g = k1 * distance(p + k1 * h) + k2 * distance(p + k2 * h) + k3 * distance(p + k3 * h) +
                 k4 * distance(p + k4 * h);
  const float n = length(g);
  return n > 0 ? g * (1.0f / n) : Vec3{0, 1, 0};
}

Vec3 SdfObject::albedo(Vec3 p) const { return (p.x > 0 && p.y > 0) ? accent_color : base_color; }

float march(const SdfObject& object, Vec3 o, Vec3 d, float t_min, float t_max) {
  float t = t_min;
  for (int step = 0; step < 96 && t <= t_max; ++step) {
    const float dist = object.distance(o + d * t);
    if (dist < 0.0005f + 0.0005f * t) return t;
    t += dist;
  }
  return -1.0f;
}

void SdfObject::normalize_size(float target, int directions) {
  check(!primitives.empty(), "SdfObject::normalize_size: the object has no primitives");
  check(target > 0 && directions > 0, "SdfObject::normalize_size: target ", target, " and directions ", directions,
        " must be positive");
  scale = 1.0f;
  float raw_bound = 0;
  for (const Primitive& prim : primitives)
    if (!prim.subtract) raw_bound = std::max(raw_bound, prim.bounding_radius());
  const float start = raw_bound * 1.01f;
  // Fibonacci sphere directions; from radius `start` march inwards, the hit radius is the object's extent there.
  float extent = 0;
  const float golden = 2.39996323f;
  for (int i = 0; i < directions; ++i) {
    const float y = 1.0f - 2.0f * (i + 0.5f) / directions;
    const float r = std::sqrt(std::max(0.0f, 1.0f - y * y));
    const Vec3 u{r * std::cos(golden * i), y, r * std::sin(golden * i)};
    const float t = march(*this, u * start, u * -1.0f, 0.0f, start);
    if (t >= 0) extent = std::max(extent, start - t);
  }
  check(extent > 0, "SdfObject::normalize_size: no surface found within radius ", start);
  scale = target / extent;
  bound = start * scale;  // 1% beyond the analytic bound: marching stops a hair before the surface
}

// --- camera and shading ------------------------------------------------------------------------------------------
namespace {

const Vec3 kCameraPos{0.0f, 1.25f, 3.6f};
const Vec3 kCameraTarget{0.0f, -0.15f, 0.0f};
constexpr float kTanHalfFov = 0.36f;
const Vec3 kSky{0.10f, 0.11f, 0.14f};

// Entry and exit distances of the ray o + t d (unit d) through the sphere |p| = r; false when it misses.
bool sphere_interval(Vec3 o, Vec3 d, float r, float& t0, float& t1) {
  const float b = dot(o, d), c = dot(o, o) - r * r;
  const float disc = b * b - c;
  if (disc <= 0) return false;
  const float s = std::sqrt(disc);
  t0 = -b - s;
  t1 = -b + s;
  return t1 > 0;
}

// Soft shadow factor in [0, 1] (1 = fully lit) for object-frame point o looking towards the light along d.
float soft_shadow(const SdfObject& object, Vec3 o, Vec3 d) {
  float t0, t1;
  if (!sphere_interval(o, d, object.bound, t0, t1)) return 1.0f;
  float t = std::max(t0, 0.01f), lit = 1.0f;
  for (int step = 0; step < 48 && t < t1; ++step) {
    const float h = object.distance(o + d * t);
    lit = std::min(lit, 10.0f * h / t);  // how closely the ray grazes the object, relative to distance
    if (lit < 0.001f) return 0.0f;
    t += std::clamp(h, 0.01f, 0.25f);
  }
  return std::clamp(lit, 0.0f, 1.0f);
}

struct Shader {
  const SdfObject& object;
  Mat3 to_object;  // world -> object frame, R^T
  Vec3 light_world, light_object, up_object, light_color, floor_color;
  float ambient;
  bool shadows;

  Vec3 shade(Vec3 o, Vec3 d) const {
    const float t_floor = d.y < 0 ? (kFloorY - o.y) / d.y : std::numeric_limits<float>::max();
    const Vec3 oo = to_object * o, dd = to_object * d;
    float t0, t1;
    if (sphere_interval(oo, dd, object.bound, t0, t1)) {
      const float t = march(object, oo, dd, std::max(t0, 0.0f), std::min(t1, t_floor));
      if (t >= 0) {
        const Vec3 p = oo + dd * t;
        const Vec3 n = object.normal(p);
        const float lambert = std::max(0.0f, dot(n, light_object));
        const float sky_light = ambient * (0.75f + 0.25f * dot(n, up_object));  // a little more light from above
        return mul(object.albedo(p), Vec3{sky_light, sky_light, sky_light} + light_color * lambert);
      }
    }
    if (t_floor == std::numeric_limits<float>::max()) return kSky;
    const Vec3 p = o + d * t_floor;
    const float lit = shadows ? soft_shadow(object, to_object * p, light_object) : 1.0f;
    const Vec3 c = mul(floor_color, Vec3{ambient, ambient, ambient} + light_color * (light_world.y * lit));
    // Fade the far floor into the sky so the horizon is soft rather than an aliased edge.
    const float fade = std::exp(-std::max(0.0f, t_floor - 5.0f) * 0.12f);
    return c * fade + kSky * (1.0f - fade);
  }
};

}  // namespace

void camera_ray(float u, float v, Vec3& origin, Vec3& direction) {
  const Vec3 forward = normalize(kCameraTarget - kCameraPos);
  const Vec3 right = normalize(cross(forward, Vec3{0, 1, 0}));
  const Vec3 up = cross(right, forward);
  origin = kCameraPos;
  direction = normalize(forward + right * ((2 * u - 1) * kTanHalfFov) + up * ((1 - 2 * v) * kTanHalfFov));
}

void render(const Scene& scene, const RenderOptions& options, uint8_t* rgb) {
  check(scene.object != nullptr, "render: the scene has no object");
  check(options.size >= 1 && options.size <= 4096, "render: image size ", options.size, " is outside 1..4096");
  check(options.supersample >= 1 && options.supersample <= 8, "render: supersample ", options.supersample,
        " is outside 1..8");
  const Mat3 to_object = quat_to_matrix(normalized(scene.rotation)).transposed();
  const Vec3 light = normalize(scene.light_dir);
  const Shader shader{*scene.object,    to_object,          light,         to_object * light,
                      to_object * Vec3{0, 1, 0}, scene.light_color, scene.floor_color, scene.ambient,
                      scene.shadows};
  const int n = options.size, ss = options.supersample;
  const float inv = 1.0f / (ss * ss);
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      Vec3 sum;
      for (int sy = 0; sy < ss; ++sy)
        for (int sx = 0; sx < ss; ++sx) {
          Vec3 o, d;
          camera_ray((x + (sx + 0.5f) / ss) / n, (y + (sy + 0.5f) / ss) / n, o, d);
          sum = sum + shader.shade(o, d);
        }
      // Shading is linear; a 1/2.2 gamma makes the bytes look right on a screen.
      const float c[3] = {sum.x * inv, sum.y * inv, sum.z * inv};
      for (int ch = 0; ch < 3; ++ch) {
        const float g = std::pow(std::clamp(c[ch], 0.0f, 1.0f), 1.0f / 2.2f);
        rgb[(static_cast<int64_t>(ch) * n + y) * n + x] = static_cast<uint8_t>(std::lround(g * 255.0f));
      }
    }
}

std::vector<uint8_t> render(const Scene& scene, const RenderOptions& options) {
  check(options.size >= 1 && options.size <= 4096, "render: image size ", options.size, " is outside 1..4096");
  std::vector<uint8_t> rgb(static_cast<size_t>(3) * options.size * options.size);
  render(scene, options, rgb.data());
  return rgb;
}

}  // namespace eq
