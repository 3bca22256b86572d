#include <doctest/doctest.h>

#include <cstdint>

#include "engine/huge_page_buffer.h"

using namespace eq;

TEST_CASE("huge_page_buffer: whole 2 MB units, 2 MB-aligned, kept while big enough, grown when not") {
  constexpr size_t kUnit = (size_t{2} << 20) / sizeof(float);  // floats per 2 MB
  HugePageBuffer buffer;
  CHECK(buffer.capacity() == 0);
  float* first = buffer.floats(1000);
  REQUIRE(first != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(first) % (size_t{2} << 20) == 0);
  CHECK(buffer.capacity() == kUnit);
  for (size_t i = 0; i < kUnit; ++i) first[i] = static_cast<float>(i);  // every float is usable
  CHECK(buffer.floats(kUnit) == first);  // fits: the same memory, contents kept
  CHECK(first[kUnit - 1] == static_cast<float>(kUnit - 1));
  float* grown = buffer.floats(kUnit + 1);
  REQUIRE(grown != nullptr);
  CHECK(buffer.capacity() == 2 * kUnit);
  CHECK(reinterpret_cast<std::uintptr_t>(grown) % (size_t{2} << 20) == 0);
  grown[2 * kUnit - 1] = 1.0f;
  CHECK(buffer.floats(0) == grown);  // a request for nothing still gets the buffer
}
