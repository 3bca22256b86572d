// Progress bar lines and CSV logs: exact text, the every-10% rule off a terminal, quoting, append rules.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "apps/common/csv_log.h"
#include "apps/common/progress.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::read_text;
using eq::testing::TempDir;

namespace {
std::string contents(std::FILE* f) {
  std::rewind(f);
  std::string s;
  for (int ch; (ch = std::fgetc(f)) != EOF;) s += static_cast<char>(ch);
  return s;
}
int count(const std::string& s, char c) { return static_cast<int>(std::count(s.begin(), s.end(), c)); }
}  // namespace

TEST_CASE("progress: the line format") {
  // 312 of 469 is 66.5%: six of ten cells filled.
  CHECK(ProgressBar::render("epoch 2/10", 312, 469, 1203.4, 12.2, "img", "loss 0.1234") ==
        "epoch 2/10 [######....] 312/469 1203 img/s ETA 0:12 loss 0.1234");
  CHECK(ProgressBar::render("", 0, 10, 0, 0, "it", "") == "[..........] 0/10 0 it/s ETA 0:00");
  CHECK(ProgressBar::render("x", 10, 10, 5, 0, "img", "", 4) == "x [####] 10/10 5 img/s ETA 0:00");
  CHECK(ProgressBar::format_duration(0) == "0:00");
  CHECK(ProgressBar::format_duration(59.6) == "1:00");
  CHECK(ProgressBar::format_duration(754) == "12:34");
  CHECK(ProgressBar::format_duration(3723) == "1:02:03");
  CHECK(ProgressBar::format_duration(std::nan("")) == "0:00");
}

TEST_CASE("progress: off a terminal, one plain line per 10% and a final line") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  {
    ProgressBar bar(100, "epoch 1/1", "img", f, /*interactive=*/false);
    for (int i = 0; i < 100; ++i) bar.step(32, "loss 1.0");
    bar.finish();
  }
  const std::string out = contents(f);
  std::fclose(f);
  CHECK(count(out, '\r') == 0);
  CHECK(count(out, '\n') == 10);  // at 10, 20, ..., 90 steps, then the final line
  CHECK(out.find("10/100") != std::string::npos);
  CHECK(out.find("90/100") != std::string::npos);
  CHECK(out.find("100/100") != std::string::npos);
  CHECK(out.find("[##########]") != std::string::npos);
  CHECK(out.rfind("loss 1.0") > out.rfind("100/100"));  // finish() repeats the last extra text
}

TEST_CASE("progress: on a terminal, redraws in place and ends the line once") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  {
    ProgressBar bar(3, "", "img", f, /*interactive=*/true);
    bar.step(1);
    bar.step(1);
    bar.step(1);
  }  // the destructor finishes
  const std::string out = contents(f);
  std::fclose(f);
  CHECK(count(out, '\r') >= 2);  // the first step and the last one are always drawn
  CHECK(count(out, '\n') == 1);
  CHECK(out.back() == '\n');
}

TEST_CASE("csv_log: header, rows, quoting, flushing") {
  TempDir dir("csv_log");
  const std::string path = dir.file("sub/log.csv");
  {
    CsvLog log(path, {"epoch", "loss", "note"});
    log.row({1, 0.25, "plain"});
    // Flushed at once: readable before the log is closed.
    CHECK(read_text(path) == "epoch,loss,note\n1,0.25,plain\n");
    log.row({int64_t{2}, 1e-7, "has, comma and \"quotes\""});
    log.row({3, std::nan(""), "two\nlines"});
    CHECK_THROWS_NAMING(log.row({4, 0.5}), "log.csv", "2 fields", "3 columns");
  }
  CHECK(read_text(path) ==
        "epoch,loss,note\n1,0.25,plain\n2,1e-07,\"has, comma and \"\"quotes\"\"\"\n3,nan,\"two\nlines\"\n");
  CHECK(CsvLog::escape("a\"b") == "\"a\"\"b\"");
  CHECK(CsvLog::escape("ok") == "ok");
}

TEST_CASE("csv_log: append continues a log with the same header, refuses another") {
  TempDir dir("csv_append");
  const std::string path = dir.file("log.csv");
  { CsvLog(path, {"a", "b"}).row({1, 2}); }
  { CsvLog(path, {"a", "b"}, /*append=*/true).row({3, 4}); }
  CHECK(read_text(path) == "a,b\n1,2\n3,4\n");
  CHECK_THROWS_NAMING(CsvLog(path, {"a", "c"}, true), "log.csv", "'a,b'", "'a,c'");
  { CsvLog(path, {"a", "c"}).row({5, 6}); }  // without append: a fresh file
  CHECK(read_text(path) == "a,c\n5,6\n");
  CHECK_THROWS_NAMING(CsvLog(dir.file("x.csv"), {}), "x.csv", "column");
}
