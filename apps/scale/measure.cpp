#include "apps/scale/measure.h"

#include <algorithm>
#include <limits>

#include "apps/common/equivariance.h"
#include "engine/autograd.h"
#include "engine/shape_ops.h"

namespace eq {

std::vector<double> probe_equivariance_errors(ScaleModel& model, const Tensor& images, float factor,
                                              ScalePoolMode projection, int64_t batch) {
  check(images.dim() == 4 && images.size(0) > 0 && batch > 0, "probe_equivariance_errors: need images [N, C, H, W] "
        "with N > 0 and batch > 0 (got ", images.shape(), ", batch ", batch, ")");
  const EquivarianceTransform t = rescale_transform(factor);
  Sequential& net = *model.net;
  const bool was_training = net.is_training();
  net.eval();
  NoGrad no_grad;
  auto project = [&](const Tensor& y) {
    return model.scale_space && y.dim() == 5 ? scale_pool(y, projection) : y;
  };
  const size_t probes = model.probes.size();
  std::vector<double> error(probes, 0.0), norm(probes, 0.0);
  for (int64_t begin = 0; begin < images.size(0); begin += batch) {
    const Tensor x = slice(images, 0, begin, std::min(images.size(0), begin + batch));
    Tensor plain = x, moved = t.on_input(x);
    size_t next = 0;
    for (size_t i = 0; i < net.size() && next < probes; ++i) {
      plain = net[i].forward(plain);
      moved = net[i].forward(moved);
      if (model.probes[next].second != i) continue;
      const Tensor expected = t.on_output(project(plain), x.shape());
      const Tensor got = project(moved);
      check(expected.shape() == got.shape(), "probe_equivariance_errors: probe ", model.probes[next].first,
            " gives ", expected.shape(), " for the rescaled output but ", got.shape(), " for the rescaled input");
      const float* a = expected.data();
      const float* b = got.data();
      for (int64_t j = 0; j < expected.numel(); ++j) {
        const double d = static_cast<double>(a[j]) - b[j];
        error[next] += d * d;
        norm[next] += static_cast<double>(a[j]) * a[j];
      }
      ++next;
    }
  }
  net.train(was_training);
  std::vector<double> delta(probes);
  for (size_t p = 0; p < probes; ++p)
    delta[p] = norm[p] > 0 ? error[p] / norm[p] : (error[p] > 0 ? std::numeric_limits<double>::infinity() : 0.0);
  return delta;
}

}  // namespace eq
