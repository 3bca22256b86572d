#include "engine/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>

namespace eq {

// The data part is the tensors' bytes as they sit in memory; safetensors stores little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint.cpp assumes a little-endian host");

namespace {

// The reference reader refuses headers above 100 MB; so do we (a corrupt length must not allocate gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// ---------------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------------

// The header JSON, padded with spaces to a multiple of 8 bytes.
std::string build_header(const NamedTensors& tensors, const CheckpointMetadata& metadata) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (const auto& [key, value] : metadata) {
      if (!first) h += ',';
      first = false;
      append_json_string(h, key);
      h += ':';
      append_json_string(h, value);
    }
    h += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (!first) h += ',';
    first = false;
    append_json_string(h, name);
    h += ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape().size(); ++i) h += (i ? "," : "") + std::to_string(t.shape()[i]);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(size, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    size -= static_cast<size_t>(w);
  }
  return true;
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Creates `path`.tmp-XXXXXX exclusively (never reusing an existing name) and returns its descriptor.
int create_temporary(const std::string& path, std::string& tmp_path) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device device;
  std::mt19937_64 gen((static_cast<uint64_t>(device()) << 32) ^ device() ^ static_cast<uint64_t>(::getpid()));
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp_path = path + ".tmp-";
    for (int i = 0; i < 6; ++i) tmp_path += alphabet[gen() % (sizeof(alphabet) - 1)];
    const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  errno = EEXIST;
  return -1;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading: a small strict JSON parser for the header. It accepts standard JSON (RFC 8259); the header checks
// below then require the safetensors structure.
// ---------------------------------------------------------------------------------------------------------------

struct Json {
  enum Kind { Object, Array, String, Number, Bool, Null } kind = Null;
  std::string text;                // String: the decoded value; Number: the literal as written
  std::vector<std::string> keys;   // Object: member names, in order
  std::vector<Json> items;         // Object: member values; Array: elements
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& file) : s_(text), file_(file) {}

  Json parse_document() {
    Json v = value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected '" + std::string(1, s_[pos_]) + "' after the end of the header object");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail("load_safetensors: '", file_, "': header is not valid JSON at byte ", pos_, " of the header: ", what);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (pos_ >= s_.size()) error(std::string("expected '") + c + "' but the header ended");
    if (s_[pos_] != c) error(std::string("expected '") + c + "', found '" + s_[pos_] + "'");
    ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }

