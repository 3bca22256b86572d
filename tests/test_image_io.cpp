// Image files: PNG round trips, clamping, channel conversion, and errors that name the file.
#include <doctest/doctest.h>

#include <stb/stb_image_write.h>

#include <cmath>

#include "engine/image_io.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::TempDir;

TEST_CASE("image_io: PNG round trip keeps 8-bit values for 1, 3 and 4 channels") {
  TempDir dir("image_io_roundtrip");
  for (int64_t c : {1, 3, 4}) {
    Tensor img({c, 5, 7});
    // Every value is an exact byte k/255, so the round trip must be exact up to float rounding.
    for (int64_t i = 0; i < img.numel(); ++i) img.data()[i] = static_cast<float>((i * 37 + c) % 256) / 255.0f;
    const std::string path = dir.file("img" + std::to_string(c) + ".png");
    save_png(path, img);
    Tensor back = load_image(path);
    INFO("channels " << c);
    REQUIRE(back.shape() == img.shape());
    CHECK(eq::testing::max_abs_diff(back, img) < 1e-6f);
  }
}

TEST_CASE("image_io: files are interleaved RGB, tensors planar [C, H, W]") {
  // Written by stb directly, so a layout bug shared by save_png and load_image cannot hide here.
  TempDir dir("image_io_layout");
  const unsigned char pixels[] = {255, 0, 0, /**/ 0, 255, 0, /**/ 0, 0, 255, /**/ 51, 102, 153};  // 2x2, row-major
  REQUIRE(stbi_write_png(dir.file("raw.png").c_str(), 2, 2, 3, pixels, 2 * 3));
  Tensor img = load_image(dir.file("raw.png"));
  REQUIRE(img.shape() == Shape{3, 2, 2});
  CHECK(img.at({0, 0, 0}) == 1.0f);  // top-left red
  CHECK(img.at({1, 0, 1}) == 1.0f);  // top-right green
  CHECK(img.at({2, 1, 0}) == 1.0f);  // bottom-left blue
  CHECK(img.at({0, 0, 1}) == 0.0f);
  CHECK(img.at({0, 1, 1}) == doctest::Approx(0.2f));
  CHECK(img.at({1, 1, 1}) == doctest::Approx(0.4f));
  CHECK(img.at({2, 1, 1}) == doctest::Approx(0.6f));
}

TEST_CASE("image_io: [H, W] saves as grey; values are clamped and NaN becomes 0") {
  TempDir dir("image_io_clamp");
  Tensor img = Tensor::from({2, 3}, {-0.5f, 0.0f, 0.5f, 1.0f, 1.7f, std::nanf("")});
  save_png(dir.file("grey.png"), img);
  Tensor back = load_image(dir.file("grey.png"));
  REQUIRE(back.shape() == Shape{1, 2, 3});
  const std::vector<float> v = back.to_vector();
  CHECK(v[0] == 0.0f);
  CHECK(v[1] == 0.0f);
  CHECK(v[2] == doctest::Approx(128.0f / 255.0f));  // 0.5 * 255 = 127.5 rounds to 128
  CHECK(v[3] == 1.0f);
  CHECK(v[4] == 1.0f);
  CHECK(v[5] == 0.0f);
}

TEST_CASE("image_io: load converts channels on request") {
  TempDir dir("image_io_channels");
  Tensor grey = Tensor::from({1, 1, 2}, {0.0f, 1.0f});
  save_png(dir.file("g.png"), grey);
  Tensor rgb = load_image(dir.file("g.png"), 3);
  REQUIRE(rgb.shape() == Shape{3, 1, 2});
  CHECK(rgb.to_vector() == std::vector<float>{0, 1, 0, 1, 0, 1});
  Tensor color = Tensor::from({3, 1, 1}, {1.0f, 0.0f, 0.0f});  // pure red
  save_png(dir.file("red.png"), color);
  Tensor as_grey = load_image(dir.file("red.png"), 1);
  REQUIRE(as_grey.shape() == Shape{1, 1, 1});
  CHECK(as_grey.item() > 0.2f);  // stb's luma of pure red: about 0.3
  CHECK(as_grey.item() < 0.4f);
}

TEST_CASE("image_io: errors name the file and the reason") {
  TempDir dir("image_io_errors");
  const std::string missing = dir.file("nope.png");
  CHECK_THROWS_NAMING(load_image(missing), "nope.png", "load_image");
  const std::string text = dir.file("notes.png");
  eq::testing::write_bytes(text, {'h', 'e', 'l', 'l', 'o'});
  CHECK_THROWS_NAMING(load_image(text), "notes.png");
  CHECK_THROWS_NAMING(load_image(text, 2), "channels");
  CHECK_THROWS_NAMING(save_png(dir.file("x.png"), Tensor({2, 3, 4, 5})), "x.png", "[2, 3, 4, 5]");
  CHECK_THROWS_NAMING(save_png(dir.file("y.png"), Tensor({5, 4, 4})), "y.png", "5");
  CHECK_THROWS_NAMING(save_png(dir.path() + "/no/such/folder/z.png", Tensor({4, 4})), "z.png");
}

TEST_CASE("image_io: image extensions") {
  CHECK(has_image_extension("a/b/photo.PNG"));
  CHECK(has_image_extension("x.jpeg"));
  CHECK(has_image_extension("x.bmp"));
  CHECK_FALSE(has_image_extension("readme.txt"));
  CHECK_FALSE(has_image_extension("dir.png/file"));
  CHECK_FALSE(has_image_extension("png"));
}
