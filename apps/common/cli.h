// equilab apps — command-line flags: --name value or --name=value, typed getters, generated --help.
//
//   Flags flags("classify", "Train a classifier and report test accuracy.");
//   flags.add("epochs", "5", "number of passes over the training set");
//   if (!flags.parse(argc, argv)) return 0;   // --help was printed
//   int epochs = flags.get_int("epochs");
//   int n = flags.get_int_or_quick("train", 1000, quick);   // a --quick demo's smaller default
// An unknown flag or a malformed value throws eq::Error naming the program and the flag.
#pragma once
#include <string>
#include <vector>

namespace eq {

class Flags {
 public:
  Flags(std::string program, std::string description);
  // A flag with a default; a boolean flag (default "false"/"true") may be given without a value.
  void add(const std::string& name, const std::string& default_value, const std::string& help);
  // Returns false when --help was asked for (help printed to stdout).
  bool parse(int argc, char** argv);

  std::string get(const std::string& name) const;
  int get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  bool was_given(const std::string& name) const;
  // A --quick mode's own defaults: `quick_value` when `quick` is set and --name was not on the command line,
  // otherwise the flag's value (given or default). An explicitly given flag always wins.
  std::string get_or_quick(const std::string& name, const std::string& quick_value, bool quick) const;
  int get_int_or_quick(const std::string& name, int quick_value, bool quick) const;
  std::string help() const;
  const std::string& program() const { return program_; }

 private:
  struct Flag {
    std::string name, value, default_value, help;
    bool given = false;
  };
  const Flag& find(const std::string& name) const;
  Flag* lookup(const std::string& name);
  std::string program_, description_;
  std::vector<Flag> flags_;
};

// Parses "a,b,c" into items (empty items dropped).
std::vector<std::string> split_list(const std::string& s, char sep = ',');

}  // namespace eq
