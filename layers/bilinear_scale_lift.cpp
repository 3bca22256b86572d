#include "layers/bilinear_scale_lift.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/resize.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

void check_lift_options(int scales, float base) {
  check(scales >= 1, "BilinearScaleLift: the number of scales must be >= 1, got ", scales);
  check(std::isfinite(base) && base > 1, "BilinearScaleLift: base must be a finite number > 1, got ", base);
}

}  // namespace

Tensor bilinear_scale_lift(const Tensor& x, int scales, float base, bool antialias) {
  check_lift_options(scales, base);
  check(x.dim() == 4, "BilinearScaleLift: expected input [N, C, H, W], got ", x.shape());
  const int64_t H = x.size(2), W = x.size(3);
  ResizeOptions down;
  down.mode = ResizeMode::Bilinear;
  down.antialias = antialias;
  const ResizeOptions up;  // bilinear, align_corners = false: upscaling never needs antialiasing
  std::vector<Tensor> levels{x};
  for (int k = 1; k < scales; ++k) {
    const double factor = std::pow(double(base), k);
    const int64_t h = std::max<int64_t>(1, static_cast<int64_t>(std::floor(H / factor)));
    const int64_t w = std::max<int64_t>(1, static_cast<int64_t>(std::floor(W / factor)));
    levels.push_back(resize(resize(x, h, w, down), H, W, up));
  }
  return stack(levels, 2);
}

BilinearScaleLift::BilinearScaleLift(int scales, float base, bool antialias)
    : scales_(scales), base_(base), antialias_(antialias) {
  check_lift_options(scales, base);
}

std::string BilinearScaleLift::name() const {
  std::ostringstream os;
  os << "BilinearScaleLift(S=" << scales_ << ", base=" << base_ << (antialias_ ? ", antialias" : "") << ")";
  return os.str();
}

}  // namespace eq
