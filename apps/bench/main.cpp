// equilab bench — runs every registered workload and prints JSON lines. Never part of `make test`.
//
//   build/bench [--threads 2] [--only NAME_PREFIX] [--list]
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

}  // namespace eq::bench

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  int threads = 2;
  std::string only;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--list")) list = true;
    else {
      std::fprintf(stderr, "usage: bench [--threads N] [--only NAME_PREFIX] [--list]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  eq::set_num_threads(threads);
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
