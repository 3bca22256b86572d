// 3DIE-mini: object recipes, the sampled factors, determinism across thread counts and object counts, the file
// round trip and every kind of corrupt file, the dataset/split views and the view pairs with their relative
// rotations. All sets here are tiny (a few objects at 8-16 px) so the whole file runs in about a second.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "apps/common/die_mini.h"
#include "engine/parallel.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::TempDir;
using eq::testing::write_bytes;
using Bytes = std::vector<unsigned char>;

namespace {

constexpr float kPi = 3.14159265358979f;

DieMiniConfig tiny_config(int objects = 14, int views = 3) {
  DieMiniConfig c;
  c.objects = objects;
  c.views = views;
  c.image_size = 12;
  c.seed = 5;
  c.supersample = 1;
  return c;
}

Bytes read_all(const std::string& path) {
  const std::string s = eq::testing::read_text(path);
  return Bytes(s.begin(), s.end());
}

template <class T>
void poke(Bytes& b, size_t at, T value) {
  std::memcpy(b.data() + at, &value, sizeof(T));
}

// Largest distance from the origin of the object's surface, found by marching inwards from many directions.
float measured_extent(const SdfObject& o) {
  float extent = 0;
  for (int i = 0; i < 2000; ++i) {
    const float y = 1 - 2 * (i + 0.5f) / 2000, r = std::sqrt(1 - y * y);
    const Vec3 u{r * std::cos(0.7f * i), y, r * std::sin(0.7f * i)};
    const float t = march(o, u * 3.0f, u * -1.0f, 0, 3.0f);
    if (t >= 0) extent = std::max(extent, 3.0f - t);
  }
  return extent;
}

bool same_factors(const DieViewInfo& a, const DieViewInfo& b) {
  return a.class_id == b.class_id && a.object_id == b.object_id && a.view_id == b.view_id &&
         a.rotation.w == b.rotation.w && a.rotation.x == b.rotation.x && a.rotation.y == b.rotation.y &&
         a.rotation.z == b.rotation.z && std::equal(a.euler, a.euler + 3, b.euler) && a.floor_hue == b.floor_hue &&
         a.light_dir.x == b.light_dir.x && a.light_dir.y == b.light_dir.y && a.light_dir.z == b.light_dir.z &&
         a.light_hue == b.light_hue;
}

}  // namespace

TEST_CASE("die_mini: every class makes an object of radius about 1 inside its bound") {
  REQUIRE(die_mini_class_names().size() == size_t(kDieMiniClasses));
  for (int cls = 0; cls < kDieMiniClasses; ++cls) {
    INFO("class " << die_mini_class_names()[cls]);
    Rng rng(40 + cls);
    const SdfObject o = make_die_object(cls, rng);
    const float extent = measured_extent(o);
    CHECK(extent > 0.97f);
    CHECK(extent < 1.04f);            // below the floor's clearance (kFloorY = -1.08)
    CHECK(o.bound >= extent - 1e-3f);  // the marching sphere holds the whole object
  }
  Rng rng(0);
  CHECK_THROWS_NAMING(make_die_object(kDieMiniClasses, rng), "make_die_object", "class id 13");
}

TEST_CASE("die_mini: the factors follow the documented distributions") {
  const DieMiniConfig config = tiny_config(26, 20);
  for (int k = 0; k < config.objects; ++k) {
    const std::vector<DieViewInfo> views = die_mini_object_views(config, k, nullptr);
    REQUIRE(views.size() == size_t(config.views));
    for (const DieViewInfo& v : views) {
      CHECK(v.class_id == k % kDieMiniClasses);
      CHECK(v.object_id == k);
      for (float angle : v.euler) CHECK(std::fabs(angle) <= kPi / 2);
      const Quat q = euler_xyz_to_quat(v.euler[0], v.euler[1], v.euler[2]);
      CHECK(v.rotation.w == q.w);
      CHECK(v.rotation.z == q.z);
      CHECK(v.rotation.w >= 0);
      CHECK(length(v.light_dir) == doctest::Approx(1.0f).epsilon(1e-5));
      const float elevation = std::asin(v.light_dir.y) * 180 / kPi;
      CHECK(elevation >= 29.99f);
      CHECK(elevation <= 75.01f);
      const float azimuth = std::atan2(v.light_dir.x, v.light_dir.z) * 180 / kPi;
      CHECK(std::fabs(azimuth) <= 120.01f);
      CHECK((v.floor_hue >= 0 && v.floor_hue < 1 && v.light_hue >= 0 && v.light_hue < 1));
    }
  }
}

