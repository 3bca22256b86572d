// equilab — a tiny software renderer for procedural 3D objects: sphere-traced signed distance fields (SDFs),
// Lambert shading with ambient light, a floor plane with a soft shadow, 2x2 (or n x n) supersampling.
//
// It exists to make 3DIE-mini (die_mini.h): a CPU-sized analogue of 3DIEBench where every image is rendered from
// a known object, rotation, floor colour and light, so the rotation between two views is known exactly.
//
// Conventions (all right-handed):
//   world:   y up; the camera sits at (0, 1.25, 3.6) looking at (0, -0.15, 0), i.e. along -z and a little down;
//            image x grows to the right (+x world), image rows grow downwards.
//   object:  centred at the origin, normalised to fit inside the unit sphere; a view shows it rotated by R(q)
//            (world point = R * object point), resting over the floor plane y = kFloorY.
//   rotations: quaternions q = (w, x, y, z), unit norm, canonical sign w >= 0 (q and -q are the same rotation).
//   Euler angles: intrinsic X-Y'-Z'' (first about the object's x axis, then about its new y, then its new z),
//            which is R = Rx(a) * Ry(b) * Rz(c) and q = qx(a) * qy(b) * qz(c).
//   relative rotation between views q1 -> q2: q_rel = q2 * conj(q1), so R(q_rel) * R(q1) = R(q2).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace eq {

// --- small vector and rotation maths ---------------------------------------------------------------------------
struct Vec3 {
  float x = 0, y = 0, z = 0;
};
inline Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(Vec3 a, float s) { return {a.x * s, a.y * s, a.z * s}; }
inline Vec3 operator*(float s, Vec3 a) { return a * s; }
inline Vec3 mul(Vec3 a, Vec3 b) { return {a.x * b.x, a.y * b.y, a.z * b.z}; }  // component-wise (colours)
inline float dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
Vec3 cross(Vec3 a, Vec3 b);
float length(Vec3 a);
Vec3 normalize(Vec3 a);  // a / |a|; throws on a zero vector

// Row-major 3x3 matrix m[row][col].
struct Mat3 {
  std::array<std::array<float, 3>, 3> m{};
  static Mat3 identity();
  Vec3 operator*(Vec3 v) const;
  Mat3 operator*(const Mat3& o) const;
  Mat3 transposed() const;
};

struct Quat {
  float w = 1, x = 0, y = 0, z = 0;
};
Quat operator*(const Quat& a, const Quat& b);  // Hamilton product: R(a * b) = R(a) * R(b)
Quat conj(const Quat& q);
Quat normalized(const Quat& q);  // unit norm; throws on a zero quaternion
Quat canonical(const Quat& q);   // the representative with w >= 0 (ties at w = 0: first non-zero of x, y, z > 0)
Quat axis_angle(Vec3 axis, float angle);     // rotation by `angle` radians about `axis` (normalised here)
Quat euler_xyz_to_quat(float a, float b, float c);  // intrinsic X-Y'-Z'': qx(a) * qy(b) * qz(c), canonical
Mat3 quat_to_matrix(const Quat& q);                 // q must be (near) unit
Quat matrix_to_quat(const Mat3& r);                 // r a rotation matrix; canonical result
Mat3 euler_xyz_to_matrix(float a, float b, float c);  // Rx(a) * Ry(b) * Rz(c), computed from the three matrices
Quat relative_rotation(const Quat& q1, const Quat& q2);  // canonical(q2 * conj(q1))

// Hue/saturation/value in [0, 1] -> linear RGB in [0, 1].
Vec3 hsv_to_rgb(float h, float s, float v);

