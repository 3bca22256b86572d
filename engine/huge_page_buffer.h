// equilab — a reusable float buffer on 2 MB pages, for kernels that sweep megabytes of scratch on every call.
//
// With 4 KB pages a sweep over a few MB of scratch (the ICON loss's column panels and partial gradients, ~10 MB per
// call at 64x64) touches a new page every 4 KB; translation misses and physical pages scattered over the cache sets
// are the likely costs (this VM exposes no performance counters to tell them apart). Linux backs an anonymous
// mapping with 2 MB pages when asked (madvise(MADV_HUGEPAGE); transparent huge pages in their default "madvise"
// mode): the ICON step at 64x64 ran 5-10 % faster with its scratch on them (median time ratios 0.903, 0.937, 0.922
// for a first version, 0.947 for this one, in sets of 10-12 alternated runs). Where the kernel says no (THP
// "never", other systems) the buffer is ordinary memory and everything works the same.
#pragma once
#include <cstddef>

namespace eq {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  ~HugePageBuffer();
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  // At least n floats, contents unspecified (what an earlier call left, or anything after growing). Keeps its
  // memory between calls; grows (to whole 2 MB units) only when n exceeds it. Throws eq::Error if out of memory.
  float* floats(size_t n);
  size_t capacity() const { return capacity_; }  // in floats

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace eq