  Json value(int depth) {
    if (depth > 64) error("nesting deeper than 64 levels");
    skip_space();
    if (pos_ >= s_.size()) error("expected a value but the header ended");
    const char c = s_[pos_];
    Json v;
    if (c == '{') {
      v.kind = Json::Object;
      ++pos_;
      if (consume('}')) return v;
      std::set<std::string> seen;
      do {
        skip_space();
        if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a quoted member name");
        std::string key = string();
        if (!seen.insert(key).second) error("duplicate key \"" + key + "\"");
        expect(':');
        v.keys.push_back(std::move(key));
        v.items.push_back(value(depth + 1));
      } while (consume(','));
      expect('}');
    } else if (c == '[') {
      v.kind = Json::Array;
      ++pos_;
      if (consume(']')) return v;
      do v.items.push_back(value(depth + 1));
      while (consume(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::String;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      v.text = number();
    } else if (s_.compare(pos_, 4, "true") == 0 || s_.compare(pos_, 5, "false") == 0) {
      v.kind = Json::Bool;
      v.text = c == 't' ? "true" : "false";
      pos_ += v.text.size();
    } else if (s_.compare(pos_, 4, "null") == 0) {
      pos_ += 4;
    } else {
      error(std::string("unexpected character '") + c + "'");
    }
    return v;
  }

  std::string number() {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == d) error("malformed number");
    };
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') ++pos_;
    else digits();
    if (pos_ < s_.size() && s_[pos_] == '.') ++pos_, digits();
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      digits();
    }
    return s_.substr(start, pos_ - start);
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // At an opening quote; returns the decoded string.
  std::string string() {
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return out;
      if (c < 0x20) error("raw control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair encodes one code point above U+FFFF
            if (s_.compare(pos_, 2, "\\u") != 0) error("unpaired surrogate in \\u escape");
            pos_ += 2;
            const unsigned low = hex4();
            if (low < 0xDC00 || low >= 0xE000) error("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: error(std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  const std::string& s_;
  const std::string& file_;
  size_t pos_ = 0;
};

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    unsigned cp;
    if (c < 0x80) extra = 0, cp = c;
    else if ((c & 0xE0) == 0xC0) extra = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) extra = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) extra = 3, cp = c & 0x07;
    else return false;
    if (i + static_cast<size_t>(extra) >= s.size()) return false;  // the sequence runs past the end
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const unsigned min_for[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

// Element sizes of every safetensors dtype: needed to validate offsets even for the dtypes we do not load.
int dtype_size(const std::string& dtype) {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

struct TensorEntry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// The header checks share one prefix: "load_safetensors: '<file>': ".
template <class... Parts>
[[noreturn]] void bad_file(const std::string& file, const Parts&... parts) {
  fail("load_safetensors: '", file, "': ", parts...);
}

uint64_t to_u64(const Json& v, const std::string& file, const std::string& where) {
  if (v.kind != Json::Number || v.text.empty() || v.text.find_first_not_of("0123456789") != std::string::npos)
    bad_file(file, where, " must be a non-negative integer");
  uint64_t x = 0;
  for (char d : v.text) {
    const uint64_t digit = static_cast<uint64_t>(d - '0');
    if (x > (UINT64_MAX - digit) / 10) bad_file(file, where, " is too large (", v.text, ")");
    x = x * 10 + digit;
  }
  return x;
}

TensorEntry parse_entry(const std::string& name, const Json& info, const std::string& file) {
  const std::string where = "tensor '" + name + "'";
  if (info.kind != Json::Object) bad_file(file, where, ": expected an object {dtype, shape, data_offsets}");
  TensorEntry e;
  e.name = name;
  bool has_dtype = false, has_shape = false, has_offsets = false;
  for (size_t i = 0; i < info.keys.size(); ++i) {
    const std::string& key = info.keys[i];
    const Json& v = info.items[i];
    if (key == "dtype") {
      if (v.kind != Json::String) bad_file(file, where, ": dtype must be a string");
      e.dtype = v.text;
      has_dtype = true;
    } else if (key == "shape") {
      if (v.kind != Json::Array) bad_file(file, where, ": shape must be an array of integers");
      for (size_t k = 0; k < v.items.size(); ++k) {
        const uint64_t d = to_u64(v.items[k], file, where + " shape[" + std::to_string(k) + "]");
        if (d > static_cast<uint64_t>(INT64_MAX)) bad_file(file, where, ": shape[", k, "] is too large");
        e.shape.push_back(static_cast<int64_t>(d));
      }
      has_shape = true;
    } else if (key == "data_offsets") {
      if (v.kind != Json::Array || v.items.size() != 2)
        bad_file(file, where, ": data_offsets must be an array [begin, end]");
      e.begin = to_u64(v.items[0], file, where + " data_offsets[0]");
      e.end = to_u64(v.items[1], file, where + " data_offsets[1]");
      has_offsets = true;
    } else {
      bad_file(file, where, ": unknown field \"", key, "\"");
    }
  }
  if (!has_dtype || !has_shape || !has_offsets)
    bad_file(file, where, ": missing field \"", !has_dtype ? "dtype" : !has_shape ? "shape" : "data_offsets", "\"");
  if (dtype_size(e.dtype) == 0) bad_file(file, where, ": unknown dtype \"", e.dtype, "\"");
  return e;
}

std::string join(const std::vector<std::string>& names, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > limit) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

}  // namespace

// Escaped as serde_json (the reference writer) does, so our headers match its byte for byte.
void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}


// ---------------------------------------------------------------------------------------------------------------
// save / load
// ---------------------------------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors, const CheckpointMetadata& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) fail("save_safetensors: '", path, "': a tensor has an empty name");
    if (name == "__metadata__") fail("save_safetensors: '", path, "': \"__metadata__\" is reserved, not a tensor name");
    if (!seen.insert(name).second) fail("save_safetensors: '", path, "': tensor name '", name, "' appears twice");
    if (!t.defined()) fail("save_safetensors: '", path, "': tensor '", name, "' is undefined");
  }
  const std::string header = build_header(tensors, metadata);
  const uint64_t n = header.size();
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));

  std::string tmp;
  const int fd = create_temporary(path, tmp);
  if (fd < 0)
    fail("save_safetensors: '", path, "': cannot create a temporary file next to it: ", std::strerror(errno));
  int err = 0;
  if (!write_all(fd, length, 8) || !write_all(fd, header.data(), header.size())) err = errno;
  for (size_t i = 0; !err && i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    if (!write_all(fd, t.data(), sizeof(float) * static_cast<size_t>(t.numel()))) err = errno;
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    fail("save_safetensors: '", path, "': writing failed (", std::strerror(err), "); the previous file is unchanged");
  }
  // Make the rename itself durable. Best effort: the new file is complete and in place whether or not this works.
  const int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

