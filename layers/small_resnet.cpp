#include "layers/small_resnet.h"

#include "engine/elementwise.h"
#include "engine/init.h"
#include "engine/pool.h"

namespace eq {

namespace {

Conv2dOptions conv_options(int kernel, int stride) {
  Conv2dOptions o = same_padding(kernel);
  o.stride_h = o.stride_w = stride;
  return o;
}

}  // namespace

BasicBlock::BasicBlock(int in, int out, int stride, Rng& rng) : in_(in), out_(out), stride_(stride) {
  check(in > 0 && out > 0 && stride >= 1, "BasicBlock: bad channels ", in, " -> ", out, " or stride ", stride);
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(in, out, 3, rng, conv_options(3, stride), false));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm>(out));
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(out, out, 3, rng, conv_options(3, 1), false));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm>(out));
  zeros_(bn2_->weight);  // zero_init_residual: the block starts as its shortcut
  if (in != out || stride != 1) {
    shortcut_conv_ =
        register_module("shortcut_conv", std::make_shared<Conv2d>(in, out, 1, rng, conv_options(1, stride), false));
    shortcut_bn_ = register_module("shortcut_bn", std::make_shared<BatchNorm>(out));
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != in_)
    fail(name(), ": expects input [N, ", in_, ", H, W] but got ", x.shape());
  Tensor h = relu(bn1_->forward(conv1_->forward(x)));
  h = bn2_->forward(conv2_->forward(h));
  Tensor shortcut = shortcut_conv_ ? shortcut_bn_->forward(shortcut_conv_->forward(x)) : x;
  return relu(h + shortcut);
}

std::string BasicBlock::name() const {
  return "BasicBlock(" + std::to_string(in_) + ", " + std::to_string(out_) + ", stride=" + std::to_string(stride_) +
         ")";
}

SmallResNet::SmallResNet(int in_channels, int out_dim, Rng& rng, int width)
    : in_channels_(in_channels), out_dim_(out_dim), width_(width) {
  check(in_channels > 0 && out_dim > 0 && width > 0, "SmallResNet: in_channels ", in_channels, ", out_dim ",
        out_dim, " and width ", width, " must be positive");
  stem_ = register_module("stem", std::make_shared<Conv2d>(in_channels, width, 3, rng, conv_options(3, 1), false));
  stem_bn_ = register_module("stem_bn", std::make_shared<BatchNorm>(width));
  block1_ = register_module("block1", std::make_shared<BasicBlock>(width, 2 * width, 2, rng));
  block2_ = register_module("block2", std::make_shared<BasicBlock>(2 * width, 4 * width, 2, rng));
  block3_ = register_module("block3", std::make_shared<BasicBlock>(4 * width, out_dim, 2, rng));
}

Tensor SmallResNet::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != in_channels_ || x.size(2) < 8 || x.size(3) < 8)
    fail(name(), ": expects images [N, ", in_channels_, ", H, W] with H, W >= 8 but got ", x.shape());
  Tensor h = relu(stem_bn_->forward(stem_->forward(x)));
  h = block3_->forward(block2_->forward(block1_->forward(h)));
  return global_avg_pool2d(h);
}

std::string SmallResNet::name() const {
  return "SmallResNet(in=" + std::to_string(in_channels_) + ", out=" + std::to_string(out_dim_) +
         ", width=" + std::to_string(width_) + ")";
}

}  // namespace eq
