#include "apps/common/csv_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/error.h"

namespace eq {

CsvField::CsvField(double v) {
  if (std::isnan(v)) {
    text = "nan";
  } else if (std::isinf(v)) {
    text = v > 0 ? "inf" : "-inf";
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    text = buf;
  }
}

std::string CsvLog::escape(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

namespace {
std::string join_escaped(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + CsvLog::escape(fields[i]);
  return line;
}
}  // namespace

CsvLog::CsvLog(const std::string& path, std::vector<std::string> columns, bool append)
    : path_(path), columns_(std::move(columns)) {
  if (columns_.empty()) fail("CsvLog: ", path, ": needs at least one column");
  const std::string header = join_escaped(columns_);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ignored;
  if (!parent.empty()) std::filesystem::create_directories(parent, ignored);
  bool continuing = false;
  if (append && std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::string existing;
    std::getline(in, existing);
    if (!existing.empty()) {
      if (existing != header)
        fail("CsvLog: ", path, ": cannot append, its header is '", existing, "' but this log has '", header, "'");
      continuing = true;
    }
  }
  file_ = std::fopen(path.c_str(), continuing ? "a" : "w");
  if (!file_) fail("CsvLog: ", path, ": cannot open for writing (", std::strerror(errno), ")");
  if (!continuing) {
    std::fprintf(file_, "%s\n", header.c_str());
    std::fflush(file_);
  }
}

CsvLog::~CsvLog() {
  if (file_) std::fclose(file_);
}

void CsvLog::row(const std::vector<CsvField>& fields) {
  if (fields.size() != columns_.size())
    fail("CsvLog: ", path_, ": row has ", fields.size(), " fields but the header has ", columns_.size(), " columns");
  std::vector<std::string> texts;
  for (const CsvField& f : fields) texts.push_back(f.text);
  const std::string line = join_escaped(texts);
  if (std::fprintf(file_, "%s\n", line.c_str()) < 0 || std::fflush(file_) != 0)
    fail("CsvLog: ", path_, ": write failed (", std::strerror(errno), ")");
}

}  // namespace eq
