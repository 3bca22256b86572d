#include "apps/scale/models.h"

#include <cmath>

#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/bilinear_scale_lift.h"
#include "layers/conv2d.h"
#include "layers/deform_conv2d.h"
#include "layers/deform_scale_conv.h"
#include "layers/dropout.h"
#include "layers/linear.h"
#include "layers/p4_conv.h"
#include "layers/p4_lift.h"
#include "layers/p4_pool.h"
#include "layers/pooling.h"
#include "layers/scale_conv.h"
#include "layers/scale_lift.h"

namespace eq {

const std::vector<std::string>& scale_model_kinds() {
  static const std::vector<std::string> kinds{"cnn", "deform_cnn", "dss_v1", "dss_v2", "deform_dss", "p4cnn"};
  return kinds;
}

namespace {

// The conv layer of block `b` (0-based) for each kind: [.., cin, ...] -> [.., cout, ...], same spatial size.
std::shared_ptr<Module> block_conv(const std::string& kind, int b, int cin, int cout, const ScaleModelConfig& c,
                                   Rng& rng) {
  const int k = c.kernel;
  if (kind == "cnn" || (kind == "deform_cnn" && b == 0)) return std::make_shared<Conv2d>(cin, cout, k, rng, same_padding(k));
  if (kind == "deform_cnn") {
    DeformConv2dOptions o;
    o.pad_h = o.pad_w = k / 2;
    return std::make_shared<DeformConv2d>(cin, cout, k, rng, o);
  }
  if (kind == "deform_dss" && b > 0)
    return std::make_shared<DeformScaleConv>(cin, cout, k, c.interaction, c.base, rng);
  if (kind == "dss_v1" || kind == "dss_v2" || kind == "deform_dss")
    return std::make_shared<ScaleConv>(cin, cout, k, c.interaction, c.base, rng);
  if (kind == "p4cnn") {
    if (b == 0) return std::make_shared<P4Lift>(cin, cout, k, rng);
    return std::make_shared<P4Conv>(cin, cout, k, rng);
  }
  fail("scale: unknown model '", kind, "'");
}

std::shared_ptr<Module> block_pool(const std::string& kind) {
  if (kind == "p4cnn") return std::make_shared<P4MaxPool2d>(2);
  if (kind == "cnn" || kind == "deform_cnn") return std::make_shared<MaxPool2d>(2);
  return std::make_shared<ScaleMaxPool2d>(2);
}

}  // namespace

ScaleModel make_scale_model(const std::string& kind, const ScaleModelConfig& c, int in_channels, int num_classes,
                            Rng& rng) {
  bool known = false;
  for (const auto& k : scale_model_kinds()) known = known || k == kind;
  check(known, "scale: unknown model '", kind, "' (choose cnn, deform_cnn, dss_v1, dss_v2, deform_dss, p4cnn)");
  check(c.channels.size() == 3, "scale: the models have 3 conv blocks, got ", c.channels.size(), " channel counts");
  ScaleModel m;
  m.kind = kind;
  m.net = std::make_shared<Sequential>();
  m.scale_space = kind == "dss_v1" || kind == "dss_v2" || kind == "deform_dss";
  Sequential& net = *m.net;
  if (kind == "dss_v1" || kind == "deform_dss") net.add(std::make_shared<ScaleLift>(c.scales, c.base, c.sigma0));
  if (kind == "dss_v2") net.add(std::make_shared<BilinearScaleLift>(c.scales, c.base));
  std::vector<int> channels = c.channels;
  if (kind == "p4cnn")
    for (int& ch : channels) ch = std::max(1, static_cast<int>(std::lround(c.p4_width * ch)));
  int cin = in_channels;
  for (int b = 0; b < 3; ++b) {
    net.add(block_conv(kind, b, cin, channels[b], c, rng)).add(std::make_shared<ReLU>());
    m.probes.emplace_back("conv" + std::to_string(b + 1), net.size() - 1);
    net.add(block_pool(kind)).add(std::make_shared<BatchNorm>(channels[b]));
    cin = channels[b];
  }
  if (m.scale_space) net.add(std::make_shared<ScalePool>(c.scale_pool));
  if (kind == "p4cnn") net.add(std::make_shared<P4Pool>(P4PoolMode::Max));
  // 28 -> 14 -> 7 -> 3 after the three pools (floor), for any 28x28 input.
  net.add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(int64_t{cin} * 3 * 3, c.hidden, rng))
      .add(std::make_shared<BatchNorm>(c.hidden))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Dropout>(c.dropout, rng))
      .add(std::make_shared<Linear>(c.hidden, num_classes, rng));
  m.probes.emplace_back("logits", net.size() - 1);
  return m;
}

}  // namespace eq
