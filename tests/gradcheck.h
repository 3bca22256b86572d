// equilab tests — the generic finite-difference gradient check used for every differentiable op.
//
// For a function f(inputs) -> output we compare the autograd gradient of L = sum(w * f(inputs)), with w a fixed
// random weight tensor (so every output element matters, with a different weight), against central differences
//     dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h,   L accumulated in double.
// The error metric is relative over the whole gradient vector, ||g_autograd - g_numeric|| / (||g_a|| + ||g_n||),
// robust to the single-element noise of float32 arithmetic. Large inputs are checked on a random sample of
// elements. Inputs of non-smooth ops (relu, max, pooling) should be drawn away from their kinks.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace eq::testing {

struct GradCheckOptions {
  double step = 1e-2;            // h, relative to max(1, |x_i|)
  double tolerance = 1e-2;       // on the relative error above
  int max_elements = 300;        // per input; a seeded random subset when the input is larger
  uint64_t seed = 1234;
};

struct GradCheckResult {
  bool ok = true;
  std::string report;  // one line per input: "input 0 [3, 4]: rel error 2.1e-05 (checked 12 of 12)"
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks every input that has requires_grad; inputs are modified temporarily and restored.
GradCheckResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs, GradCheckOptions opt = {});

}  // namespace eq::testing

// CHECK_GRADIENTS(f, {x, w}) inside a doctest case: fails with the per-input report.
#define CHECK_GRADIENTS(...)                                   \
  do {                                                          \
    auto eq_gc_result = ::eq::testing::gradcheck(__VA_ARGS__);  \
    INFO(eq_gc_result.report);                                  \
    CHECK(eq_gc_result.ok);                                     \
  } while (0)
