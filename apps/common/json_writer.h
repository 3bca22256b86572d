// equilab apps — a minimal JSON writer for results.json files: objects keep insertion order.
//
//   Json r = Json::object();
//   r.set("test_accuracy", 0.987).set("epochs", 5).set("model", "lenet");
//   r.set("per_epoch", Json::array().push(0.9).push(0.95));
//   write_json_file("out/results.json", r);   // atomic: temp file, then rename
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace eq {

class Json {
 public:
  static Json object();
  static Json array();
  Json(double v);
  Json(int v) : Json(static_cast<double>(v)) {}
  Json(int64_t v) : Json(static_cast<double>(v)) {}
  Json(bool v);
  Json(const char* v) : Json(std::string(v)) {}
  Json(std::string v);
  Json& set(const std::string& key, Json value);  // objects
  Json& push(Json value);                          // arrays
  std::string dump(int indent = 2) const;

 private:
  enum class Kind { Number, Bool, String, Object, Array } kind_ = Kind::Object;
  Json() = default;
  void dump_to(std::string& out, int indent, int depth) const;
  double number_ = 0;
  bool boolean_ = false;
  std::string string_;
  std::vector<std::pair<std::string, Json>> members_;  // objects (key) and arrays (empty key)
};

// Writes atomically (temporary file in the same folder, then rename); creates parent folders.
void write_json_file(const std::string& path, const Json& value);
// mkdir -p; throws eq::Error naming the path on failure.
void make_dirs(const std::string& path);

}  // namespace eq
