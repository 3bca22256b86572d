#include "apps/common/cli.h"

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"

namespace eq {

Flags::Flags(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void Flags::add(const std::string& name, const std::string& default_value, const std::string& help) {
  flags_.push_back({name, default_value, default_value, help, false});
}

Flags::Flag* Flags::lookup(const std::string& name) {
  for (auto& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

const Flags::Flag& Flags::find(const std::string& name) const {
  for (auto& f : flags_)
    if (f.name == name) return f;
  fail(program_, ": internal error: flag --", name, " was never declared");
}

static bool is_bool_literal(const std::string& v) { return v == "true" || v == "false" || v == "1" || v == "0"; }

bool Flags::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (arg.rfind("--", 0) != 0) fail(program_, ": unexpected argument '", arg, "' (flags look like --name value; see --help)");
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (auto eq_pos = name.find('='); eq_pos != std::string::npos) {
      value = name.substr(eq_pos + 1);
      name = name.substr(0, eq_pos);
      has_value = true;
    }
    Flag* f = lookup(name);
    if (!f) {
      std::string known;
      for (auto& g : flags_) known += " --" + g.name;
      fail(program_, ": unknown flag --", name, "; known flags:", known);
    }
    const bool boolean = is_bool_literal(f->default_value);
    if (!has_value) {
      if (boolean && (i + 1 >= argc || !is_bool_literal(argv[i + 1]))) {
        value = "true";
      } else {
        if (i + 1 >= argc) fail(program_, ": flag --", name, " needs a value");
        value = argv[++i];
      }
    }
    f->value = value;
    f->given = true;
  }
  return true;
}

std::string Flags::get(const std::string& name) const { return find(name).value; }

int Flags::get_int(const std::string& name) const {
  const std::string& v = find(name).value;
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') fail(program_, ": --", name, " expects an integer, got '", v, "'");
  return static_cast<int>(x);
}

double Flags::get_double(const std::string& name) const {
  const std::string& v = find(name).value;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') fail(program_, ": --", name, " expects a number, got '", v, "'");
  return x;
}

bool Flags::get_bool(const std::string& name) const {
  const std::string& v = find(name).value;
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  fail(program_, ": --", name, " expects true or false, got '", v, "'");
}

bool Flags::was_given(const std::string& name) const { return find(name).given; }

std::string Flags::get_or_quick(const std::string& name, const std::string& quick_value, bool quick) const {
  return quick && !was_given(name) ? quick_value : get(name);
}

int Flags::get_int_or_quick(const std::string& name, int quick_value, bool quick) const {
  return quick && !was_given(name) ? quick_value : get_int(name);
}

std::string Flags::help() const {
  std::string s = "usage: " + program_ + " [flags]\n\n" + description_ + "\n\nflags:\n";
  for (auto& f : flags_) {
    std::string head = "  --" + f.name;
    if (head.size() < 22) head.resize(22, ' ');
    s += head + " " + f.help + " (default: " + (f.default_value.empty() ? "\"\"" : f.default_value) + ")\n";
  }
  s += "  --help                 this message\n";
  return s;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace eq
