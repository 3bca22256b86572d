// equilab — errors that tell the user what went wrong and where.
//
// Every op checks its inputs and throws eq::Error with a message that names the op and the shapes at fault,
// e.g. "conv2d: input has 3 channels but weight expects 1 (input [8, 3, 28, 28], weight [16, 1, 3, 3])".
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace eq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "[2, 3, 4]"
std::string shape_str(const std::vector<int64_t>& shape);

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) os << shape_str(v);
  else os << v;
  append(os, rest...);
}
}  // namespace detail

// fail("conv2d: input ", x.shape(), " has rank ", x.dim()) — shapes print as [a, b, c].
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

// check(cond, "op: message parts", ...) throws eq::Error when cond is false.
template <class... Parts>
inline void check(bool cond, const Parts&... parts) {
  if (!cond) fail(parts...);
}

}  // namespace eq
