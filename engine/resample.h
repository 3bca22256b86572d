// equilab — differentiable warps: grid_sample, affine_grid, and the exact lattice moves roll, rot90 and flips.
//
// These are the building blocks of equivariance experiments: warp an image (or a feature map), run a model, warp
// back, compare. grid_sample and affine_grid follow PyTorch's documented semantics (torch.nn.functional), so a
// user can carry intuition and numbers across; the code is our own.
//
// Normalised coordinates. A grid holds (x, y) pairs in [-1, 1]; x indexes width, y height. Pixel coordinates
// below put pixel j's centre at j (j = 0 .. W-1). The two conventions, for an axis of size W:
//   align_corners = true:   ix = (x + 1) / 2 * (W - 1)     -1 and +1 are the centres of the corner pixels
//   align_corners = false:  ix = ((x + 1) * W - 1) / 2     -1 and +1 are the outer edges of the corner pixels
// align_corners = false makes the mapping independent of resolution (the image is the square [-1, 1]^2 whatever
// its size), which is what a rescaling or rotation about the image centre wants.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

enum class SampleMode { Bilinear, Nearest };

// What a sample point outside the image reads (applied to the pixel coordinate, as in PyTorch):
//   Zeros       neighbours outside the image read 0
//   Border      the coordinate is clamped to [0, W-1] (the edge pixel repeats)
//   Reflection  the coordinate is mirrored at the border until it falls inside: about the corner pixel centres
//               (0 and W-1) with align_corners = true, about the outer edges (-0.5 and W-0.5) with false, then
//               clamped to [0, W-1]
enum class GridPadding { Zeros, Border, Reflection };

struct GridSampleOptions {
  SampleMode mode = SampleMode::Bilinear;
  GridPadding padding = GridPadding::Zeros;
  bool align_corners = false;
};

// input [N, C, H, W], grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo];
//   out[n, c, i, j] = input[n, c] sampled at pixel coordinates (ix, iy) of grid[n, i, j] = (x, y).
// Bilinear: the four neighbours floor/floor+1 weighted by the fractional parts. Nearest: the pixel at
// (round(ix), round(iy)), ties to even (std::nearbyint, as PyTorch).
// Gradients flow to the input and to the grid. The grid gradient of bilinear sampling is the local image slope
// (piecewise constant between pixel centres, undefined exactly on them); nearest has zero grid gradient; Border
// and Reflection pass zero grid gradient where they clamp. A non-finite grid value (nan, inf) reads 0.
Tensor grid_sample(const Tensor& input, const Tensor& grid, const GridSampleOptions& opt = {});
// Per-output-element loops with no precomputation, same semantics, forward only, for tests.
Tensor grid_sample_reference(const Tensor& input, const Tensor& grid, const GridSampleOptions& opt = {});

// theta [N, 2, 3] -> grid [N, H, W, 2]: grid[n, i, j] = theta[n] @ (x_j, y_i, 1), with (x_j, y_i) the normalised
// coordinates of pixel (i, j)'s centre under `align_corners` (x_j = -1 + 2 j / (W-1), or (2 j + 1) / W - 1; a
// size-1 axis gives 0). theta maps output coordinates to input coordinates, so identity theta with the same
// align_corners in grid_sample reproduces the input — exactly in exact arithmetic; in float the coordinates'
// rounding lets bilinear blend in ~1e-6 of a neighbour (max error ~1e-5 at 28x28), nearest is exact. Likewise
// theta = [[0, -1, 0], [1, 0, 0]] on a square image is rot90(x, 1) under either flag (pixel centres sit
// symmetrically about 0 in both conventions). Gradient flows to theta.
Tensor affine_grid(const Tensor& theta, int64_t N, int64_t H, int64_t W, bool align_corners);

// Circular shift of the last two axes, torch.roll semantics: out[..., (i + dy) mod H, (j + dx) mod W] = x[..., i, j].
// x [..., H, W] (rank >= 2) with one shift for all; or x [N, ..., H, W] (rank >= 3) with per-sample shifts dy[n],
// dx[n] (vectors of length N). Gradient: the roll back.
Tensor roll(const Tensor& x, int dy, int dx);
Tensor roll(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx);

// Rotation by k * 90 degrees counter-clockwise of the last two axes, as torch.rot90(x, k, dims=(-2, -1)):
//   k = 1: out[i, j] = x[j, W-1-i]  (shape [..., W, H]);  k = 2: out[i, j] = x[H-1-i, W-1-j];
//   k = 3: out[i, j] = x[H-1-j, i]. Any integer k (taken mod 4; negative k rotates clockwise).
// "Counter-clockwise" reads the array with row 0 at the top, as an image is displayed.
Tensor rot90(const Tensor& x, int k = 1);
// flip_h mirrors left-right (reverses the last axis, W); flip_v mirrors top-bottom (reverses axis -2, H).
Tensor flip_h(const Tensor& x);
Tensor flip_v(const Tensor& x);

}  // namespace eq
