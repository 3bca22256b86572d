// equilab — 3DIE-mini: object recipes, view sampling, the binary file format and the dataset views of it.
// See die_mini.h for the format and conventions.
#include "apps/common/die_mini.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "apps/common/progress.h"
#include "engine/error.h"

namespace eq {
namespace fs = std::filesystem;

namespace {

constexpr float kPi = 3.14159265358979f;
constexpr char kMagic[8] = {'3', 'D', 'I', 'E', 'M', 'I', 'N', 'I'};
constexpr int kRecordHeaderBytes = 3 * 4 + 12 * 4;  // three int32 ids, twelve float32 factors

int64_t record_bytes(int image_size) { return kRecordHeaderBytes + 3 * int64_t(image_size) * image_size; }

Primitive make_primitive(PrimitiveKind kind, float a, float b, float c, Vec3 offset = {},
                         const Mat3& placement = Mat3::identity(), bool subtract = false) {
  Primitive p;
  p.kind = kind;
  p.a = a;
  p.b = b;
  p.c = c;
  p.offset = offset;
  p.to_local = placement.transposed();
  p.subtract = subtract;
  return p;
}

Primitive box(float a, float b, float c, Vec3 offset = {}) {
  return make_primitive(PrimitiveKind::kBox, a, b, c, offset);
}

// The recipes: proportions in raw units (the object is rescaled to radius 1 afterwards). Ranges are chosen so the
// classes stay apart (a capsule is thinner than a cylinder, a torus' hole is always open, ...).
void add_class_primitives(int class_id, Rng& rng, std::vector<Primitive>& out) {
  auto u = [&](float lo, float hi) { return rng.uniform(lo, hi); };
  switch (class_id) {
    case 0:  // box
      out.push_back(box(u(0.3f, 1.0f), u(0.3f, 1.0f), u(0.3f, 1.0f)));
      return;
    case 1:  // ellipsoid
      out.push_back(make_primitive(PrimitiveKind::kEllipsoid, u(0.35f, 1.0f), u(0.35f, 1.0f), u(0.35f, 1.0f)));
      return;
    case 2:  // cylinder (axis y)
      out.push_back(make_primitive(PrimitiveKind::kCylinder, u(0.4f, 0.7f), u(0.35f, 0.9f), 0));
      return;
    case 3: {  // cone, nearly pointed
      const float r = u(0.45f, 0.8f);
      out.push_back(make_primitive(PrimitiveKind::kCone, r, u(0.5f, 1.0f), r * u(0.0f, 0.12f)));
      return;
    }
    case 4:  // torus (axis y)
      out.push_back(make_primitive(PrimitiveKind::kTorus, u(0.6f, 0.85f), u(0.15f, 0.3f), 0));
      return;
    case 5:  // capsule (axis y)
      out.push_back(make_primitive(PrimitiveKind::kCapsule, u(0.18f, 0.32f), u(0.55f, 0.9f), 0));
      return;
    case 6:  // octahedron with three different semi-axes
      out.push_back(make_primitive(PrimitiveKind::kOctahedron, u(0.45f, 1.0f), u(0.45f, 1.0f), u(0.45f, 1.0f)));
      return;
    case 7:  // hexagonal prism (axis z)
      out.push_back(make_primitive(PrimitiveKind::kHexPrism, u(0.4f, 0.7f), u(0.3f, 0.9f), 0));
      return;
    case 8: {  // L: a tall bar and a foot bar in the xy-plane, centred on their bounding box
      const float t = u(0.2f, 0.32f), height = u(1.2f, 1.8f), width = u(0.8f, 1.3f), depth = u(0.15f, 0.3f);
      const Vec3 centre{width / 2, height / 2, 0};
      out.push_back(box(t / 2, height / 2, depth, Vec3{t / 2, height / 2, 0} - centre));
      out.push_back(box(width / 2, t / 2, depth, Vec3{width / 2, t / 2, 0} - centre));
      return;
    }
    case 9: {  // cross: a long upright bar crossed above its middle by a shorter one (a Latin cross)
      const float s = u(0.1f, 0.16f), height = u(1.6f, 2.0f), width = u(0.9f, 1.4f), depth = u(0.1f, 0.22f);
      const float cross_y = height * u(0.1f, 0.25f);
      out.push_back(box(s, height / 2, depth));
      out.push_back(box(width / 2, s, depth, Vec3{0, cross_y, 0}));
      return;
    }
    case 10: {  // mug: a cylinder with an open-topped cavity and a ring handle on the +x side
      const float r = u(0.42f, 0.58f), h = u(0.45f, 0.7f), wall = u(0.07f, 0.1f), bottom = 0.12f;
      out.push_back(make_primitive(PrimitiveKind::kCylinder, r, h, 0));
      const Mat3 ring_in_xy_plane = quat_to_matrix(axis_angle({1, 0, 0}, kPi / 2));
      out.push_back(make_primitive(PrimitiveKind::kTorus, h * u(0.45f, 0.6f), u(0.06f, 0.09f), 0, Vec3{r, 0, 0},
                                   ring_in_xy_plane));
      out.push_back(make_primitive(PrimitiveKind::kCylinder, r - wall, h, 0, Vec3{0, bottom, 0}, Mat3::identity(),
                                   /*subtract=*/true));
      return;
    }
    case 11: {  // table: a top on four legs
      const float a = u(0.7f, 1.0f), c = u(0.4f, 0.75f), top = u(0.05f, 0.08f), leg_h = u(0.35f, 0.6f),
                  leg_w = u(0.04f, 0.07f), inset = u(0.0f, 0.1f);
      out.push_back(box(a, top, c, Vec3{0, leg_h, 0}));
      const float lx = a - leg_w - inset, lz = c - leg_w - inset;
      for (float sx : {-1.0f, 1.0f})
        for (float sz : {-1.0f, 1.0f}) out.push_back(box(leg_w, leg_h, leg_w, Vec3{sx * lx, -top, sz * lz}));
      return;
    }
    case 12: {  // chair: a seat on four legs with a back rest along -z
      const float sw = u(0.4f, 0.55f), sd = u(0.4f, 0.55f), seat = u(0.05f, 0.07f), leg_h = u(0.3f, 0.45f),
                  leg_w = u(0.04f, 0.06f), back_h = u(0.35f, 0.55f), back_t = u(0.04f, 0.06f);
      out.push_back(box(sw, seat, sd));
      for (float sx : {-1.0f, 1.0f})
        for (float sz : {-1.0f, 1.0f})
          out.push_back(box(leg_w, leg_h, leg_w, Vec3{sx * (sw - leg_w), -seat - leg_h, sz * (sd - leg_w)}));
      out.push_back(box(sw, back_h, back_t, Vec3{0, seat + back_h, -sd + back_t}));
      return;
    }
  }
  fail("3die-mini: class id ", class_id, " is outside 0..", kDieMiniClasses - 1);
}

// A seed per object from (seed, object id), well mixed so neighbouring ids give unrelated streams.
uint64_t object_seed(uint64_t seed, int object_id) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(object_id) + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void check_config(const DieMiniConfig& c, const char* op) {
  check(c.objects >= 1 && c.views >= 1, op, ": need at least 1 object and 1 view (objects ", c.objects, ", views ",
        c.views, ")");
  check(int64_t(c.objects) * c.views <= (int64_t(1) << 31) - 1, op, ": ", c.objects, " objects x ", c.views,
        " views is too many");
  check(c.image_size >= 4 && c.image_size <= 512, op, ": image size ", c.image_size, " is outside 4..512");
  check(c.supersample >= 1 && c.supersample <= 8, op, ": supersample ", c.supersample, " is outside 1..8");
}

bool little_endian() {
  const uint32_t one = 1;
  uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

template <class T>
void put(std::vector<uint8_t>& buf, T value) {
  const size_t at = buf.size();
  buf.resize(at + sizeof(T));
  std::memcpy(buf.data() + at, &value, sizeof(T));
}
template <class T>
T get(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

const std::vector<std::string>& die_mini_class_names() {
  static const std::vector<std::string> names = {"box",        "ellipsoid", "cylinder", "cone",  "torus",
                                                 "capsule",    "octahedron", "hexprism", "lshape", "cross",
                                                 "mug",        "table",      "chair"};
  return names;
}

SdfObject make_die_object(int class_id, Rng& rng) {
  check(class_id >= 0 && class_id < kDieMiniClasses, "make_die_object: class id ", class_id, " is outside 0..",
        kDieMiniClasses - 1);
  SdfObject object;
  add_class_primitives(class_id, rng, object.primitives);
  const float hue = rng.uniform();
  object.base_color = hsv_to_rgb(hue, rng.uniform(0.5f, 0.85f), rng.uniform(0.45f, 0.85f));
  object.accent_color = hsv_to_rgb(hue + 0.5f, 0.25f, 0.9f);
  object.normalize_size(1.0f);
  return object;
}

std::vector<DieViewInfo> die_mini_object_views(const DieMiniConfig& config, int object_id, SdfObject* object) {
  check_config(config, "die_mini_object_views");
  check(object_id >= 0 && object_id < config.objects, "die_mini_object_views: object id ", object_id,
        " is outside 0..", config.objects - 1);
  Rng rng(object_seed(config.seed, object_id));
  const int class_id = object_id % kDieMiniClasses;
  SdfObject made = make_die_object(class_id, rng);  // the object's draws come first, then the views' in order
  std::vector<DieViewInfo> views(config.views);
  for (int v = 0; v < config.views; ++v) {
    DieViewInfo& info = views[v];
    info.class_id = class_id;
    info.object_id = object_id;
    info.view_id = v;
    for (float& angle : info.euler) angle = rng.uniform(-kPi / 2, kPi / 2);
    info.rotation = euler_xyz_to_quat(info.euler[0], info.euler[1], info.euler[2]);
    info.floor_hue = rng.uniform();
    const float elevation = rng.uniform(30.0f, 75.0f) * kPi / 180, azimuth = rng.uniform(-120.0f, 120.0f) * kPi / 180;
    info.light_dir = {std::cos(elevation) * std::sin(azimuth), std::sin(elevation),
                      std::cos(elevation) * std::cos(azimuth)};
    info.light_hue = rng.uniform();
  }
  if (object) *object = std::move(made);
  return views;
}

DieMini generate_die_mini(const DieMiniConfig& config, const std::function<void(int64_t)>& on_progress) {
  check_config(config, "generate_die_mini");
  DieMini set;
  set.config = config;
  const int64_t image_bytes = 3 * int64_t(config.image_size) * config.image_size;
  set.views.resize(static_cast<size_t>(config.objects) * config.views);
  set.pixels.resize(set.views.size() * image_bytes);
  const RenderOptions options{config.image_size, config.supersample};
  // Chunks only pace the progress callback; each object writes its own slots, so the bytes never depend on the
  // schedule.
  const int chunk = 32;
  for (int begin = 0; begin < config.objects; begin += chunk) {
    const int end = std::min(config.objects, begin + chunk);
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = begin; k < end; ++k) {
      SdfObject object;
      const std::vector<DieViewInfo> views = die_mini_object_views(config, k, &object);
      for (int v = 0; v < config.views; ++v) {
        const int64_t row = int64_t(k) * config.views + v;
        set.views[row] = views[v];
        Scene scene;
        scene.object = &object;
        scene.rotation = views[v].rotation;
        scene.floor_color = hsv_to_rgb(views[v].floor_hue, 0.45f, 0.55f);
        scene.light_dir = views[v].light_dir;
        scene.light_color = hsv_to_rgb(views[v].light_hue, 0.3f, 0.85f);
        render(scene, options, set.pixels.data() + row * image_bytes);
      }
    }
    if (on_progress) on_progress(end);
  }
  return set;
}

std::string die_mini_file_name(const DieMiniConfig& c) {
  std::string name = "3die-mini_o" + std::to_string(c.objects) + "_v" + std::to_string(c.views) + "_s" +
                     std::to_string(c.image_size) + "_seed" + std::to_string(c.seed);
  if (c.supersample != 2) name += "_ss" + std::to_string(c.supersample);
  return name + ".bin";
}

// --- file I/O ----------------------------------------------------------------------------------------------------
void save_die_mini(const std::string& path, const DieMini& set) {
  check(little_endian(), path, ": 3DIE-mini files are little-endian and this machine is not");
  const DieMiniConfig& c = set.config;
  check_config(c, "save_die_mini");
  const int64_t n = int64_t(c.objects) * c.views, image_bytes = 3 * int64_t(c.image_size) * c.image_size;
  check(set.num_views() == n && int64_t(set.pixels.size()) == n * image_bytes, "save_die_mini: ", path, ": ",
        c.objects, " objects x ", c.views, " views need ", n, " views and ", n * image_bytes, " pixel bytes, but the "
        "set holds ", set.num_views(), " and ", set.pixels.size());
  std::vector<uint8_t> header;
  header.insert(header.end(), kMagic, kMagic + 8);
  put<uint32_t>(header, kDieMiniVersion);
  put<uint32_t>(header, c.objects);
  put<uint32_t>(header, c.views);
  put<uint32_t>(header, c.image_size);
  put<uint32_t>(header, kDieMiniClasses);
  put<uint32_t>(header, static_cast<uint32_t>(record_bytes(c.image_size)));
  put<uint64_t>(header, c.seed);
  put<uint32_t>(header, c.supersample);
  header.resize(kDieMiniHeaderBytes, 0);

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(bool(out), tmp, ": cannot open for writing (", std::strerror(errno), ")");
    out.write(reinterpret_cast<const char*>(header.data()), header.size());
    std::vector<uint8_t> record;
    for (int64_t i = 0; i < n; ++i) {
      const DieViewInfo& v = set.views[i];
      record.clear();
      put<int32_t>(record, v.class_id);
      put<int32_t>(record, v.object_id);
      put<int32_t>(record, v.view_id);
      for (float f : {v.rotation.w, v.rotation.x, v.rotation.y, v.rotation.z, v.euler[0], v.euler[1], v.euler[2],
                      v.floor_hue, v.light_dir.x, v.light_dir.y, v.light_dir.z, v.light_hue})
        put<float>(record, f);
      record.insert(record.end(), set.image(i), set.image(i) + image_bytes);
      out.write(reinterpret_cast<const char*>(record.data()), record.size());
    }
    check(bool(out.flush()), tmp, ": write failed (", std::strerror(errno), ")");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  check(!ec, path, ": cannot move ", tmp, " into place (", ec.message(), ")");
}

DieMini load_die_mini(const std::string& path) {
  check(little_endian(), path, ": 3DIE-mini files are little-endian and this machine is not");
  if (!fs::is_regular_file(path)) fail(path, ": no such file (make one with build/make3die)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size < kDieMiniHeaderBytes)
    fail(path, ": too short for a 3DIE-mini header (", size, " bytes, need ", kDieMiniHeaderBytes, ")");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0)
    fail(path, ": bad magic (a 3DIE-mini file starts with \"3DIEMINI\")");
  const uint8_t* h = bytes.data();
  const uint32_t version = get<uint32_t>(h + 8);
  if (version != kDieMiniVersion)
    fail(path, ": version ", version, " is not supported (this build reads version ", kDieMiniVersion, ")");
  DieMini set;
  DieMiniConfig& c = set.config;
  const uint32_t objects = get<uint32_t>(h + 12), views = get<uint32_t>(h + 16), image_size = get<uint32_t>(h + 20),
                 classes = get<uint32_t>(h + 24), rec = get<uint32_t>(h + 28), supersample = get<uint32_t>(h + 40);
  c.seed = get<uint64_t>(h + 32);
  if (objects < 1 || views < 1 || objects > (1u << 30) || views > (1u << 20) || uint64_t(objects) * views > (1u << 31))
    fail(path, ": bad counts in the header (", objects, " objects, ", views, " views)");
  if (image_size < 4 || image_size > 512) fail(path, ": bad image size ", image_size, " in the header (4..512)");
  if (classes != uint32_t(kDieMiniClasses))
    fail(path, ": header says ", classes, " classes but 3DIE-mini version 1 has ", kDieMiniClasses);
  if (supersample < 1 || supersample > 8) fail(path, ": bad supersample ", supersample, " in the header (1..8)");
  c.objects = int(objects);
  c.views = int(views);
  c.image_size = int(image_size);
  c.supersample = int(supersample);
  if (int64_t(rec) != record_bytes(c.image_size))
    fail(path, ": header says records of ", rec, " bytes but ", c.image_size, "x", c.image_size, " images need ",
         record_bytes(c.image_size));
  const int64_t n = int64_t(c.objects) * c.views;
  const int64_t expected = kDieMiniHeaderBytes + n * int64_t(rec);
  if (size < expected)
    fail(path, ": truncated: the header promises ", c.objects, " objects x ", c.views, " views = ", n,
         " records (", expected, " bytes) but the file holds ", size, " bytes");
  if (size > expected)
    fail(path, ": ", size - expected, " unexpected bytes after the last of ", n, " records (counts mismatch?)");

  const int64_t image_bytes = 3 * int64_t(c.image_size) * c.image_size;
  set.views.resize(n);
  set.pixels.resize(n * image_bytes);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = bytes.data() + kDieMiniHeaderBytes + i * int64_t(rec);
    DieViewInfo& v = set.views[i];
    v.class_id = get<int32_t>(r);
    v.object_id = get<int32_t>(r + 4);
    v.view_id = get<int32_t>(r + 8);
    float f[12];
    std::memcpy(f, r + 12, sizeof f);
    v.rotation = {f[0], f[1], f[2], f[3]};
    std::copy(f + 4, f + 7, v.euler);
    v.floor_hue = f[7];
    v.light_dir = {f[8], f[9], f[10]};
    v.light_hue = f[11];
    const int64_t want_object = i / c.views, want_view = i % c.views;
    if (v.object_id != want_object || v.view_id != want_view)
      fail(path, ": record ", i, " is object ", v.object_id, " view ", v.view_id, " but should be object ",
           want_object, " view ", want_view, " (records are object-major)");
    if (v.class_id < 0 || v.class_id >= kDieMiniClasses)
      fail(path, ": record ", i, " (object ", v.object_id, " view ", v.view_id, ") has class ", v.class_id,
           " outside 0..", kDieMiniClasses - 1);
    if (v.view_id > 0 && v.class_id != set.views[i - 1].class_id)
      fail(path, ": record ", i, " says object ", v.object_id, " is class ", v.class_id, " but its view 0 says ",
           set.views[i - 1].class_id);
    for (float x : f)
      if (!std::isfinite(x)) fail(path, ": record ", i, " (object ", v.object_id, " view ", v.view_id,
                                  ") holds a non-finite factor");
    const float norm = std::sqrt(f[0] * f[0] + f[1] * f[1] + f[2] * f[2] + f[3] * f[3]);
    if (std::fabs(norm - 1.0f) > 1e-3f || f[0] < 0)
      fail(path, ": record ", i, " (object ", v.object_id, " view ", v.view_id, ") has quaternion (", f[0], ", ",
           f[1], ", ", f[2], ", ", f[3], ") which is not a unit quaternion with w >= 0");
    std::memcpy(set.pixels.data() + i * image_bytes, r + kRecordHeaderBytes, image_bytes);
  }
  return set;
}

DieMini load_or_generate_die_mini(const std::string& dir, const DieMiniConfig& config, bool verbose) {
  check_config(config, "load_or_generate_die_mini");
  const std::string path = (fs::path(dir) / die_mini_file_name(config)).string();
  if (fs::is_regular_file(path)) {
    DieMini set = load_die_mini(path);
    const DieMiniConfig& c = set.config;
    if (c.objects != config.objects || c.views != config.views || c.image_size != config.image_size ||
        c.seed != config.seed || c.supersample != config.supersample)
      fail(path, ": holds ", c.objects, " objects x ", c.views, " views at ", c.image_size, "px (seed ", c.seed,
           ") but its name promises another configuration; delete it to regenerate");
    return set;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, dir, ": cannot create the folder (", ec.message(), ")");
  if (verbose)
    std::fprintf(stderr, "3die-mini: %s is missing; rendering %d objects x %d views (%dx%d)\n", path.c_str(),
                 config.objects, config.views, config.image_size, config.image_size);
  DieMini set;
  if (verbose) {
    ProgressBar bar(config.objects, "3die-mini", "obj");
    int64_t shown = 0;
    set = generate_die_mini(config, [&](int64_t done) {
      for (; shown < done; ++shown) bar.step(1);
    });
    bar.finish();
  } else {
    set = generate_die_mini(config);
  }
  save_die_mini(path, set);
  return set;
}

// --- datasets and pairs --------------------------------------------------------------------------------------------
DieMiniDataset die_mini_dataset(const DieMini& set, int first_object, int end_object, const std::string& name) {
  const DieMiniConfig& c = set.config;
  check(0 <= first_object && first_object < end_object && end_object <= c.objects, "die_mini_dataset: objects [",
        first_object, ", ", end_object, ") are not a non-empty range inside 0..", c.objects);
  const int64_t begin = int64_t(first_object) * c.views, end = int64_t(end_object) * c.views, n = end - begin;
  const int64_t image_bytes = 3 * int64_t(c.image_size) * c.image_size;
  DieMiniDataset out;
  out.views_per_object = c.views;
  out.data.name = name;
  out.data.num_classes = kDieMiniClasses;
  out.data.class_names = die_mini_class_names();
  out.data.images = Tensor({n, 3, c.image_size, c.image_size});
  float* dst = out.data.images.data();
  const uint8_t* src = set.image(begin);
  for (int64_t i = 0; i < n * image_bytes; ++i) dst[i] = src[i] * (1.0f / 255.0f);
  for (int64_t i = begin; i < end; ++i) {
    const DieViewInfo& v = set.views[i];
    out.data.labels.push_back(v.class_id);
    out.object_ids.push_back(v.object_id);
    out.view_ids.push_back(v.view_id);
    out.rotations.push_back(v.rotation);
  }
  return out;
}

DieMiniDataset die_mini_split(const DieMini& set, bool train) {
  const int objects = set.config.objects;
  check(objects >= 2, "die_mini_split: a train/test split needs at least 2 objects, the set has ", objects);
  const int split = std::clamp(static_cast<int>(std::lround(objects * 0.8)), 1, objects - 1);
  return train ? die_mini_dataset(set, 0, split, "3die-mini/train")
               : die_mini_dataset(set, split, objects, "3die-mini/test");
}

Dataset load_die_mini_classification(const std::string& data_root, bool train) {
  const DieMini set = load_or_generate_die_mini((fs::path(data_root) / "3die-mini").string(), DieMiniConfig{});
  return die_mini_split(set, train).data;
}

}  // namespace eq
