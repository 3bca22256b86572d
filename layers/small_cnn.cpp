#include "layers/small_cnn.h"

#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/pooling.h"

namespace eq {

// conv(stride)-BN-ReLU, conv-BN-ReLU: one resolution stage.
static void add_double_conv(Sequential& net, int in, int out, int stride, Rng& rng) {
  Conv2dOptions first = same_padding(3);
  first.stride_h = first.stride_w = stride;
  net.add(std::make_shared<Conv2d>(in, out, 3, rng, first, /*bias=*/false))
      .add(std::make_shared<BatchNorm2d>(out))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Conv2d>(out, out, 3, rng, same_padding(3), /*bias=*/false))
      .add(std::make_shared<BatchNorm2d>(out))
      .add(std::make_shared<ReLU>());
}

std::shared_ptr<Sequential> make_small_cnn(int in_channels, int num_classes, Rng& rng) {
  auto net = std::make_shared<Sequential>();
  add_double_conv(*net, in_channels, 32, 1, rng);
  add_double_conv(*net, 32, 64, 2, rng);
  add_double_conv(*net, 64, 128, 2, rng);
  net->add(std::make_shared<GlobalAvgPool2d>()).add(std::make_shared<Linear>(128, num_classes, rng));
  return net;
}

}  // namespace eq
