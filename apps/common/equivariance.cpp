#include "apps/common/equivariance.h"

#include <cmath>
#include <limits>

#include "augment/affine.h"
#include "augment/deformation.h"
#include "augment/rotation.h"
#include "engine/autograd.h"
#include "engine/reduce.h"
#include "engine/resample.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

// Puts a module in eval mode for a scope and restores its previous mode.
class EvalScope {
 public:
  explicit EvalScope(Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalScope() { module_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  Module& module_;
  bool was_training_;
};

bool has_spatial_axes(const Tensor& y) { return y.dim() >= 3; }

void check_images(const Tensor& images, const char* op) {
  check(images.defined() && images.dim() == 4, op, ": images must be [N, C, H, W], got ",
        images.defined() ? images.shape() : Shape{});
}

void check_input(const Tensor& x, const char* op) {
  check(x.defined() && x.dim() >= 3, op, ": input must be [N, ..., H, W] with rank >= 3, got ",
        x.defined() ? x.shape() : Shape{});
}

}  // namespace

EquivarianceTransform shift_transform(float dy, float dx, ShiftPadding padding) {
  EquivarianceTransform t;
  t.name = std::string("shift(") + std::to_string(dy) + ", " + std::to_string(dx) + ", " +
           shift_padding_name(padding) + ")";
  t.on_input = [dy, dx, padding](const Tensor& x) {
    check_input(x, "shift_transform");
    const size_t n = static_cast<size_t>(x.size(0));
    return translate(x, std::vector<float>(n, dy), std::vector<float>(n, dx), padding);
  };
  t.on_output = [dy, dx, padding](const Tensor& y, const Shape& in) {
    if (!has_spatial_axes(y)) return y;
    check(in.size() >= 3, "shift_transform: input shape ", in, " has no spatial axes");
    const size_t n = static_cast<size_t>(y.size(0));
    const float fy = shift_at_resolution(dy, in[in.size() - 2], y.size(-2));
    const float fx = shift_at_resolution(dx, in[in.size() - 1], y.size(-1));
    return translate(y, std::vector<float>(n, fy), std::vector<float>(n, fx), padding);
  };
  return t;
}

EquivarianceTransform rot90_transform(int k) {
  EquivarianceTransform t;
  t.name = "rot90(" + std::to_string(k) + ")";
  t.on_input = [k](const Tensor& x) { return rot90(x, k); };
  t.on_output = [k](const Tensor& y, const Shape&) {
    if (!has_spatial_axes(y)) return y;
    return y.dim() == 5 ? rotate_p4(y, k) : rot90(y, k);
  };
  return t;
}

EquivarianceTransform rotation_transform(float degrees) {
  EquivarianceTransform t;
  t.name = "rotate(" + std::to_string(degrees) + ")";
  t.on_input = [degrees](const Tensor& x) { return rotate(x, degrees); };
  t.on_output = [degrees](const Tensor& y, const Shape&) { return has_spatial_axes(y) ? rotate(y, degrees) : y; };
  return t;
}

EquivarianceTransform rescale_transform(float factor, ResizeMode mode) {
  EquivarianceTransform t;
  t.name = "rescale(" + std::to_string(factor) + ")";
  t.on_input = [factor, mode](const Tensor& x) { return rescale_about_center(x, factor, mode); };
  t.on_output = [factor, mode](const Tensor& y, const Shape&) {
    return has_spatial_axes(y) ? rescale_about_center(y, factor, mode) : y;
  };
  return t;
}

EquivarianceTransform affine_transform(const Tensor& theta) {
  EquivarianceTransform t;
  t.name = "affine";
  t.on_input = [theta](const Tensor& x) { return warp_affine(x, theta); };
  t.on_output = [theta](const Tensor& y, const Shape&) { return has_spatial_axes(y) ? warp_affine(y, theta) : y; };
  return t;
}

double relative_squared_error(const Tensor& reference, const Tensor& other, const char* op) {
  check(reference.defined() && other.defined(), op, ": undefined tensor");
  check(reference.shape() == other.shape(), op, ": the transformed output ", reference.shape(),
        " and the output of the transformed input ", other.shape(), " differ in shape");
  const float* a = reference.data();
  const float* b = other.data();
  double err = 0, norm = 0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    err += d * d;
    norm += static_cast<double>(a[i]) * a[i];
  }
  if (norm == 0) return err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return err / norm;
}

double equivariance_error(Module& model, const Tensor& x, const TensorMap& t_in, const TensorMap& t_out) {
  check(static_cast<bool>(t_in) && static_cast<bool>(t_out), "equivariance_error: empty transform");
  check(x.defined(), "equivariance_error: input is undefined");
  EvalScope eval(model);
  NoGrad no_grad;
  return relative_squared_error(t_out(model.forward(x)), model.forward(t_in(x)), "equivariance_error");
}

double equivariance_error(const TensorMap& phi, const Tensor& x, const EquivarianceTransform& t) {
  check(static_cast<bool>(phi), "equivariance_error: empty function");
  check_input(x, "equivariance_error");
  NoGrad no_grad;
  return relative_squared_error(t.on_output(phi(x), x.shape()), phi(t.on_input(x)), "equivariance_error");
}

double equivariance_error(Module& model, const Tensor& x, const EquivarianceTransform& t) {
  EvalScope eval(model);
  return equivariance_error([&model](const Tensor& v) { return model.forward(v); }, x, t);
}

