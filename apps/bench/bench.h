// equilab bench — a registry of timed workloads; each apps/bench/bench_*.cpp registers its own.
//
// Output: one JSON object per line {"name", "ms", "gflops"}, the same names and shapes as
// ../shared/bench/torch_reference.py, so the two outputs can be joined by name. ms is the median over repetitions
// after warm-up; gflops is null where a FLOP count is not meaningful.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace eq::bench {

struct Workload {
  std::string name;
  std::function<void()> run;  // one timed call; set-up happens outside, in the registering function
  double flops;               // per call; 0 = not defined
  int reps;
};

// A Registrar's function adds workloads (it is called at start-up, builds inputs, returns the list).
using WorkloadFactory = std::function<std::vector<Workload>()>;
struct Registrar {
  Registrar(const char* group, WorkloadFactory factory);
};

}  // namespace eq::bench
