// equilab tests — small helpers shared by the test files.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "engine/error.h"
#include "engine/tensor.h"

namespace eq::testing {

// Largest absolute difference between two tensors of the same shape; infinity if any difference is NaN (std::max
// would skip it).
inline float max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float d = std::fabs(a.data()[i] - b.data()[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

// Allocates and frees a NaN-filled tensor of n floats, so that the next tensor of that size most likely reuses the
// block: an op output that Tensor::empty left unset and the kernel failed to write then shows up as NaN.
inline void poison_next_allocation(int64_t n) { Tensor::full({n}, NAN); }

// Runs f and returns the eq::Error message it threw ("" if it threw nothing).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace eq::testing

// CHECK_THROWS_NAMING(expr, "conv2d", "[8, 3, 28, 28]"): expr throws eq::Error whose message contains every part.
#define CHECK_THROWS_NAMING(expr, ...)                                              \
  do {                                                                               \
    std::string eq_msg = ::eq::testing::error_of([&] { (void)(expr); });             \
    INFO("error message: '" << eq_msg << "'");                                       \
    CHECK_FALSE(eq_msg.empty());                                                      \
    for (const char* eq_part : {__VA_ARGS__}) CHECK(eq_msg.find(eq_part) != std::string::npos); \
  } while (0)