Checkpoint load_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("load_safetensors: cannot open '", path, "': ", std::strerror(errno));
  std::string bytes;
  {
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("load_safetensors: '", path, "' is not a regular file");
    }
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t r = ::read(fd, &bytes[got], bytes.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        const int err = errno;
        ::close(fd);
        fail("load_safetensors: '", path, "': read failed after ", got, " bytes: ",
             r == 0 ? "the file shrank while being read" : std::strerror(err));
      }
      got += static_cast<size_t>(r);
    }
    ::close(fd);
  }

  const uint64_t size = bytes.size();
  if (size < 8) bad_file(path, "the file has ", size, " bytes, fewer than the 8-byte header length (truncated?)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (n > size - 8)
    bad_file(path, "header length ", n, " is larger than the rest of the file (", size - 8,
             " bytes): truncated, or not a safetensors file");
  if (n > kMaxHeaderBytes) bad_file(path, "header length ", n, " exceeds the 100 MB limit");
  const std::string header = bytes.substr(8, static_cast<size_t>(n));
  if (!valid_utf8(header)) bad_file(path, "the header is not valid UTF-8");
  const Json doc = JsonParser(header, path).parse_document();
  if (doc.kind != Json::Object) bad_file(path, "the header must be a JSON object");

  Checkpoint ckpt;
  std::vector<TensorEntry> entries;
  for (size_t i = 0; i < doc.keys.size(); ++i) {
    if (doc.keys[i] == "__metadata__") {
      const Json& m = doc.items[i];
      if (m.kind != Json::Object) bad_file(path, "__metadata__ must be an object of strings");
      for (size_t k = 0; k < m.keys.size(); ++k) {
        if (m.items[k].kind != Json::String)
          bad_file(path, "__metadata__ value of \"", m.keys[k], "\" is not a string");
        ckpt.metadata[m.keys[k]] = m.items[k].text;
      }
    } else {
      entries.push_back(parse_entry(doc.keys[i], doc.items[i], path));
    }
  }

  // The offsets, sorted, must tile the data part exactly: each tensor starts where the previous one ended, holds
  // numel * dtype size bytes, and the last one ends at the end of the file.
  const uint64_t data_size = size - 8 - n;
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& e : entries) {
    const std::string where = "tensor '" + e.name + "' (data_offsets [" + std::to_string(e.begin) + ", " +
                              std::to_string(e.end) + "])";
    if (e.end < e.begin) bad_file(path, where, ": end is before begin");
    if (e.end > data_size)
      bad_file(path, where, ": out of range, the data part has only ", data_size, " bytes (truncated file?)");
    if (e.begin < expected_begin) bad_file(path, where, ": overlaps tensor '", previous->name, "'");
    if (e.begin > expected_begin)
      bad_file(path, where, ": leaves a gap of ", e.begin - expected_begin, " unused bytes before it");
    uint64_t bytes_needed = static_cast<uint64_t>(dtype_size(e.dtype));
    for (int64_t d : e.shape)
      if (__builtin_mul_overflow(bytes_needed, static_cast<uint64_t>(d), &bytes_needed))
        bad_file(path, where, ": shape ", e.shape, " overflows");
    if (e.end - e.begin != bytes_needed)
      bad_file(path, where, ": holds ", e.end - e.begin, " bytes but shape ", e.shape, " of ", e.dtype, " needs ",
               bytes_needed);
    if (e.dtype != "F32")
      bad_file(path, "tensor '", e.name, "' has dtype ", e.dtype, "; only F32 tensors can be loaded");
    expected_begin = e.end;
    previous = &e;
  }
  if (expected_begin != data_size)
    bad_file(path, data_size - expected_begin, " trailing bytes after the last tensor (the data part has ", data_size,
             " bytes, the tensors cover ", expected_begin, ")");

  const char* data = bytes.data() + 8 + n;
  for (const TensorEntry& e : entries) {
    Tensor t(e.shape);
    if (e.end > e.begin) std::memcpy(t.data(), data + e.begin, static_cast<size_t>(e.end - e.begin));
    ckpt.tensors.emplace_back(e.name, std::move(t));
  }
  return ckpt;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

