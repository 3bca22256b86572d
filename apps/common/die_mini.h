// equilab — 3DIE-mini: procedurally generated 3D objects rendered at 32x32 RGB from known rotations, a CPU-sized
// analogue of 3DIEBench (Garrido et al., SIE, ICML 2023) for invariant/equivariant self-supervised learning.
//
// What is in it
//   13 shape classes (die_mini_class_names()): box, ellipsoid, cylinder, cone, torus, capsule, octahedron,
//   hexprism, lshape, cross, mug, table, chair. Object k has class k % 13 (balanced), its own proportions (drawn
//   from class-specific ranges), its own base colour and a pale accent colour painted on the quarter x > 0, y > 0
//   of its own frame. Every object is normalised to radius 1 and rendered by render3d.h's sphere tracer.
//   Each object has V views. View v rotates the object by Euler angles (a, b, c), each uniform in [-pi/2, pi/2],
//   intrinsic X-Y'-Z'' (R = Rx(a) Ry(b) Rz(c)), stored as the unit quaternion q = (w, x, y, z) with w >= 0.
//   Nuisance factors per view: floor hue (floor = HSV(hue, 0.45, 0.55)), light direction (unit vector towards the
//   light, elevation 30..75 degrees, azimuth within 120 degrees of the camera side) and light hue (light =
//   HSV(hue, 0.3, 0.85)). The camera is fixed (render3d.h).
//
// Symmetry (what rotation prediction can and cannot recover)
//   Shapes alone: ellipsoid, box and octahedron (three distinct semi-axes) look the same after a half turn about
//   any of their axes; cylinder, capsule and torus are unchanged by any turn about their axis and by a half turn
//   across it; the cone by any turn about its axis; the hexagonal prism by sixth turns about its axis and half
//   turns across it; table and cross by a half turn about one axis. lshape, mug (open top, one handle) and chair
//   have no rotational symmetry. The accent quarter breaks all of these (a rotation would have to keep the set
//   x > 0, y > 0 in place), so the pose is recoverable from the pixels for every class — but it is a small colour
//   cue: at 32x32, when the accent is hidden or tiny, the shape's own symmetry is what a model sees, and
//   rotation errors on ellipsoid / box / cylinder / capsule / torus / hexprism are expected to be larger.
//
// Determinism
//   Object k draws everything from its own eq::Rng seeded by hash(seed, k), so the bytes do not depend on the
//   thread count or the order objects are made in (a test checks 1 vs 2 threads).
//
// File format (one file, little-endian, e.g. data/3die-mini/3die-mini_o2000_v10_s32_seed0.bin)
//   header, 64 bytes:
//     0  char[8]  magic "3DIEMINI"
//     8  uint32   version (1)
//     12 uint32   num_objects                16 uint32 views_per_object
//     20 uint32   image_size S               24 uint32 num_classes (13)
//     28 uint32   record_bytes (= 60 + 3*S*S) 32 uint64 seed
//     40 uint32   supersample                44..63   zero
//   then num_objects * views_per_object records, object-major (object 0 views 0..V-1, object 1, ...), each:
//     int32 class_id, int32 object_id, int32 view_id,
//     float32 quaternion w, x, y, z,  float32 euler a, b, c (radians),  float32 floor_hue,
//     float32 light_dir x, y, z,  float32 light_hue,
//     uint8 image[3][S][S]  (planar RGB, rows top to bottom, like CIFAR-10)
//   load_die_mini() checks the magic, version, counts, record size, file size, and every record's ids, class and
//   quaternion, and names the file and the fault when something is wrong.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/datasets.h"
#include "apps/common/render3d.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

constexpr int kDieMiniClasses = 13;
constexpr uint32_t kDieMiniVersion = 1;
constexpr int kDieMiniHeaderBytes = 64;

const std::vector<std::string>& die_mini_class_names();

// One object of class `class_id` with proportions and colours drawn from rng, normalised to radius 1.
SdfObject make_die_object(int class_id, Rng& rng);

struct DieMiniConfig {
  int objects = 2000;
  int views = 10;
  int image_size = 32;
  uint64_t seed = 0;
  int supersample = 2;  // supersample x supersample rays per pixel
};

// The factors of one rendered view.
struct DieViewInfo {
  int32_t class_id = 0, object_id = 0, view_id = 0;
  Quat rotation;               // object -> world, canonical (w >= 0)
  float euler[3] = {0, 0, 0};  // intrinsic X-Y'-Z'' angles the rotation was made from
  float floor_hue = 0;
  Vec3 light_dir;              // unit, world frame, towards the light
  float light_hue = 0;
};

// The whole set in memory, exactly as on disk.
struct DieMini {
  DieMiniConfig config;
  std::vector<DieViewInfo> views;  // objects * views, object-major
  std::vector<uint8_t> pixels;     // the same count of planar RGB images, 3 * S * S bytes each

  int64_t num_views() const { return static_cast<int64_t>(views.size()); }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * 3 * config.image_size * config.image_size; }
};

// Renders the set with OpenMP over objects. on_progress (optional) is called on the calling thread with the
// number of objects finished so far, after each chunk of objects.
DieMini generate_die_mini(const DieMiniConfig& config, const std::function<void(int64_t)>& on_progress = {});

// The factors of view `view_id` of object `object_id` (what generate_die_mini draws for it; exposed for tests).
std::vector<DieViewInfo> die_mini_object_views(const DieMiniConfig& config, int object_id, SdfObject* object);

// File I/O (format above). save writes to path + ".tmp" and renames, so a crash never leaves a half file.
void save_die_mini(const std::string& path, const DieMini& data);
DieMini load_die_mini(const std::string& path);

// "3die-mini_o2000_v10_s32_seed0.bin": the cache file name for a config (supersample 2; other values append
// "_ss<n>").
std::string die_mini_file_name(const DieMiniConfig& config);

// Loads dir/die_mini_file_name(config), or generates it (with a progress bar on stderr when `verbose`) and saves
// it there first. This is how apps get the data: `make data` does not fetch it.
DieMini load_or_generate_die_mini(const std::string& dir, const DieMiniConfig& config, bool verbose = true);

// --- as training data -------------------------------------------------------------------------------------------
// The views of objects [first_object, end_object) as an eq::Dataset (images [N, 3, S, S] in [0, 1], labels =
// class id, class names set) plus per-sample factors. Rows are object-major: row r is view r % V of object
// first_object + r / V.
struct DieMiniDataset {
  Dataset data;
  std::vector<int32_t> object_ids, view_ids;  // per row, ids as in the file
  std::vector<Quat> rotations;                // per row
  int views_per_object = 0;

  int64_t num_objects() const { return views_per_object ? data.size() / views_per_object : 0; }
};
DieMiniDataset die_mini_dataset(const DieMini& set, int first_object, int end_object, const std::string& name);

// The standard split by object: the first 80% of the objects train, the rest test (no object in both).
DieMiniDataset die_mini_split(const DieMini& set, bool train);

// For `apps/classify`-style use: the split of the default config (2,000 objects x 10 views) under
// data_root/3die-mini, generated on first use.
Dataset load_die_mini_classification(const std::string& data_root, bool train);

// Pairs of views with their relative rotations, for SIE: apps/sie/views.h (ViewSet, sample_pairs).

}  // namespace eq
