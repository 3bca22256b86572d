#include "losses/cross_entropy.h"

#include <cmath>
#include <limits>
#include <memory>

#include "engine/autograd.h"
#include "engine/parallel.h"
#include "engine/reduce.h"

namespace eq {

namespace {

void check_batch(const char* op, const Tensor& logits, const std::vector<int>& labels) {
  const Shape& s = logits.shape();
  if (s.size() != 2) fail(op, ": expected logits [N, C], got shape ", s);
  const int64_t N = s[0], C = s[1];
  if (N == 0 || C == 0) fail(op, ": empty logits ", s);
  if (static_cast<int64_t>(labels.size()) != N)
    fail(op, ": ", labels.size(), " labels for a batch of ", N, " (logits ", s, ")");
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= C)
      fail(op, ": label ", labels[i], " at index ", i, " is out of range for ", C, " classes (logits ", s, ")");
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const std::vector<int>& labels, float label_smoothing) {
  check_batch("cross_entropy", logits, labels);
  if (!(label_smoothing >= 0 && label_smoothing <= 1))
    fail("cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  const float* x = logits.data();
  const double s = label_smoothing;
  // Row i: loss_i = lse_i - sum_c q_c x_c with q = (1 - s) onehot(y_i) + s / C.
  auto lse = std::make_shared<std::vector<float>>(static_cast<size_t>(N));
  std::vector<double> row_loss(static_cast<size_t>(N));
#pragma omp parallel for if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const float* row = x + i * C;
    float m = -std::numeric_limits<float>::infinity();
    double row_sum = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, row[c]), row_sum += row[c];
    if (!std::isfinite(m)) m = 0;  // an infinite max: shift by 0 so that exp never sees inf - inf
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(row[c] - m);
    const double l = m + std::log(z);
    (*lse)[static_cast<size_t>(i)] = static_cast<float>(l);
    const double picked = row[labels[static_cast<size_t>(i)]];
    const double smoothed = s > 0 ? s * row_sum / static_cast<double>(C) : 0.0;
    row_loss[static_cast<size_t>(i)] = l - (1 - s) * picked - smoothed;
  }
  double total = 0;
  for (double v : row_loss) total += v;
  Tensor out = Tensor::scalar(static_cast<float>(total / static_cast<double>(N)));
  if (!any_requires_grad({&logits})) return out;
  auto xs = logits.impl()->data;
  record(out, "cross_entropy", {logits}, [xs, lse, labels, N, C, s](const float* g, const std::vector<float*>& gin) {
    const float* vx = xs->data();
    float* gx = gin[0];
    const float scale = g[0] / static_cast<float>(N), off = static_cast<float>(s / static_cast<double>(C));
    const float on = static_cast<float>(1 - s);
#pragma omp parallel for if (N * C > kParallelGrain)
    for (int64_t i = 0; i < N; ++i) {
      const float l = (*lse)[static_cast<size_t>(i)];
      const int y = labels[static_cast<size_t>(i)];
      for (int64_t c = 0; c < C; ++c) {
        const float q = off + (c == y ? on : 0.0f);
        gx[i * C + c] += scale * (std::exp(vx[i * C + c] - l) - q);
      }
    }
  });
  return out;
}

double accuracy(const Tensor& logits, const std::vector<int>& labels) {
  check_batch("accuracy", logits, labels);
  const std::vector<int> predicted = argmax_rows(logits);
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

}  // namespace eq