bool Checkpoint::contains(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return true;
  return false;
}

const Tensor& Checkpoint::get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::vector<std::string> names;
  for (const auto& [n, t] : tensors) names.push_back(n);
  fail("checkpoint: no tensor named '", name, "' (it holds ", tensors.size(), ": ", join(names), ")");
}

LoadReport load_into(const Checkpoint& checkpoint, const NamedTensors& targets, bool strict) {
  std::map<std::string, const Tensor*> source;
  for (const auto& [name, t] : checkpoint.tensors) source.emplace(name, &t);
  std::set<std::string> wanted;
  LoadReport report;
  std::vector<std::string> mismatched;
  for (const auto& [name, target] : targets) {
    if (!wanted.insert(name).second) fail("load_into: target name '", name, "' appears twice");
    if (!target.defined()) fail("load_into: target '", name, "' is undefined");
    auto it = source.find(name);
    if (it == source.end()) report.missing.push_back(name);
    else if (it->second->shape() != target.shape())
      mismatched.push_back(name + " (checkpoint " + shape_str(it->second->shape()) + ", target " +
                           shape_str(target.shape()) + ")");
  }
  for (const auto& [name, t] : checkpoint.tensors)
    if (!wanted.count(name)) report.unexpected.push_back(name);
  const bool name_problems = strict && (!report.missing.empty() || !report.unexpected.empty());
  if (name_problems || !mismatched.empty()) {
    std::string msg = "load_into: the checkpoint does not match the model";
    if (strict && !report.missing.empty()) msg += "; missing: " + join(report.missing);
    if (strict && !report.unexpected.empty()) msg += "; unexpected: " + join(report.unexpected);
    if (!mismatched.empty()) msg += "; wrong shape: " + join(mismatched);
    fail(msg);
  }
  for (const auto& [name, target] : targets) {
    auto it = source.find(name);
    if (it != source.end() && target.numel() > 0) Tensor(target).copy_from(*it->second);
  }
  return report;
}

LoadReport load_into(const std::string& path, const NamedTensors& targets, bool strict) {
  const Checkpoint checkpoint = load_safetensors(path);
  try {
    return load_into(checkpoint, targets, strict);
  } catch (const Error& e) {
    fail(e.what(), " (file '", path, "')");
  }
}

NamedTensors with_prefix(const std::string& prefix, const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, t] : tensors) out.emplace_back(prefix + name, t);
  return out;
}

NamedTensors strip_prefix(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

}  // namespace eq
