// equilab — equivariance metrics: the one place every app measures how a model commutes with a transform.
//
// Equivariance error (SESN, REFERENCES.md section 3), for an input transform T_in and its action T_out on outputs:
//
//     Delta = sum_n ||T_out(Phi(x_n)) - Phi(T_in(x_n))||^2  /  sum_n ||T_out(Phi(x_n))||^2
//
// a RATIO OF SUMS over the batch (not a mean of per-image ratios: an image whose features are nearly zero cannot
// dominate it). Delta = 0 is exact equivariance, Delta ~ 1 means the two sides are as different as the features are
// large. When T_out is the identity, Delta measures invariance. 0 / 0 gives 0, a nonzero error over 0 gives +inf.
// Sums accumulate in double. Every metric runs the model in eval mode (restoring its previous mode afterwards) and
// without a tape (NoGrad).
//
// Also here: Zhang's shift consistency (section 1) and deformation stability (the lecture, sources/001).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "augment/shift.h"
#include "augment/warp.h"  // TensorMap
#include "engine/resize.h"
#include "engine/tensor.h"
#include "layers/module.h"
#include "layers/sequential.h"

namespace eq {

// A transform with its action on the input and on any feature map computed from it. on_output receives the feature
// map y and the shape of the (untransformed) input, so that it can adapt to y's resolution and layout. Conventions
// shared by the factories below: y of rank <= 2 ([N, K] logits or pooled features) has no spatial axes and
// on_output is the identity (Delta then measures invariance); otherwise the last two axes are spatial.
struct EquivarianceTransform {
  std::string name;
  TensorMap on_input;
  std::function<Tensor(const Tensor& y, const Shape& input_shape)> on_output;
};

// Shift by (dy, dx) input pixels (integers for exact equivariance tests; any real value works). On a feature map the
// shift becomes dy * ratio, dx * ratio with the ratio inferred from the sizes (shift_at_resolution: a 28 -> 14 map
// has stride 2, a 28 -> 7 map stride 4): an integer result is an exact roll / zero-padded shift, a fractional one
// (a 1-pixel input shift seen on a stride-2 map) is a bilinear sub-pixel shift (translate()).
EquivarianceTransform shift_transform(float dy, float dx, ShiftPadding padding);
// Rotation by k * 90 degrees: rot90 on the input; on outputs, rotate_p4 for p4 maps [N, C, 4, H, W] (every rank-5
// output is taken to be p4 and must have 4 on axis 2), rot90 for plain maps.
EquivarianceTransform rot90_transform(int k);
// Rotation by any angle about the centre (bilinear, zeros outside) on the input and on every map (rank >= 3; for
// rank-5 maps the spatial planes only — p4's rotation axis is not shifted, quarter turns should use rot90_transform).
EquivarianceTransform rotation_transform(float degrees);
// rescale_about_center by `factor` on the input and on every map (rank >= 3, the last two axes). For scale-space
// maps [N, C, S, H, W] this rescales the planes and does not shift the scale axis.
EquivarianceTransform rescale_transform(float factor, ResizeMode mode = ResizeMode::Bicubic);
// warp_affine by theta [N, 2, 3] on the input and on every map (normalised coordinates: any resolution).
EquivarianceTransform affine_transform(const Tensor& theta);

// sum ||reference - other||^2 / sum ||reference||^2 (double accumulation; 0 / 0 = 0, x / 0 = +inf). Throws naming
// `op` and both shapes when they differ.
double relative_squared_error(const Tensor& reference, const Tensor& other, const char* op = "relative_squared_error");

// Delta of a model (or any function of a batch) for T_in and T_out.
double equivariance_error(Module& model, const Tensor& x, const TensorMap& t_in, const TensorMap& t_out);
double equivariance_error(Module& model, const Tensor& x, const EquivarianceTransform& t);
double equivariance_error(const TensorMap& phi, const Tensor& x, const EquivarianceTransform& t);

// Delta at the output of every layer of a Sequential (each layer's output as Phi: layers 0..i composed), T_out
// adapted to each layer's resolution and layout by t.on_output.
struct LayerEquivariance {
  std::string name;  // "2 MaxPool2d(k=2, s=2)": the child's index (its name in the Sequential) and name()
  Shape shape;       // the layer's output shape for x
  double delta;
};
std::vector<LayerEquivariance> per_layer_equivariance_error(Sequential& model, const Tensor& x,
                                                            const EquivarianceTransform& t);

// Zhang's consistency: for each image two independent random integer shifts (each coordinate uniform in
// [-max_shift, max_shift], drawn from Rng(seed)), circular or zero-padded; the percentage (0..100) of images whose
// predicted class (argmax of the model's [N, K] output) is the same for both. images [N, C, H, W].
double shift_consistency(Module& model, const Tensor& images, int max_shift, ShiftPadding padding, uint64_t seed,
                         int64_t batch_size = 256);

// For each target ||grad tau||, one smooth random field per image (smooth_random_field with `smoothness`, from
// Rng(seed)) and the relative change ||f(x) - f(D_tau x)|| / ||f(x)|| per image (norms over each image's whole
// output), averaged over the images; images with f(x) = 0 are skipped (NaN if all are). Returns, per target in the
// order given, the measured ||grad tau|| averaged over the images (the target, by construction) and the mean
// relative change.
struct DeformationStabilityPoint {
  double gradient_norm;
  double relative_change;
};
std::vector<DeformationStabilityPoint> deformation_stability(const TensorMap& f, const Tensor& images,
                                                             const std::vector<float>& gradient_norms,
                                                             float smoothness, uint64_t seed,
                                                             int64_t batch_size = 256);
std::vector<DeformationStabilityPoint> deformation_stability(Module& model, const Tensor& images,
                                                             const std::vector<float>& gradient_norms,
                                                             float smoothness, uint64_t seed,
                                                             int64_t batch_size = 256);

}  // namespace eq
