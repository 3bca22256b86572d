#include "layers/lenet.h"

#include "layers/activation.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/pooling.h"

namespace eq {

std::shared_ptr<Sequential> make_lenet(int in_channels, int image_size, int num_classes, Rng& rng) {
  check(image_size % 4 == 0, "LeNet: image size must be divisible by 4 (two 2x2 pools), got ", image_size);
  const int64_t side = image_size / 4;
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(in_channels, 32, 3, rng, same_padding(3)))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<MaxPool2d>(2))
      .add(std::make_shared<Conv2d>(32, 64, 3, rng, same_padding(3)))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<MaxPool2d>(2))
      .add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(64 * side * side, 128, rng))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Linear>(128, num_classes, rng));
  return net;
}

}  // namespace eq
