// equilab — image resizing (bilinear, bicubic, area; optional antialiasing) and rescaling about the centre.
//
// Every op here is separable and linear: out = R x C^T for each [H, W] plane, with R and C sparse matrices that
// depend only on the sizes and options (one row of taps per output row / column). AxisTaps is that sparse matrix;
// apply_separable is the one differentiable kernel that applies two of them (the backward applies the
// transposes). Gaussian blur (blur.h) uses the same kernel.
//
// Coordinates: pixel j's centre is at j. An output pixel o reads the input around the source coordinate
//   align_corners = false:  src = (o + 0.5) * in / out - 0.5     (pixel areas line up; PyTorch's default)
//   align_corners = true:   src = o * (in - 1) / (out - 1)         (corner pixel centres line up; 0 if out = 1)
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

// A 1-D linear map from an axis of in_size to one of out_size() cells, in compressed-row form: output cell o is
// sum over t in [begin[o], begin[o+1]) of weight[t] * input[index[t]]. An index may repeat within a row.
struct AxisTaps {
  int64_t in_size = 0;
  std::vector<int64_t> begin{0};
  std::vector<int64_t> index;
  std::vector<float> weight;

  int64_t out_size() const { return static_cast<int64_t>(begin.size()) - 1; }
  void add(int64_t i, float w) { index.push_back(i), weight.push_back(w); }  // a tap of the row being built
  void end_row() { begin.push_back(static_cast<int64_t>(index.size())); }
};

// x [..., H, W] -> [..., rows.out_size(), cols.out_size()], out = rows-map along H of (cols-map along W of x).
// Requires rows.in_size == H and cols.in_size == W; `op` names the caller in errors and on the tape.
Tensor apply_separable(const Tensor& x, const AxisTaps& rows, const AxisTaps& cols, const char* op);
// The same map as a direct double sum per output element, for tests.
Tensor apply_separable_reference(const Tensor& x, const AxisTaps& rows, const AxisTaps& cols);

enum class ResizeMode {
  Bilinear,  // triangle filter: the two neighbours of src
  Bicubic,   // Keys cubic convolution with a = -0.75 (PyTorch, OpenCV); four neighbours; may overshoot
  Area,      // mean over the input cells [floor(o in/out), ceil((o+1) in/out)) (PyTorch's adaptive_avg_pool2d)
};

struct ResizeOptions {
  ResizeMode mode = ResizeMode::Bilinear;
  bool align_corners = false;  // bilinear / bicubic only; area ignores it
  // Downscaling only (in > out on an axis; upscaling is unaffected): stretch the filter by s = in / out (or
  // (in-1)/(out-1) with align_corners), w(j) = f((j - src) / s), support s times wider, weights normalised to
  // sum 1 over the taps inside the image — what PIL and torchvision's antialias=True do. Bicubic then uses
  // a = -0.5, PIL's value, as PyTorch does for its antialiased bicubic.
  bool antialias = false;
};

// Without antialias, border taps are clamped to the edge pixel (PyTorch's behaviour), so a constant image stays
// constant. x [..., H, W] (usually [N, C, H, W]) -> [..., out_h, out_w]; differentiable in x.
Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, const ResizeOptions& opt = {});

// Scales the content of each [H, W] plane by `factor` about the image centre, keeping the canvas: the output pixel
// at (i, j) reads the input at src = (o + 0.5 - size / 2) / factor + size / 2 - 0.5 on each axis, and the input is
// zero outside its canvas (a shrunk image gets a zero border; an enlarged one is cropped). Implemented directly as
// a separable map (not via affine_grid + grid_sample, which has no bicubic mode), so bicubic is available:
// Bilinear or Bicubic (a = -0.75); Area is rejected. factor = 1 returns the input exactly. antialias = true
// stretches the filter by 1 / factor when shrinking (factor < 1), normalising over the full support (the zero
// canvas included). The SESN MNIST-scale protocol uses factor in [0.3, 1], bicubic. Differentiable in x.
Tensor rescale_about_center(const Tensor& x, float factor, ResizeMode mode = ResizeMode::Bicubic,
                            bool antialias = false);

}  // namespace eq