TEST_CASE("die_mini: the same seed gives the same bytes on 1 and 2 threads and for more objects") {
  const int before = num_threads();
  set_num_threads(1);
  const DieMini one = generate_die_mini(tiny_config());
  set_num_threads(2);
  std::vector<int64_t> progress;
  const DieMini two = generate_die_mini(tiny_config(), [&](int64_t done) { progress.push_back(done); });
  set_num_threads(before);
  CHECK(one.pixels == two.pixels);
  REQUIRE(one.num_views() == two.num_views());
  for (int64_t i = 0; i < one.num_views(); ++i) CHECK(same_factors(one.views[i], two.views[i]));
  REQUIRE_FALSE(progress.empty());
  CHECK(progress.back() == tiny_config().objects);

  // Object k depends only on (seed, k): a longer set starts with the same bytes; another seed differs.
  const DieMini longer = generate_die_mini(tiny_config(17));
  CHECK(std::equal(one.pixels.begin(), one.pixels.end(), longer.pixels.begin()));
  DieMiniConfig other = tiny_config();
  other.seed = 6;
  CHECK(generate_die_mini(other).pixels != one.pixels);
  // Views of one object differ from each other (rotation, floor, light all change).
  const int64_t bytes = 3 * 12 * 12;
  CHECK(std::memcmp(one.image(0), one.image(1), bytes) != 0);
}

TEST_CASE("die_mini: file round trip and the documented layout") {
  TempDir dir("die_mini_io");
  const DieMini set = generate_die_mini(tiny_config(3, 2));
  const std::string path = dir.file("set.bin");
  save_die_mini(path, set);
  const Bytes bytes = read_all(path);
  const int64_t record = 60 + 3 * 12 * 12;
  REQUIRE(int64_t(bytes.size()) == kDieMiniHeaderBytes + 6 * record);
  CHECK(std::memcmp(bytes.data(), "3DIEMINI", 8) == 0);
  uint32_t objects, image_size;
  std::memcpy(&objects, bytes.data() + 12, 4);
  std::memcpy(&image_size, bytes.data() + 20, 4);
  CHECK(objects == 3);
  CHECK(image_size == 12);
  // Record 3 = object 1, view 1: its ids, its quaternion's w and its first pixel byte, where the format says.
  const uint8_t* r3 = bytes.data() + kDieMiniHeaderBytes + 3 * record;
  int32_t ids[3];
  float w;
  std::memcpy(ids, r3, 12);
  std::memcpy(&w, r3 + 12, 4);
  CHECK(ids[0] == 1);
  CHECK(ids[1] == 1);
  CHECK(ids[2] == 1);
  CHECK(w == set.views[3].rotation.w);
  CHECK(r3[60] == set.image(3)[0]);

  const DieMini back = load_die_mini(path);
  CHECK(back.pixels == set.pixels);
  CHECK(back.config.objects == 3);
  CHECK(back.config.views == 2);
  CHECK(back.config.seed == 5);
  CHECK(back.config.supersample == 1);
  for (int64_t i = 0; i < set.num_views(); ++i) CHECK(same_factors(back.views[i], set.views[i]));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("die_mini: every corruption is reported with the file name and the fault") {
  TempDir dir("die_mini_bad");
  const std::string good = dir.file("good.bin");
  save_die_mini(good, generate_die_mini(tiny_config(3, 2)));
  const Bytes ok = read_all(good);
  const size_t record = 60 + 3 * 12 * 12, rec0 = kDieMiniHeaderBytes, rec1 = rec0 + record;
  int case_id = 0;
  auto broken = [&](Bytes b) {
    const std::string path = dir.file("broken_" + std::to_string(case_id++) + ".bin");
    write_bytes(path, b);
    return path;
  };
  auto with = [&](auto edit) {
    Bytes b = ok;
    edit(b);
    return broken(b);
  };
  std::string p;

  CHECK_THROWS_NAMING(load_die_mini(dir.file("missing.bin")), "missing.bin", "no such file");
  p = broken(Bytes(ok.begin(), ok.begin() + 30));
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "too short", "30 bytes");
  p = with([](Bytes& b) { b[0] = 'X'; });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "bad magic");
  p = with([](Bytes& b) { poke<uint32_t>(b, 8, 2); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "version 2");
  p = with([](Bytes& b) { poke<uint32_t>(b, 12, 0); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "bad counts");
  p = with([](Bytes& b) { poke<uint32_t>(b, 20, 1000); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "image size 1000");
  p = with([](Bytes& b) { poke<uint32_t>(b, 24, 10); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "10 classes");
  p = with([&](Bytes& b) { poke<uint32_t>(b, 28, uint32_t(record + 1)); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "records of");
  p = broken(Bytes(ok.begin(), ok.end() - 10));
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "truncated", "3 objects x 2 views");
  p = with([](Bytes& b) { poke<uint32_t>(b, 12, 4); });  // header promises more objects than stored
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "truncated", "4 objects");
  p = with([](Bytes& b) { b.insert(b.end(), 5, 0); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "5 unexpected bytes");
  p = with([](Bytes& b) { poke<uint32_t>(b, 12, 2); });  // fewer objects than stored
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "unexpected bytes", "counts mismatch");
  p = with([&](Bytes& b) { poke<int32_t>(b, rec1 + 8, 0); });  // record 1 claims to be view 0
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "record 1", "should be object 0 view 1");
  p = with([&](Bytes& b) { poke<int32_t>(b, rec0, 99); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "record 0", "class 99");
  p = with([&](Bytes& b) { poke<int32_t>(b, rec1, 5); });  // view 1 disagrees with view 0 about the class
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "record 1", "class 5", "view 0 says 0");
  p = with([&](Bytes& b) { poke<float>(b, rec0 + 12, 2.0f); });
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "record 0", "quaternion");
  p = with([&](Bytes& b) { poke<float>(b, rec1 + 12 + 7 * 4, NAN); });  // floor hue
  CHECK_THROWS_NAMING(load_die_mini(p), p.c_str(), "record 1", "non-finite");
  // The intact file still loads (the cases above really are what broke the others).
  CHECK(load_die_mini(good).num_views() == 6);
}