// --- signed distance fields --------------------------------------------------------------------------------------
// One primitive in its own frame; the object places it with a rotation and an offset. Parameters by kind:
//   kBox          half extents (a, b, c)
//   kEllipsoid    radii (a, b, c)                       (a distance bound, not exact: marched with care)
//   kCylinder     radius a, half height b, axis y
//   kCone         base radius a at y = -b, top radius c at y = +b (c = 0: a pointed cone)
//   kTorus        ring radius a, tube radius b, axis y
//   kCapsule      segment from (0, -b, 0) to (0, +b, 0), radius a
//   kOctahedron   vertices at (+-a, 0, 0), (0, +-b, 0), (0, 0, +-c)   (distance to the face planes: a bound)
//   kHexPrism     apothem a (centre to flat side), half length b, axis z
enum class PrimitiveKind : uint8_t { kBox, kEllipsoid, kCylinder, kCone, kTorus, kCapsule, kOctahedron, kHexPrism };

struct Primitive {
  PrimitiveKind kind = PrimitiveKind::kBox;
  float a = 0.5f, b = 0.5f, c = 0.5f;
  Mat3 to_local = Mat3::identity();  // object frame -> primitive frame (the inverse of its placement rotation)
  Vec3 offset;                       // primitive centre in the object frame
  bool subtract = false;             // carve this primitive out of the union of the others (a mug's cavity)

  // Signed distance (or a lower bound of it) from object-frame point p to this primitive.
  float distance(Vec3 p) const;
  // Radius of a sphere about the object-frame origin that contains the primitive (for bounding and scaling).
  float bounding_radius() const;
};

// A solid: the union of the additive primitives minus the subtractive ones, uniformly scaled, and painted in a
// base colour with an accent colour on the quarter x > 0, y > 0 of the object frame (the accent breaks the
// shapes' own symmetries, so a view's rotation can be read off the image; see die_mini.h).
struct SdfObject {
  std::vector<Primitive> primitives;
  float scale = 1.0f;           // distances are evaluated at p / scale and multiplied by scale
  float bound = 1.0f;           // every surface point lies within this radius of the origin (after scaling)
  Vec3 base_color{0.8f, 0.3f, 0.2f};
  Vec3 accent_color{0.9f, 0.9f, 0.8f};

  float distance(Vec3 p) const;       // object-frame point, after scaling
  Vec3 normal(Vec3 p) const;          // outward unit normal from the SDF gradient (tetrahedron differences)
  Vec3 albedo(Vec3 p) const;          // base or accent colour at object-frame surface point p
  // Scales the object so its farthest surface point (measured by marching inwards from `directions` directions)
  // lies at radius `target`; sets scale and bound. Call once after adding the primitives.
  void normalize_size(float target = 1.0f, int directions = 256);
};

// Marches from object-frame origin o along unit direction d for t in [t_min, t_max]; returns the hit distance or
// a negative number for a miss.
float march(const SdfObject& object, Vec3 o, Vec3 d, float t_min, float t_max);

// --- scenes and rendering ----------------------------------------------------------------------------------------
constexpr float kFloorY = -1.08f;  // the floor plane, just below the unit sphere that holds every object

struct Scene {
  const SdfObject* object = nullptr;
  Quat rotation;                        // object -> world
  Vec3 floor_color{0.6f, 0.6f, 0.6f};
  Vec3 light_dir{0.3f, 0.8f, 0.5f};     // world direction towards the light (normalised by the renderer)
  Vec3 light_color{1.0f, 1.0f, 1.0f};
  float ambient = 0.28f;
  bool shadows = true;                  // soft shadow of the object on the floor
};

struct RenderOptions {
  int size = 32;          // output is size x size
  int supersample = 2;    // supersample x supersample rays per pixel, averaged
};

// Renders the scene into `rgb`: 3 * size * size bytes, planar (all red rows, then green, then blue), like CIFAR.
void render(const Scene& scene, const RenderOptions& options, uint8_t* rgb);
std::vector<uint8_t> render(const Scene& scene, const RenderOptions& options);

// The world-space ray through image point (u, v) in [0, 1]^2 (u right, v down): origin and unit direction.
void camera_ray(float u, float v, Vec3& origin, Vec3& direction);

}  // namespace eq
