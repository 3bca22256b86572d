#include "apps/shift/toy_signal.h"

#include <cmath>

#include "apps/common/equivariance.h"
#include "augment/shift.h"
#include "engine/blur_pool.h"
#include "engine/pool.h"
#include "engine/shape_ops.h"

namespace eq {

Tensor toy_signal(int width) {
  check(width > 0 && width % 4 == 0, "toy_signal: width must be a positive multiple of 4, got ", width);
  std::vector<float> v(static_cast<size_t>(width));
  for (int i = 0; i < width; ++i) v[static_cast<size_t>(i)] = (i % 4 >= 2) ? 1.0f : 0.0f;
  return Tensor::from({1, 1, 1, width}, std::move(v));
}

Tensor toy_bump(int width) {
  check(width > 0 && width % 4 == 0, "toy_bump: width must be a positive multiple of 4, got ", width);
  std::vector<float> v(static_cast<size_t>(width), 0.0f);
  v[2] = v[3] = 1.0f;
  return Tensor::from({1, 1, 1, width}, std::move(v));
}

namespace {

void check_signal(const Tensor& x, const char* op) {
  check(x.dim() == 4 && x.size(0) == 1 && x.size(1) == 1 && x.size(2) == 1 && x.size(3) % 2 == 0 &&
            x.size(3) > 0,
        op, ": expected a signal [1, 1, 1, W] with W even, got ", x.shape());
}

}  // namespace

Tensor toy_max_pool(const Tensor& x) {
  check_signal(x, "toy_max_pool");
  Pool2dOptions opt;
  opt.kernel_h = opt.stride_h = 1;
  opt.kernel_w = opt.stride_w = 2;
  return max_pool2d(x, opt);
}

Tensor toy_max_blur_pool(const Tensor& x, int filter_size) {
  check_signal(x, "toy_max_blur_pool");
  // Dense max over (i, i+1) with i+1 wrapping around, so the W maxima form a circular signal again.
  Pool2dOptions dense;
  dense.kernel_h = dense.stride_h = dense.stride_w = 1;
  dense.kernel_w = 2;
  const Tensor maxima = max_pool2d(pad2d(x, 0, 0, 0, 1, PadMode::Circular), dense);
  // On the single row the circular vertical blur sums the taps over the same value: only the horizontal one acts.
  return blur_pool2d(maxima, filter_size, 2, PadMode::Circular);
}

ToyShiftStudy toy_shift_study(const std::string& name, const std::function<Tensor(const Tensor&)>& pool,
                              const Tensor& signal) {
  check_signal(signal, "toy_shift_study");
  ToyShiftStudy study;
  study.name = name;
  const int width = static_cast<int>(signal.size(3));
  const std::vector<float> y0 = pool(signal).to_vector();
  double norm0 = 0;
  for (float v : y0) norm0 += static_cast<double>(v) * v;
  for (int s = 0; s < width; ++s) {
    const Tensor shifted = translate_int(signal, {0}, {s}, ShiftPadding::Circular);
    const std::vector<float> ys = pool(shifted).to_vector();
    double diff = 0;
    for (size_t i = 0; i < ys.size(); ++i) diff += (static_cast<double>(ys[i]) - y0[i]) * (ys[i] - y0[i]);
    study.outputs.push_back(ys);
    study.change.push_back(norm0 > 0 ? std::sqrt(diff / norm0) : (diff > 0 ? INFINITY : 0.0));
    study.equivariance_error.push_back(
        equivariance_error(pool, signal, shift_transform(0.0f, static_cast<float>(s), ShiftPadding::Circular)));
  }
  return study;
}

}  // namespace eq
