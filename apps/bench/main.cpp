// equilab bench — runs every registered workload and prints JSON lines. Never part of `make test`.
//
//   build/bench [--threads 2] [--only NAME_PREFIX] [--list]
//   build/bench --pair A,B [--pairs 60]    A and B in alternation: the median of the per-pair GFLOP/s ratios
//
// --pair exists because these machines are shared: their speed drifts by tens of percent within a minute, so two
// medians taken one after the other compare two moments as much as two workloads. Alternating call by call and
// taking the ratio per pair cancels the drift.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/bench/bench.h"
#include "engine/parallel.h"

namespace eq::bench {

static std::vector<std::pair<std::string, WorkloadFactory>>& registry() {
  static std::vector<std::pair<std::string, WorkloadFactory>> r;
  return r;
}

Registrar::Registrar(const char* group, WorkloadFactory factory) { registry().emplace_back(group, std::move(factory)); }

static double median_ms(const Workload& w) {
  for (int i = 0; i < 3; ++i) w.run();  // warm-up: caches, thread pool, scratch buffers
  std::vector<double> ms;
  for (int i = 0; i < w.reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    w.run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
}

// A and B called in alternation `pairs` times after a warm-up; prints the medians and the quartiles of the per-pair
// ratio GFLOP/s(A) / GFLOP/s(B).
static int run_pair(const Workload& a, const Workload& b, int pairs) {
  if (a.flops <= 0 || b.flops <= 0) {
    std::fprintf(stderr, "bench --pair: %s and %s must both have a FLOP count\n", a.name.c_str(), b.name.c_str());
    return 2;
  }
  for (int i = 0; i < 3; ++i) a.run(), b.run();
  auto time_ms = [](const Workload& w) {
    const auto t0 = std::chrono::steady_clock::now();
    w.run();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  std::vector<double> ta, tb, ratio;
  for (int i = 0; i < pairs; ++i) {
    ta.push_back(time_ms(a));
    tb.push_back(time_ms(b));
    ratio.push_back((a.flops / ta.back()) / (b.flops / tb.back()));
  }
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
  };
  std::printf("{\"pair\": \"%s / %s\", \"pairs\": %d, \"ms\": [%.3f, %.3f], \"gflops\": [%.2f, %.2f], "
              "\"ratio_median\": %.3f, \"ratio_q1\": %.3f, \"ratio_q3\": %.3f}\n",
              a.name.c_str(), b.name.c_str(), pairs, quantile(ta, 0.5), quantile(tb, 0.5),
              a.flops / quantile(ta, 0.5) * 1e-6, b.flops / quantile(tb, 0.5) * 1e-6, quantile(ratio, 0.5),
              quantile(ratio, 0.25), quantile(ratio, 0.75));
  return 0;
}

}  // namespace eq::bench

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  int threads = 2;
  std::string only, pair;
  int pairs = 60;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--list")) list = true;
    else if (!std::strcmp(argv[i], "--pair") && i + 1 < argc) pair = argv[++i];
    else if (!std::strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench [--threads N] [--only NAME_PREFIX] [--list] [--pair A,B [--pairs N]]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  eq::set_num_threads(threads);
  if (!pair.empty()) {
    const size_t comma = pair.find(',');
    const std::string a = pair.substr(0, comma), b = comma == std::string::npos ? "" : pair.substr(comma + 1);
    std::vector<eq::bench::Workload> all;
    for (auto& [group, factory] : eq::bench::registry())
      for (auto& w : factory()) all.push_back(std::move(w));
    auto find = [&](const std::string& name) -> const eq::bench::Workload* {
      for (const auto& w : all)
        if (w.name == name) return &w;
      return nullptr;
    };
    const eq::bench::Workload *wa = find(a), *wb = find(b);
    if (!wa || !wb || pairs < 1) {
      std::fprintf(stderr, "bench --pair: need two workload names from --list, e.g. --pair A,B, and --pairs >= 1 "
                           "(got '%s', %d pairs)\n", pair.c_str(), pairs);
      return 2;
    }
    return eq::bench::run_pair(*wa, *wb, pairs);
  }
  for (auto& [group, factory] : eq::bench::registry()) {
    for (auto& w : factory()) {
      if (w.name.rfind(only, 0) != 0) continue;
      if (list) {
        std::printf("%s\n", w.name.c_str());
        continue;
      }
      const double ms = eq::bench::median_ms(w);
      if (w.flops > 0)
        std::printf("{\"name\": \"%s\", \"ms\": %.3f, \"gflops\": %.2f}\n", w.name.c_str(), ms, w.flops / ms * 1e-6);
      else
        std::printf("{\"name\": \"%s\", \"ms\": %.3f, \"gflops\": null}\n", w.name.c_str(), ms);
      std::fflush(stdout);
    }
  }
  return 0;
}
