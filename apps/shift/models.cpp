#include "apps/shift/models.h"

#include "engine/init.h"
#include "layers/activation.h"
#include "layers/blur_pool.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/p4_conv.h"
#include "layers/p4_lift.h"
#include "layers/p4_pool.h"
#include "layers/pooling.h"

namespace eq {

namespace {

constexpr int kC1 = 16, kC2 = 32, kHidden = 64;

// The downsampling step of each kind, for a map with `channels` channels.
std::shared_ptr<Module> downsample(const std::string& kind, int channels, int filter_size) {
  if (kind == "maxpool") return std::make_shared<MaxPool2d>(2);
  if (kind == "maxblur") return std::make_shared<MaxBlurPool>(channels, 2, filter_size, 2);
  return std::make_shared<BlurPool>(channels, filter_size, 2);  // convblur
}

}  // namespace

std::string shift_model_label(const std::string& kind, int filter_size) {
  if (kind == "maxblur" || kind == "convblur") return kind + " f=" + std::to_string(filter_size);
  return kind;
}

std::shared_ptr<Sequential> make_shift_model(const std::string& kind, int filter_size, int image_size,
                                             int num_classes, Rng& rng) {
  check(kind == "maxpool" || kind == "maxblur" || kind == "strided" || kind == "convblur",
        "make_shift_model: unknown kind '", kind, "' (maxpool, maxblur, strided or convblur)");
  check(filter_size >= 1 && filter_size <= 7, "make_shift_model: filter_size must be in 1..7, got ", filter_size);
  check(image_size >= 8 && image_size % 4 == 0, "make_shift_model: image size must be a multiple of 4, got ",
        image_size);
  const int64_t side = image_size / 4;
  auto net = std::make_shared<Sequential>();
  if (kind == "strided") {
    Conv2dOptions s2 = same_padding(3);
    s2.stride_h = s2.stride_w = 2;
    net->add(std::make_shared<Conv2d>(1, kC1, 3, rng, s2))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<Conv2d>(kC1, kC2, 3, rng, s2))
        .add(std::make_shared<ReLU>());
  } else {
    net->add(std::make_shared<Conv2d>(1, kC1, 3, rng, same_padding(3)))
        .add(std::make_shared<ReLU>())
        .add(downsample(kind, kC1, filter_size))
        .add(std::make_shared<Conv2d>(kC1, kC2, 3, rng, same_padding(3)))
        .add(std::make_shared<ReLU>())
        .add(downsample(kind, kC2, filter_size));
  }
  net->add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(kC2 * side * side, kHidden, rng))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Linear>(kHidden, num_classes, rng));
  return net;
}

std::shared_ptr<Sequential> make_rotation_model(const std::string& kind, int c, int num_classes, Rng& rng) {
  check(kind == "plain" || kind == "p4", "make_rotation_model: unknown kind '", kind, "' (plain or p4)");
  check(c >= 1, "make_rotation_model: base_channels must be positive, got ", c);
  auto net = std::make_shared<Sequential>();
  if (kind == "plain") {
    net->add(std::make_shared<Conv2d>(1, 2 * c, 3, rng, same_padding(3)))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<MaxPool2d>(2))
        .add(std::make_shared<Conv2d>(2 * c, 4 * c, 3, rng, same_padding(3)))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<MaxPool2d>(2))
        .add(std::make_shared<Conv2d>(4 * c, 4 * c, 3, rng, same_padding(3)))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<GlobalAvgPool2d>())
        .add(std::make_shared<Linear>(4 * c, num_classes, rng));
  } else {
    net->add(std::make_shared<P4Lift>(1, c, 3, rng))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<P4MaxPool2d>(2))
        .add(std::make_shared<P4Conv>(c, 2 * c, 3, rng))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<P4MaxPool2d>(2))
        .add(std::make_shared<P4Conv>(2 * c, 2 * c, 3, rng))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<P4Pool>(P4PoolMode::Max))
        .add(std::make_shared<GlobalAvgPool2d>())
        .add(std::make_shared<Linear>(2 * c, num_classes, rng));
  }
  // He initialisation of the conv filters: PyTorch's default (U(+-1/sqrt(fan_in))) shrinks the activation variance
  // ~6x per conv + ReLU, and after three of them and a global average the logits barely depend on the input, so
  // these nets hardly train in a few hundred steps. Drawn after construction, from the same rng.
  for (auto& [name, t] : net->named_parameters())
    if (t.dim() >= 4) kaiming_uniform_(t, rng, 0.0f, FanMode::FanIn, Nonlinearity::Relu);
  return net;
}

}  // namespace eq