std::vector<LayerEquivariance> per_layer_equivariance_error(Sequential& model, const Tensor& x,
                                                            const EquivarianceTransform& t) {
  check_input(x, "per_layer_equivariance_error");
  EvalScope eval(model);
  NoGrad no_grad;
  std::vector<LayerEquivariance> rows;
  Tensor plain = x, transformed = t.on_input(x);
  for (size_t i = 0; i < model.size(); ++i) {
    Module& layer = model[i];
    plain = layer.forward(plain);
    transformed = layer.forward(transformed);
    const std::string name = std::to_string(i) + " " + layer.name();
    const Tensor expected = t.on_output(plain, x.shape());
    check(expected.shape() == transformed.shape(), "per_layer_equivariance_error: at layer ", name, " the ", t.name,
          " of the output is ", expected.shape(), " but the output of the transformed input is ", transformed.shape());
    const double delta = relative_squared_error(expected, transformed, "per_layer_equivariance_error");
    rows.push_back({name, plain.shape(), delta});
  }
  return rows;
}

double shift_consistency(Module& model, const Tensor& images, int max_shift, ShiftPadding padding, uint64_t seed,
                         int64_t batch_size) {
  check_images(images, "shift_consistency");
  check(images.size(0) > 0 && batch_size > 0 && max_shift >= 0, "shift_consistency: need images, batch_size > 0 "
        "and max_shift >= 0 (images ", images.shape(), ", batch_size ", batch_size, ", max_shift ", max_shift, ")");
  EvalScope eval(model);
  NoGrad no_grad;
  Rng rng(seed);
  const int64_t n = images.size(0);
  int64_t same = 0;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const Tensor batch = slice(images, 0, begin, std::min(n, begin + batch_size));
    const Shifts a = random_shifts(batch.size(0), max_shift, rng), b = random_shifts(batch.size(0), max_shift, rng);
    const Tensor out_a = model.forward(translate_int(batch, a.dy, a.dx, padding));
    const Tensor out_b = model.forward(translate_int(batch, b.dy, b.dx, padding));
    check(out_a.dim() == 2, "shift_consistency: the model must output [N, classes] logits, got ", out_a.shape(),
          " for images ", batch.shape());
    const std::vector<int> pa = argmax_rows(out_a), pb = argmax_rows(out_b);
    for (size_t i = 0; i < pa.size(); ++i) same += pa[i] == pb[i];
  }
  return 100.0 * static_cast<double>(same) / static_cast<double>(n);
}

std::vector<DeformationStabilityPoint> deformation_stability(const TensorMap& f, const Tensor& images,
                                                             const std::vector<float>& gradient_norms,
                                                             float smoothness, uint64_t seed, int64_t batch_size) {
  check_images(images, "deformation_stability");
  check(static_cast<bool>(f), "deformation_stability: empty function");
  check(images.size(0) > 0 && batch_size > 0 && !gradient_norms.empty(), "deformation_stability: need images, "
        "batch_size > 0 and at least one gradient norm (images ", images.shape(), ", batch_size ", batch_size, ", ",
        gradient_norms.size(), " gradient norms)");
  NoGrad no_grad;
  Rng rng(seed);
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  std::vector<double> grad_sum(gradient_norms.size(), 0), change_sum(gradient_norms.size(), 0);
  std::vector<int64_t> counted(gradient_norms.size(), 0);
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const Tensor batch = slice(images, 0, begin, std::min(n, begin + batch_size));
    const int64_t b = batch.size(0);
    const Tensor fx = f(batch);
    check(fx.defined() && fx.dim() >= 1 && fx.size(0) == b, "deformation_stability: f maps images ", batch.shape(),
          " to ", fx.defined() ? fx.shape() : Shape{}, ", not one output per image");
    const int64_t per_image = fx.numel() / b;
    for (size_t t = 0; t < gradient_norms.size(); ++t) {
      const Tensor tau = smooth_random_field(b, h, w, smoothness, gradient_norms[t], rng);
      const Tensor fd = f(deform(batch, tau));
      check(fd.shape() == fx.shape(), "deformation_stability: f of the deformed batch is ", fd.shape(),
            " but f of the batch is ", fx.shape());
      const std::vector<float> norms = displacement_gradient_norm(tau);
      for (int64_t s = 0; s < b; ++s) {
        double diff = 0, ref = 0;
        for (int64_t k = 0; k < per_image; ++k) {
          const double a = fx.data()[s * per_image + k], d = a - fd.data()[s * per_image + k];
          diff += d * d;
          ref += a * a;
        }
        if (ref == 0) continue;
        change_sum[t] += std::sqrt(diff / ref);
        grad_sum[t] += norms[static_cast<size_t>(s)];
        ++counted[t];
      }
    }
  }
  std::vector<DeformationStabilityPoint> points;
  for (size_t t = 0; t < gradient_norms.size(); ++t) {
    const double c = static_cast<double>(counted[t]);
    if (counted[t] == 0) points.push_back({std::nan(""), std::nan("")});
    else points.push_back({grad_sum[t] / c, change_sum[t] / c});
  }
  return points;
}

std::vector<DeformationStabilityPoint> deformation_stability(Module& model, const Tensor& images,
                                                             const std::vector<float>& gradient_norms,
                                                             float smoothness, uint64_t seed, int64_t batch_size) {
  EvalScope eval(model);
  return deformation_stability([&model](const Tensor& v) { return model.forward(v); }, images, gradient_norms,
                               smoothness, seed, batch_size);
}

}  // namespace eq
