// equilab — CSV logs of training runs (one row per epoch or step), readable by any spreadsheet or pandas.
//
// The header is written when the file is created; each row is flushed at once, so a run that is stopped keeps
// everything it logged. Fields containing a comma, a quote or a line break are quoted as RFC 4180 says.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace eq {

// One CSV field: text, or a number printed compactly (integers as is, reals with 6 significant digits).
struct CsvField {
  std::string text;
  CsvField(std::string s) : text(std::move(s)) {}
  CsvField(const char* s) : text(s) {}
  CsvField(int v) : text(std::to_string(v)) {}
  CsvField(int64_t v) : text(std::to_string(v)) {}
  CsvField(uint64_t v) : text(std::to_string(v)) {}
  CsvField(double v);
  CsvField(float v) : CsvField(static_cast<double>(v)) {}
};

class CsvLog {
 public:
  // Creates `path` (and its folder) with the header row. With append = true an existing file with the same
  // header is continued instead; a different header is an error naming the file.
  CsvLog(const std::string& path, std::vector<std::string> columns, bool append = false);
  ~CsvLog();
  CsvLog(const CsvLog&) = delete;
  CsvLog& operator=(const CsvLog&) = delete;

  // Appends one row; it must have one field per column.
  void row(const std::vector<CsvField>& fields);

  const std::string& path() const { return path_; }

  // "a,b" -> "\"a,b\""; plain fields are unchanged.
  static std::string escape(const std::string& field);

 private:
  std::string path_;
  std::vector<std::string> columns_;
  std::FILE* file_ = nullptr;
};

}  // namespace eq
