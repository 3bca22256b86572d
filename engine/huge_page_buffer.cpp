#include "engine/huge_page_buffer.h"

#include <algorithm>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "engine/error.h"

namespace eq {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

HugePageBuffer::~HugePageBuffer() { std::free(data_); }

float* HugePageBuffer::floats(size_t n) {
  if (n <= capacity_ && data_) return data_;
  std::free(data_);
  data_ = nullptr;
  capacity_ = 0;
  const size_t bytes = (std::max<size_t>(n, 1) * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, bytes);  // 2 MB-aligned, a whole number of 2 MB units
  check(p != nullptr, "HugePageBuffer: cannot allocate ", bytes >> 20, " MB");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // a request: on refusal (no THP) the pages are ordinary ones
#endif
  data_ = static_cast<float*>(p);
  capacity_ = bytes / sizeof(float);
  return data_;
}

}  // namespace eq
