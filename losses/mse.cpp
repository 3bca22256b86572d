#include "losses/mse.h"

#include <algorithm>
#include <vector>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

Tensor mse_loss(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape())
    fail("mse_loss: shapes ", a.shape(), " and ", b.shape(), " differ (mse_loss does not broadcast)");
  const int64_t n = a.numel();
  if (n == 0) fail("mse_loss: empty tensors (shape ", a.shape(), ")");
  const float *pa = a.data(), *pb = b.data();
  // Partial sums over fixed chunks, added in order: the loss does not depend on the thread count.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t c = 0; c < chunks; ++c) {
    double acc = 0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
      const double d = static_cast<double>(pa[i]) - pb[i];
      acc += d * d;
    }
    partial[static_cast<size_t>(c)] = acc;
  }
  double total = 0;
  for (double p : partial) total += p;
  Tensor out = Tensor::scalar(static_cast<float>(total / static_cast<double>(n)));
  if (!any_requires_grad({&a, &b})) return out;
  auto sa = a.impl()->data, sb = b.impl()->data;
  record(out, "mse_loss", {a, b}, [sa, sb, n](const float* g, const std::vector<float*>& gin) {
    const float *va = sa->data(), *vb = sb->data();
    const float k = 2.0f * g[0] / static_cast<float>(n);
    float *ga = gin[0], *gb = gin[1];
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const float d = k * (va[i] - vb[i]);
      if (ga) ga[i] += d;
      if (gb) gb[i] += -d;
    }
  });
  return out;
}

}  // namespace eq
