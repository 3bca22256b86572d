#include "layers/unet.h"

#include <string>

#include "engine/error.h"
#include "engine/pool.h"
#include "engine/resize.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"

namespace eq {

namespace {

// (conv3x3 - BN - ReLU) x 2; the convolutions have no bias because BatchNorm's beta takes its place.
std::shared_ptr<Sequential> conv_block(int in, int out, PadMode padding, Rng& rng) {
  auto block = std::make_shared<Sequential>();
  block->add(std::make_shared<Conv2d>(in, out, 3, rng, same_padding(3, padding), /*bias=*/false))
      .add(std::make_shared<BatchNorm2d>(out))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Conv2d>(out, out, 3, rng, same_padding(3, padding), /*bias=*/false))
      .add(std::make_shared<BatchNorm2d>(out))
      .add(std::make_shared<ReLU>());
  return block;
}

}  // namespace

UNet::UNet(int in_channels, int out_channels, int base_width, Rng& rng, int levels, PadMode padding)
    : in_(in_channels), out_(out_channels), width_(base_width), levels_(levels) {
  check(in_channels > 0 && out_channels > 0 && base_width > 0, "UNet: in_channels, out_channels and base_width ",
        "must be positive, got ", in_channels, ", ", out_channels, ", ", base_width);
  check(levels >= 1 && levels <= 8, "UNet: levels must be in [1, 8], got ", levels);
  for (int k = 0; k < levels; ++k) {
    const int in = k == 0 ? in_channels : base_width << (k - 1);
    down_.push_back(register_module("down" + std::to_string(k), conv_block(in, base_width << k, padding, rng)));
  }
  // up_[k] sits at level k: it reads the upsampled level k + 1 (the bottom block or up_[k + 1]) and the skip.
  up_.resize(static_cast<size_t>(levels - 1));
  for (int k = levels - 2; k >= 0; --k) {
    const int in = (base_width << (k + 1)) + (base_width << k);
    up_[k] = register_module("up" + std::to_string(k), conv_block(in, base_width << k, padding, rng));
  }
  head_ = register_module("head", std::make_shared<Conv2d>(base_width, out_channels, 1, rng));
}

Tensor UNet::forward(const Tensor& x) {
  check(x.dim() == 4 && x.size(1) == in_, name(), ": expected input [N, ", in_, ", H, W], got ", x.shape());
  check(x.size(2) >= min_size() && x.size(3) >= min_size(), name(), ": input ", x.shape(), " is too small for ",
        levels_, " levels (H and W must be >= ", min_size(), ")");
  std::vector<Tensor> skips;
  Tensor h = x;
  for (int k = 0; k < levels_; ++k) {
    if (k > 0) h = max_pool2d(h, Pool2dOptions{});
    h = down_[k]->forward(h);
    skips.push_back(h);
  }
  for (int k = levels_ - 2; k >= 0; --k) {
    const Tensor& skip = skips[k];
    Tensor up = resize(h, skip.size(2), skip.size(3));  // bilinear, align_corners = false
    h = up_[k]->forward(concat({up, skip}, 1));
  }
  return head_->forward(h);
}

std::string UNet::name() const {
  return "UNet(" + std::to_string(in_) + " -> " + std::to_string(out_) + ", width " + std::to_string(width_) +
         ", levels " + std::to_string(levels_) + ")";
}

}  // namespace eq
