// equilab shift app — the lecture's toy example (Zhang 2019, Fig. 1): a 1-D signal that goes 0 -> 1 -> 0,
// [0, 0, 1, 1, 0, 0, 1, 1, ...], through two downsamplers, under every 1-sample circular shift.
//
//   max-pool       max over windows of 2 at stride 2: a 1-sample shift turns [0, 1, 0, 1] into [1, 1, 1, 1]
//   max-blur-pool  max over windows of 2 at stride 1, then a binomial blur of `filter_size` taps at stride 2
//                  (filter_size 1 is plain subsampling, i.e. the max-pool again)
// Signals are [1, 1, 1, W] tensors (one image of one row) so that the engine's 2-D ops do the work; every border is
// circular, so a shift by 2 samples is exactly a shift by 1 output sample and nothing is lost at the ends.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace eq {

// [1, 1, 1, width]: x[i] = 1 when i mod 4 is 2 or 3, else 0 (Zhang's Fig. 1). width: a positive multiple of 4.
Tensor toy_signal(int width);
// [1, 1, 1, width]: a single bump, x[2] = x[3] = 1 and 0 elsewhere. width: a positive multiple of 4.
Tensor toy_bump(int width);

// [1, 1, 1, W] -> [1, 1, 1, W / 2] (W even).
Tensor toy_max_pool(const Tensor& x);
Tensor toy_max_blur_pool(const Tensor& x, int filter_size);

// For each shift s = 0 .. W-1 of the signal: the pooled output, its relative change against the unshifted output,
// ||y_s - y_0|| / ||y_0||, and the equivariance error Delta of equivariance.h for shift_transform(0, s, circular),
// which compares y_s with y_0 shifted by s / 2 output samples (bilinear, circular, for odd s).
struct ToyShiftStudy {
  std::string name;
  std::vector<std::vector<float>> outputs;  // [shift][output index]
  std::vector<double> change;               // per shift
  std::vector<double> equivariance_error;   // per shift
};
ToyShiftStudy toy_shift_study(const std::string& name, const std::function<Tensor(const Tensor&)>& pool,
                              const Tensor& signal);

}  // namespace eq
