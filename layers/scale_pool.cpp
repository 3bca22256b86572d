#include "layers/scale_pool.h"

#include "engine/reduce.h"
#include "engine/shape_ops.h"

namespace eq {

Tensor scale_pool(const Tensor& x, ScalePoolMode mode) {
  check(x.dim() == 5, "scale_pool: expected input [N, C, S, H, W], got ", x.shape());
  check(x.size(2) > 0, "scale_pool: input ", x.shape(), " has no scales");
  return mode == ScalePoolMode::Max ? max(x, 2) : mean(x, {2});
}

Tensor per_scale_2d(const Tensor& x, const std::function<Tensor(const Tensor&)>& f, const char* op) {
  check(x.dim() == 5, op, ": expected input [N, C, S, H, W], got ", x.shape());
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  const Tensor y = f(reshape(x, {N, C * S, x.size(3), x.size(4)}));
  check(y.dim() == 4 && y.size(0) == N && y.size(1) == C * S, op, ": the 2-D op turned [", N, ", ", C * S,
        ", H, W] into ", y.shape(), "; it must keep the batch and channel axes");
  return reshape(y, {N, C, S, y.size(2), y.size(3)});
}

namespace {

Pool2dOptions pool_options(int kernel, int stride, int padding) {
  Pool2dOptions o;
  o.kernel_h = o.kernel_w = kernel;
  o.stride_h = o.stride_w = stride < 0 ? kernel : stride;
  o.pad_h = o.pad_w = padding;
  return o;
}

std::string pool_name(const char* kind, const Pool2dOptions& o) {
  std::string s = std::string(kind) + "(" + std::to_string(o.kernel_h);
  if (o.stride_h != o.kernel_h) s += ", stride=" + std::to_string(o.stride_h);
  if (o.pad_h) s += ", pad=" + std::to_string(o.pad_h);
  return s + ")";
}

}  // namespace

ScaleMaxPool2d::ScaleMaxPool2d(int kernel, int stride, int padding) : opt_(pool_options(kernel, stride, padding)) {}
Tensor ScaleMaxPool2d::forward(const Tensor& x) {
  return per_scale_2d(x, [this](const Tensor& t) { return max_pool2d(t, opt_); }, "ScaleMaxPool2d");
}
std::string ScaleMaxPool2d::name() const { return pool_name("ScaleMaxPool2d", opt_); }

ScaleAvgPool2d::ScaleAvgPool2d(int kernel, int stride, int padding) : opt_(pool_options(kernel, stride, padding)) {}
Tensor ScaleAvgPool2d::forward(const Tensor& x) {
  return per_scale_2d(x, [this](const Tensor& t) { return avg_pool2d(t, opt_); }, "ScaleAvgPool2d");
}
std::string ScaleAvgPool2d::name() const { return pool_name("ScaleAvgPool2d", opt_); }

}  // namespace eq
