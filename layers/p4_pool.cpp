#include "layers/p4_pool.h"

#include "engine/reduce.h"
#include "engine/shape_ops.h"

namespace eq {

static void check_p4_map(const Tensor& x, const char* op) {
  check(x.dim() == 5 && x.size(2) == 4, op, ": expected a p4 feature map [N, C, 4, H, W], got ", x.shape());
}

Tensor p4_rotation_pool(const Tensor& x, P4PoolMode mode) {
  check_p4_map(x, "p4_rotation_pool");
  return mode == P4PoolMode::Max ? max(x, 2) : mean(x, {2});
}

Tensor p4_max_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  check_p4_map(x, "p4_max_pool2d");
  const int64_t N = x.size(0), C = x.size(1);
  Tensor y = max_pool2d(reshape(x, {N, C * 4, x.size(3), x.size(4)}), opt);
  return reshape(y, {N, C, 4, y.size(2), y.size(3)});
}

P4MaxPool2d::P4MaxPool2d(int kernel, int stride) {
  check(kernel >= 1, "P4MaxPool2d: kernel must be >= 1, got ", kernel);
  opt_.kernel_h = opt_.kernel_w = kernel;
  opt_.stride_h = opt_.stride_w = stride < 0 ? kernel : stride;
  opt_.pad_h = opt_.pad_w = 0;
  check(opt_.stride_h >= 1, "P4MaxPool2d: stride must be >= 1, got ", stride);
}

std::string P4MaxPool2d::name() const {
  return "P4MaxPool2d(k=" + std::to_string(opt_.kernel_h) + ", stride=" + std::to_string(opt_.stride_h) + ")";
}

}  // namespace eq
