// Checkpoints (safetensors): exact bytes of tiny files against hand-built bytes, bit-exact round trips, files whose
// header order differs from their data order, every corruption case giving an error that names the file and the
// problem, atomic saves (a failed save leaves the previous file intact, no temporary files left behind),
// load_into's strict/non-strict checks, and an optimizer resumed from a file stepping exactly like the original.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/checkpoint.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "tests/test_helpers.h"

using namespace eq;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "equilab_ckpt_XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  int count_entries() const { return static_cast<int>(std::distance(fs::directory_iterator(path), {})); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file from a header written by hand, padded with spaces to a multiple of 8, and raw data bytes.
std::string make_file(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  return a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0;
}

}  // namespace

TEST_CASE("checkpoint: exact bytes of tiny files") {
  TempDir dir;
  // The reference implementation's own serialisation test: "attn.0" [1, 2, 3] = 0..5; a 64-byte header needs no
  // padding.
  const std::string path = dir.file("a.safetensors");
  save_safetensors(path, {{"attn.0", Tensor::from({1, 2, 3}, {0, 1, 2, 3, 4, 5})}});
  const unsigned char expected1[] = {
      64, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', 't', 't', 'n', '.', '0', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e',
      '"', ':', '"', 'F', '3', '2', '"', ',', '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '1', ',', '2', ',', '3',
      ']', ',', '"', 'd', 'a', 't', 'a', '_', 'o', 'f', 'f', 's', 'e', 't', 's', '"', ':', '[', '0', ',', '2', '4',
      ']', '}', '}', 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  CHECK(read_bytes(path) == std::string(reinterpret_cast<const char*>(expected1), sizeof(expected1)));

  // Metadata first, tensors in the order given (a scalar, then a vector), header padded by 3 spaces to 144.
  const std::string path2 = dir.file("b.safetensors");
  save_safetensors(path2, {{"b", Tensor::scalar(1.0f)}, {"a", Tensor::from({2}, {-2.0f, 0.5f})}},
                   {{"framework", "pt"}});
  const std::string header2 =
      "{\"__metadata__\":{\"framework\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}   ";
  const std::string expected2 = std::string("\x90\0\0\0\0\0\0\0", 8) + header2 +
                                std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x00\x00\x00\x3f", 12);
  CHECK(header2.size() == 144);
  CHECK(read_bytes(path2) == expected2);

  // No tensors, no metadata: "{}" and six spaces, as the reference writes an empty file.
  const std::string path3 = dir.file("c.safetensors");
  save_safetensors(path3, {});
  CHECK(read_bytes(path3) == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  CHECK(load_safetensors(path3).tensors.empty());
}

TEST_CASE("checkpoint: round trip is bit-exact, with odd values, shapes, names and metadata") {
  TempDir dir;
  Rng rng(9);
  float nan_payload;
  const uint32_t nan_bits = 0x7fc00123u;
  std::memcpy(&nan_payload, &nan_bits, 4);
  const NamedTensors tensors = {
      {"conv.weight", Tensor::randn({4, 3, 3, 3}, rng)},
      {"special", Tensor::from({6}, {nan_payload, -0.0f, INFINITY, -INFINITY, 1e-45f, 3.4e38f})},
      {"scalar", Tensor::scalar(-7.25f)},
      {"empty", Tensor(Shape{0, 3})},
      {"nämé with \"quotes\", \\ and\nnewline\t", Tensor::arange(5)},
  };
  const CheckpointMetadata meta = {{"epoch", "12"}, {"note", "line1\nline2 \"q\" \x01 é"}, {"", ""}};
  const std::string path = dir.file("round.safetensors");
  save_safetensors(path, tensors, meta);
  const Checkpoint ck = load_safetensors(path);
  REQUIRE(ck.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO("tensor " << tensors[i].first);
    CHECK(ck.tensors[i].first == tensors[i].first);
    CHECK(bit_equal(ck.tensors[i].second, tensors[i].second));
  }
  CHECK(bits_of(ck.get("special").data()[0]) == nan_bits);
  CHECK(bits_of(ck.get("special").data()[1]) == 0x80000000u);
  CHECK(ck.metadata == meta);
  CHECK(ck.contains("scalar"));
  CHECK_FALSE(ck.contains("nope"));
  CHECK_THROWS_NAMING(ck.get("nope"), "no tensor named 'nope'", "conv.weight", "scalar");
}

TEST_CASE("checkpoint: reads files whose header order differs from the data order, with escapes and spaces") {
  TempDir dir;
  const std::string path = dir.file("other.safetensors");
  // As another writer may produce: tensors listed out of offset order, metadata last, whitespace, \u escapes.
  const std::string header =
      "{ \"second\" : {\"shape\": [1], \"dtype\": \"F32\", \"data_offsets\": [4, 8]},\n"
      "  \"caf\\u00e9\\ud83d\\ude00\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},\n"
      "  \"__metadata__\": {\"format\": \"pt\"} }";
  write_bytes(path, make_file(header, std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8)));
  const Checkpoint ck = load_safetensors(path);
  REQUIRE(ck.tensors.size() == 2);
  CHECK(ck.tensors[0].first == "caf\xc3\xa9\xf0\x9f\x98\x80");  // "café😀", first in the data
  CHECK(ck.tensors[0].second.item() == 1.0f);
  CHECK(ck.tensors[1].first == "second");
  CHECK(ck.tensors[1].second.item() == 2.0f);
  CHECK(ck.metadata.at("format") == "pt");
}

TEST_CASE("checkpoint: every corruption gives an error naming the file and the problem") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string two_floats("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  const std::string good = make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", two_floats);
  write_bytes(path, good);
  CHECK(load_safetensors(path).get("w").to_vector() == std::vector<float>{1, 2});  // the base case is valid

  struct Case {
    const char* what;
    std::string bytes;
    std::vector<const char*> parts;
  };
  const std::vector<Case> cases = {
      {"5 bytes", std::string("\x08\0\0\0\0", 5), {"5 bytes", "fewer than the 8-byte"}},
      {"header length past the end", le64(1000) + std::string(92, ' '), {"header length 1000", "larger than the rest"}},
      {"huge header length", le64(uint64_t{1} << 63) + "{}", {"larger than the rest"}},
      {"truncated data", good.substr(0, good.size() - 3), {"tensor 'w'", "out of range", "5 bytes", "truncated"}},
      {"trailing bytes", good + "abcd", {"4 trailing bytes"}},
      {"missing brace", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", two_floats),
       {"not valid JSON", "expected '}'"}},
      {"trailing comma", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", two_floats),
       {"not valid JSON", "quoted member name"}},
      {"garbage after the object", make_file(R"({}x)", ""), {"not valid JSON", "after the end"}},
      {"not an object", make_file("[]", ""), {"must be a JSON object"}},
      {"unknown dtype", make_file(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", two_floats),
       {"tensor 'w'", "unknown dtype \"F33\""}},
      {"unsupported dtype", make_file(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", two_floats),
       {"tensor 'w'", "F64", "only F32"}},
      {"size does not match shape", make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", two_floats),
       {"tensor 'w'", "holds 8 bytes", "[3]", "needs 12"}},
      {"overlap",
       make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 two_floats + std::string(4, '\0')),
       {"tensor 'b'", "overlaps tensor 'a'"}},
      {"gap",
       make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                 two_floats + std::string(4, '\0')),
       {"tensor 'b'", "gap of 4"}},
      {"end before begin", make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", two_floats),
       {"tensor 'w'", "end is before begin"}},
      {"missing field", make_file(R"({"w":{"dtype":"F32","shape":[2]}})", two_floats),
       {"tensor 'w'", "missing field \"data_offsets\""}},
      {"unknown field", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", two_floats),
       {"tensor 'w'", "unknown field \"x\""}},
      {"duplicate key",
       make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                 two_floats),
       {"duplicate key \"w\""}},
      {"negative size", make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", two_floats),
       {"tensor 'w' shape[0]", "non-negative integer"}},
      {"fractional offset", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", two_floats),
       {"data_offsets[1]", "non-negative integer"}},
      {"invalid UTF-8", make_file("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two_floats),
       {"not valid UTF-8"}},
      {"metadata not strings", make_file(R"({"__metadata__":{"epoch":3}})", ""), {"__metadata__", "\"epoch\""}},
      {"bad escape", make_file(R"({"\q":{}})", ""), {"not valid JSON", "unknown escape"}},
      {"deep nesting", make_file(std::string(100, '[') + std::string(100, ']'), ""), {"deeper than 64"}},
  };
  for (const Case& c : cases) {
    INFO("case: " << std::string(c.what));
    write_bytes(path, c.bytes);
    const std::string msg = eq::testing::error_of([&] { load_safetensors(path); });
    INFO("error message: '" << msg << "'");
    CHECK(msg.find("load_safetensors") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
    for (const char* part : c.parts) CHECK(msg.find(part) != std::string::npos);
  }
  CHECK_THROWS_NAMING(load_safetensors(dir.file("absent.safetensors")), "cannot open", "absent.safetensors",
                      "No such file");
  CHECK_THROWS_NAMING(load_safetensors(dir.path.string()), "not a regular file");
}

TEST_CASE("checkpoint: saves are atomic; a failed save leaves the previous file intact") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", Tensor::from({2}, {1, 2})}});
  save_safetensors(path, {{"w", Tensor::from({2}, {3, 4})}});  // overwrite
  const std::string previous = read_bytes(path);
  CHECK(load_safetensors(path).get("w").to_vector() == std::vector<float>{3, 4});
  CHECK(dir.count_entries() == 1);  // no temporary files left behind

  // Rejected before writing: duplicate names, an undefined tensor, the reserved name.
  CHECK_THROWS_NAMING(save_safetensors(path, {{"w", Tensor({1})}, {"w", Tensor({1})}}), "save_safetensors",
                      path.c_str(), "'w' appears twice");
  CHECK_THROWS_NAMING(save_safetensors(path, {{"x", Tensor()}}), "save_safetensors", "'x' is undefined");
  CHECK_THROWS_NAMING(save_safetensors(path, {{"__metadata__", Tensor({1})}}), "save_safetensors", "reserved");
  CHECK(read_bytes(path) == previous);

  // The temporary file cannot be created: a directory that does not exist.
  const std::string nowhere = dir.file("no_such_dir/model.safetensors");
  CHECK_THROWS_NAMING(save_safetensors(nowhere, {{"w", Tensor({1})}}), "save_safetensors", "no_such_dir",
                      "No such file");
  CHECK_FALSE(fs::exists(dir.path / "no_such_dir"));

  // The rename fails after the data was written: the target is a non-empty directory. The temporary file must be
  // removed and the directory left as it was.
  fs::create_directory(dir.path / "occupied");
  write_bytes(dir.file("occupied/keep"), "keep");
  CHECK_THROWS_NAMING(save_safetensors(dir.file("occupied"), {{"w", Tensor({1})}}), "save_safetensors", "occupied",
                      "previous file is unchanged");
  CHECK(read_bytes(dir.file("occupied/keep")) == "keep");
  CHECK(dir.count_entries() == 2);  // model.safetensors and occupied/: the temporary file is gone
  CHECK(read_bytes(path) == previous);
}

