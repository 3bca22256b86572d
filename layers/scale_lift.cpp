#include "layers/scale_lift.h"

#include <cmath>
#include <sstream>

#include "engine/blur.h"

namespace eq {

std::vector<float> scale_space_sigmas(int scales, float base, float sigma0) {
  check(scales >= 1, "ScaleLift: the number of scales must be >= 1, got ", scales);
  check(std::isfinite(base) && base > 1, "ScaleLift: base must be a finite number > 1, got ", base);
  check(std::isfinite(sigma0) && sigma0 > 0, "ScaleLift: sigma0 must be a finite number > 0, got ", sigma0);
  std::vector<float> sigmas(static_cast<size_t>(scales));
  for (int k = 0; k < scales; ++k) {
    const double variance = double(sigma0) * sigma0 * (std::pow(double(base), 2.0 * k) - 1.0);
    sigmas[k] = static_cast<float>(std::sqrt(variance));
    check(std::isfinite(sigmas[k]), "ScaleLift: scale ", k, " has a non-finite sigma (base ", base, ", sigma0 ",
          sigma0, ")");
  }
  return sigmas;
}

namespace {

Tensor lift_with(const Tensor& x, const std::vector<float>& sigmas, PadMode pad) {
  check(x.dim() == 4, "ScaleLift: expected input [N, C, H, W], got ", x.shape());
  std::vector<Tensor> levels;
  levels.reserve(sigmas.size());
  for (float sigma : sigmas)
    levels.push_back(sigma == 0 ? x : gaussian_blur(x, sigma, static_cast<int>(std::ceil(4.0f * sigma)), pad));
  return stack(levels, 2);
}

}  // namespace

Tensor gaussian_scale_lift(const Tensor& x, int scales, float base, float sigma0, PadMode pad) {
  return lift_with(x, scale_space_sigmas(scales, base, sigma0), pad);
}

ScaleLift::ScaleLift(int scales, float base, float sigma0, PadMode pad)
    : scales_(scales), base_(base), sigma0_(sigma0), pad_(pad), sigmas_(scale_space_sigmas(scales, base, sigma0)) {}

Tensor ScaleLift::forward(const Tensor& x) { return lift_with(x, sigmas_, pad_); }

std::string ScaleLift::name() const {
  std::ostringstream os;
  os << "ScaleLift(S=" << scales_ << ", base=" << base_ << ", sigma0=" << sigma0_ << ", pad=" << pad_mode_name(pad_)
     << ")";
  return os.str();
}

}  // namespace eq
