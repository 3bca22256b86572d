// equilab tests — doctest's main, plus a closing line "tests: N passed, N failed" that CI tools can read.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/parallel.h"

namespace {
struct SummaryLine : doctest::IReporter {
  explicit SummaryLine(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    const unsigned failed = s.numTestCasesFailed;
    std::printf("tests: %u passed, %u failed\n", s.numTestCasesPassingFilters - failed, failed);
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("summary_line", 1, SummaryLine);
}  // namespace

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  eq::set_num_threads(2);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