TEST_CASE("checkpoint: load_into copies by name with strict and non-strict checks") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, {{"a", Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6})}, {"c", Tensor::from({1}, {9})}});

  Tensor a = Tensor::zeros({2, 3}).set_requires_grad(), c = Tensor::zeros({1});
  const float* storage = a.data();
  LoadReport ok = load_into(path, {{"a", a}, {"c", c}});
  CHECK(ok.missing.empty());
  CHECK(ok.unexpected.empty());
  CHECK(a.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(a.data() == storage);  // written into the existing storage: the parameter handle stays valid
  CHECK(c.item() == 9.0f);

  // Strict: every problem in one message, and nothing copied.
  Tensor a_wrong = Tensor::zeros({3, 2}), b = Tensor::zeros({4});
  CHECK_THROWS_NAMING(load_into(path, {{"a", a_wrong}, {"b", b}}), "load_into", "m.safetensors", "missing: b",
                      "unexpected: c", "wrong shape: a (checkpoint [2, 3], target [3, 2])");
  CHECK(a_wrong.to_vector() == std::vector<float>(6, 0.0f));

  // Non-strict: names may differ, shapes may not.
  Tensor a2 = Tensor::zeros({2, 3});
  LoadReport partial = load_into(path, {{"a", a2}, {"b", b}}, false);
  CHECK(partial.missing == std::vector<std::string>{"b"});
  CHECK(partial.unexpected == std::vector<std::string>{"c"});
  CHECK(a2.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK_THROWS_NAMING(load_into(path, {{"a", a_wrong}}, false), "wrong shape: a");

  // Prefix helpers for several sets in one file.
  const NamedTensors prefixed = with_prefix("model.", {{"w", a}});
  CHECK(prefixed[0].first == "model.w");
  const NamedTensors stripped = strip_prefix({{"model.w", a}, {"optim.lr", c}}, "model.");
  REQUIRE(stripped.size() == 1);
  CHECK(stripped[0].first == "w");
}

TEST_CASE("checkpoint: a training run resumed from a file takes exactly the same next steps") {
  TempDir dir;
  Rng rng(17);
  auto set_grads = [](std::vector<Tensor>& params, int step) {
    for (Tensor& p : params)
      for (int64_t i = 0; i < p.numel(); ++i) p.grad_data()[i] = std::sin(p.data()[i] * 3.0f + step);
  };
  std::vector<Tensor> params = {Tensor::randn({3, 4}, rng).set_requires_grad(),
                                Tensor::randn({4}, rng).set_requires_grad()};
  const NamedTensors named = {{"fc.weight", params[0]}, {"fc.bias", params[1]}};
  Adam adam(params, 0.01f);
  for (int step = 0; step < 3; ++step) set_grads(params, step), adam.step();

  NamedTensors everything = with_prefix("model.", named);
  for (auto& entry : with_prefix("optim.", adam.state())) everything.push_back(entry);
  const std::string path = dir.file("run.safetensors");
  save_safetensors(path, everything, {{"epoch", "3"}});

  std::vector<Tensor> resumed_params = {Tensor::zeros({3, 4}).set_requires_grad(),
                                        Tensor::zeros({4}).set_requires_grad()};
  Adam resumed(resumed_params, 0.5f);
  const Checkpoint ck = load_safetensors(path);
  load_into(Checkpoint{strip_prefix(ck.tensors, "model."), {}},
            {{"fc.weight", resumed_params[0]}, {"fc.bias", resumed_params[1]}});
  resumed.load_state(strip_prefix(ck.tensors, "optim."));
  CHECK(ck.metadata.at("epoch") == "3");
  CHECK(resumed.lr() == 0.01f);
  for (int step = 3; step < 5; ++step) {
    set_grads(params, step), adam.step();
    set_grads(resumed_params, step), resumed.step();
  }
  CHECK(bit_equal(params[0], resumed_params[0]));
  CHECK(bit_equal(params[1], resumed_params[1]));
}