TEST_CASE("die_mini: load_or_generate renders once, then reads the cache") {
  TempDir dir("die_mini_cache");
  const DieMiniConfig config = tiny_config(4, 2);
  const DieMini first = load_or_generate_die_mini(dir.path(), config, /*verbose=*/false);
  const std::string path = dir.path() + "/" + die_mini_file_name(config);
  CHECK(die_mini_file_name(config) == "3die-mini_o4_v2_s12_seed5_ss1.bin");
  REQUIRE(std::filesystem::exists(path));
  const DieMini second = load_or_generate_die_mini(dir.path(), config, false);
  CHECK(second.pixels == first.pixels);
  // A file whose name promises another configuration is refused rather than silently used.
  DieMiniConfig other = config;
  other.objects = 5;
  std::filesystem::copy_file(path, dir.path() + "/" + die_mini_file_name(other));
  CHECK_THROWS_NAMING(load_or_generate_die_mini(dir.path(), other, false), "3die-mini_o5_v2", "delete it");
  CHECK_THROWS_NAMING(generate_die_mini(tiny_config(0, 2)), "generate_die_mini", "objects 0");
}

TEST_CASE("die_mini: datasets, the object split and view pairs with their relative rotation") {
  const DieMini set = generate_die_mini(tiny_config(10, 3));
  const DieMiniDataset train = die_mini_split(set, true), test = die_mini_split(set, false);
  CHECK(train.num_objects() == 8);
  CHECK(test.num_objects() == 2);
  CHECK(train.data.images.shape() == Shape{24, 3, 12, 12});
  CHECK(test.data.size() == 6);
  CHECK(train.data.num_classes == kDieMiniClasses);
  CHECK(train.data.class_names[10] == "mug");
  std::set<int> train_objects(train.object_ids.begin(), train.object_ids.end());
  for (int id : test.object_ids) CHECK(train_objects.count(id) == 0);
  // Row r of the test split is view r % 3 of object 8 + r / 3, scaled to [0, 1].
  CHECK(test.object_ids[4] == 9);
  CHECK(test.view_ids[4] == 1);
  CHECK(test.data.labels[4] == 9 % kDieMiniClasses);
  CHECK(test.data.images.data()[4 * 432 + 17] == doctest::Approx(set.image(28)[17] / 255.0f));

  // Pairs of views and their relative rotations: apps/sie/views.h (tests/test_sie_views.cpp).
  CHECK_THROWS_NAMING(die_mini_dataset(set, 4, 4, "empty"), "die_mini_dataset", "[4, 4)");
}
