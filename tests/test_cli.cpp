// apps/common: flag parsing and the JSON results writer.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/common/cli.h"
#include "apps/common/json_writer.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {
// argv from a list of words (argv[0] = program).
struct Argv {
  std::vector<std::string> words;
  std::vector<char*> ptrs;
  explicit Argv(std::vector<std::string> w) : words(std::move(w)) {
    for (auto& s : words) ptrs.push_back(s.data());
  }
  int argc() { return static_cast<int>(ptrs.size()); }
  char** argv() { return ptrs.data(); }
};

Flags make_flags() {
  Flags f("prog", "test program");
  f.add("epochs", "5", "passes");
  f.add("lr", "0.01", "learning rate");
  f.add("out", "out/x", "folder");
  f.add("resume", "false", "resume");
  return f;
}
}  // namespace

TEST_CASE("cli: defaults, both value syntaxes, boolean flags") {
  Flags f = make_flags();
  Argv a({"prog", "--epochs", "7", "--lr=0.5", "--resume"});
  REQUIRE(f.parse(a.argc(), a.argv()));
  CHECK(f.get_int("epochs") == 7);
  CHECK(f.get_double("lr") == 0.5);
  CHECK(f.get("out") == "out/x");
  CHECK(f.get_bool("resume"));
  CHECK(f.was_given("epochs"));
  CHECK_FALSE(f.was_given("out"));
}

TEST_CASE("cli: get_or_quick gives the quick value only under --quick and only for flags not given") {
  Flags f = make_flags();
  f.add("quick", "false", "demo");
  Argv a({"prog", "--epochs", "7", "--quick"});
  REQUIRE(f.parse(a.argc(), a.argv()));
  const bool quick = f.get_bool("quick");
  CHECK(f.get_int_or_quick("epochs", 2, quick) == 7);          // given: wins over the quick value
  CHECK(f.get_or_quick("out", "out/quick", quick) == "out/quick");  // not given: the quick value
  CHECK(f.get_or_quick("lr", "0.5", false) == "0.01");          // not quick: the default
  CHECK(f.get_int_or_quick("epochs", 2, false) == 7);
  CHECK_THROWS_NAMING(f.get_or_quick("batch", "8", quick), "prog", "--batch", "never declared");
  Flags g = make_flags();
  Argv b({"prog", "--epochs", "many"});
  REQUIRE(g.parse(b.argc(), b.argv()));
  CHECK_THROWS_NAMING(g.get_int_or_quick("epochs", 2, true), "--epochs", "integer", "many");
}

TEST_CASE("cli: bad input names the program and the flag") {
  {
    Flags f = make_flags();
    Argv a({"prog", "--epoch", "3"});
    CHECK_THROWS_NAMING(f.parse(a.argc(), a.argv()), "prog", "unknown flag --epoch", "--epochs");
  }
  {
    Flags f = make_flags();
    Argv a({"prog", "--epochs", "three"});
    f.parse(a.argc(), a.argv());
    CHECK_THROWS_NAMING(f.get_int("epochs"), "--epochs", "integer", "three");
  }
  {
    Flags f = make_flags();
    Argv a({"prog", "--lr"});
    CHECK_THROWS_NAMING(f.parse(a.argc(), a.argv()), "--lr", "needs a value");
  }
}

TEST_CASE("cli: --help returns false and split_list drops empty items") {
  Flags f = make_flags();
  Argv a({"prog", "--help"});
  CHECK_FALSE(f.parse(a.argc(), a.argv()));
  CHECK(f.help().find("--epochs") != std::string::npos);
  CHECK(split_list("a,,b,c,") == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("json: objects keep order, strings are escaped, non-finite numbers become null, writes atomically") {
  Json r = Json::object();
  r.set("b", 1).set("a", "x\"y\n").set("nan", std::nan("")).set("list", Json::array().push(1.5).push(true));
  r.set("b", 2);
  const std::string s = r.dump();
  CHECK(s.find("\"b\": 2") < s.find("\"a\""));
  CHECK(s.find("\"x\\\"y\\n\"") != std::string::npos);
  CHECK(s.find("\"nan\": null") != std::string::npos);
  CHECK(s.find("[1.5, true]") != std::string::npos);
  const auto dir = std::filesystem::temp_directory_path() / "equilab_json_test";
  std::filesystem::remove_all(dir);
  write_json_file((dir / "sub" / "r.json").string(), r);
  std::ifstream in(dir / "sub" / "r.json");
  std::stringstream buf;
  buf << in.rdbuf();
  CHECK(buf.str() == s);
  CHECK_FALSE(std::filesystem::exists(dir / "sub" / "r.json.tmp"));
  std::filesystem::remove_all(dir);
}
