#include "apps/common/json_writer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/checkpoint.h"  // append_json_string
#include "engine/error.h"

namespace eq {

Json Json::object() { return Json(); }
Json Json::array() {
  Json j;
  j.kind_ = Kind::Array;
  return j;
}
Json::Json(double v) : kind_(Kind::Number), number_(v) {}
Json::Json(bool v) : kind_(Kind::Bool), boolean_(v) {}
Json::Json(std::string v) : kind_(Kind::String), string_(std::move(v)) {}

Json& Json::set(const std::string& key, Json value) {
  check(kind_ == Kind::Object, "Json::set: not an object (key '", key, "')");
  for (auto& [k, v] : members_)
    if (k == key) return v = std::move(value), *this;
  members_.emplace_back(key, std::move(value));
  return *this;
}

Json& Json::push(Json value) {
  check(kind_ == Kind::Array, "Json::push: not an array");
  members_.emplace_back("", std::move(value));
  return *this;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  const std::string pad(static_cast<size_t>(indent * (depth + 1)), ' '), pad_end(static_cast<size_t>(indent * depth), ' ');
  switch (kind_) {
    case Kind::Number: {
      if (!std::isfinite(number_)) { out += "null"; break; }  // JSON has no NaN/inf
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.10g", number_);
      out += buf;
      break;
    }
    case Kind::Bool: out += boolean_ ? "true" : "false"; break;
    case Kind::String: append_json_string(out, string_); break;
    case Kind::Object:
    case Kind::Array: {
      const bool obj = kind_ == Kind::Object;
      // Arrays of plain numbers stay on one line: per-epoch curves remain readable.
      bool flat = !obj;
      for (auto& [k, v] : members_) flat = flat && (v.kind_ == Kind::Number || v.kind_ == Kind::Bool);
      out += obj ? "{" : "[";
      for (size_t i = 0; i < members_.size(); ++i) {
        out += i ? "," : "";
        if (!flat) out += "\n" + pad;
        else if (i) out += " ";
        if (obj) append_json_string(out, members_[i].first), out += ": ";
        members_[i].second.dump_to(out, indent, depth + 1);
      }
      if (!flat && !members_.empty()) out += "\n" + pad_end;
      out += obj ? "}" : "]";
    }
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out + "\n";
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) fail("cannot create folder '", path, "': ", ec.message());
}

void write_json_file(const std::string& path, const Json& value) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) make_dirs(p.parent_path().string());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("cannot write '", tmp, "'");
    f << value.dump();
    if (!f.flush()) fail("write failed for '", tmp, "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace eq
