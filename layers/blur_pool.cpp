#include "layers/blur_pool.h"

#include "engine/pool.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"

namespace eq {

BlurPool::BlurPool(int channels, int filter_size, int stride, PadMode pad)
    : channels_(channels), filter_size_(filter_size), stride_(stride), pad_(pad) {
  check(channels > 0, "BlurPool: channels must be positive, got ", channels);
  check(filter_size >= 1 && filter_size <= 7, "BlurPool: filter_size must be in 1..7 (binomial taps), got ",
        filter_size);
  check(stride >= 1, "BlurPool: stride must be >= 1, got ", stride);
}

Tensor BlurPool::forward(const Tensor& x) {
  check(x.dim() == 4 && x.size(1) == channels_, name(), ": expected input [N, ", channels_, ", H, W], got ",
        x.shape());
  const int64_t H = x.size(2), W = x.size(3);
  const int after = blur_pad_after(filter_size_);
  // The op checks this too; here the message names the layer, which is what a user building a net needs to see.
  if (pad_ == PadMode::Reflect)
    check(after < H && after < W, name(), ": the ", H, "x", W, " map is too small to reflect-pad (pad top/left ",
          blur_pad_before(filter_size_), ", bottom/right ", after, "; reflect needs pad < size; input ", x.shape(),
          "). Use a smaller filter_size, fewer downsamplings, or PadMode::Replicate/Zeros");
  return blur_pool2d(x, filter_size_, stride_, pad_);
}

std::string BlurPool::name() const {
  return "BlurPool(" + std::to_string(channels_) + ", filter=" + std::to_string(filter_size_) +
         ", stride=" + std::to_string(stride_) + ", " + pad_mode_name(pad_) + ")";
}

MaxBlurPool::MaxBlurPool(int channels, int kernel, int filter_size, int stride, PadMode pad)
    : kernel_(kernel), blur_(channels, filter_size, stride, pad) {
  check(kernel >= 1, "MaxBlurPool: kernel must be >= 1, got ", kernel);
}

Tensor MaxBlurPool::forward(const Tensor& x) {
  check(x.dim() == 4, name(), ": expected input [N, C, H, W], got ", x.shape());
  check(x.size(2) >= kernel_ && x.size(3) >= kernel_, name(), ": the ", x.size(2), "x", x.size(3),
        " map is smaller than the max kernel ", kernel_, " (input ", x.shape(), ")");
  Pool2dOptions dense;  // max at every position: the max itself does not subsample, the blur-pool does
  dense.kernel_h = dense.kernel_w = kernel_;
  dense.stride_h = dense.stride_w = 1;
  return blur_.forward(max_pool2d(x, dense));
}

std::string MaxBlurPool::name() const {
  const std::string blur = blur_.name();  // "BlurPool(C, filter=.., stride=.., pad)"
  return "MaxBlurPool(k=" + std::to_string(kernel_) + ", " + blur.substr(blur.find('(') + 1);
}

std::shared_ptr<Sequential> conv_blur_pool(int in, int out, int kernel, Rng& rng, int stride, int filter_size,
                                           bool batch_norm, PadMode pad) {
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(in, out, kernel, rng, same_padding(kernel), /*bias=*/!batch_norm));
  if (batch_norm) net->add(std::make_shared<BatchNorm2d>(out));
  net->add(std::make_shared<ReLU>()).add(std::make_shared<BlurPool>(out, filter_size, stride, pad));
  return net;
}

}  // namespace eq
