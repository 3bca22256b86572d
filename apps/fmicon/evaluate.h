// equilab apps/fmicon — how good are dense features? Correspondence, label propagation and a collapse diagnostic
// on held-out photos (REFERENCES.md section 6; issue #5).
//
// A task pairs an image A with B = a known random smooth warp of A (affine + elastic), so the true match of every
// pixel of A is known. A feature extractor is any function images [N, C, H, W] -> features [N, D, H, W] (same H, W).
//
// Definitions (pixel coordinates put pixel j's centre at j, (x, y) = (column, row), as grid_sample's align_corners
// = false):
//   Warp.  theta = [I + affine_sigma N(0,1) | translation_sigma N(0,1)] in normalised coordinates (affine.h) and
//          tau = smooth_random_field(elastic_smoothness, elastic_gradient) in pixels (deformation.h). B is A warped
//          by theta, then deformed by tau, in ONE bilinear resampling (zeros outside):
//            B(q) = A(M(q)),  M(q) = theta(q - tau(q))   (theta acting on pixel coordinates via normalisation).
//          `source` stores M(q). The ground truth `target` t(p) of pixel p of A solves M(t) = p, found by the
//          fixed-point iteration t <- theta^-1(p) + tau(t) (a contraction while ||grad tau|| < 1; tau read
//          bilinearly, edge-clamped); pixels whose iteration leaves a residual |M(t) - p| > 0.05 px are invalid.
//   valid(p)   = p and t(p) both lie in [valid_margin, size - 1 - valid_margin]^2 (B shows p, and B's pixels
//                around t(p) read A's content, not the zero padding).
//   valid_b(q) = q and M(q) both lie in [valid_margin, size - 1 - valid_margin]^2 (B's pixel q shows A's content).
//   Labels.    labels_a = Voronoi cells of `regions` seeds uniform in A (id of the nearest seed);
//              labels_b(q) = the Voronoi cell of M(q) (exact, no resampling) where valid_b, else -1.
//   PCK@r      = % of valid pixels p of A, pooled over all pairs, whose nearest neighbour in B (largest cosine
//                similarity of per-pixel L2-normalised features over all size^2 pixels of B; ties to the lowest
//                index) lies within r px (Euclidean) of t(p).
//   J (label propagation, Contrastive Random Walk style): every valid_b pixel q of B takes the top-k pixels of A by
//                cosine similarity s, weights softmax(s / temperature) over those k, sums their one-hot labels_a and
//                takes the argmax (ties to the lowest id). Per pair, IoU of each region present in labels_b
//                (counted over valid_b pixels) is |pred = r and gt = r| / |pred = r or gt = r|; J = mean over
//                regions, then mean over pairs, in %.
//   Collapse   = 1 - W / T on the L2-normalised features f(n, p) of the set's A images (N = count unrelated
//                crops, P pixels), with W = sum_{n,p} |f(n,p) - m(p)|^2 / (P (N - 1)) the across-image variance at a
//                fixed position (m(p) = mean over images) and T = sum_{n,p} |f(n,p) - mean|^2 / (N P - 1) the total
//                variance: the share of the feature variance explained by pixel position (an adjusted R^2).
//                1 = features depend on position only (FMICON without augmentation); ~0 (can be slightly
//                negative) = no positional component beyond chance. Features that do not vary at all (T = 0)
//                carry no content and report 1.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace eq {

using FeatureFn = std::function<Tensor(const Tensor& images)>;  // [N, C, H, W] in [0, 1] -> [N, D, H, W]

struct CorrespondenceOptions {
  int64_t count = 32;          // pairs
  int64_t size = 64;           // crops are size x size
  float affine_sigma = 0.08f;  // std of the random 2x2 perturbation of the identity (normalised coordinates)
  float elastic_gradient = 0.15f, elastic_smoothness = 6.0f;  // the elastic part (augment/deformation.h)
  int regions = 12;            // Voronoi regions of the label map on A
  uint64_t seed = 0;
  // std of the random translation in normalised coordinates (0.2 = 6.4 px at size 64): large enough that matching
  // every pixel to its own position (what collapsed, position-only features do) scores low, see pck4_no_motion
  float translation_sigma = 0.2f;
  float valid_margin = 2.0f;        // pixels: points this close to a border count as invalid (definitions above)
};

struct CorrespondenceSet {
  Tensor a, b;                 // [count, C, size, size]
  Tensor target;               // [count, size, size, 2]: pixel (y, x) of A is seen at (target[..., 1], target[..., 0])
                               // of B, in pixel units (x, y order as grid_sample)
  Tensor valid;                // [count, size, size]: 1 where the target lies inside B, else 0
  Tensor labels_a, labels_b;   // [count, size, size]: region ids (floats holding integers) on A and warped onto B
                               // (labels_b = -1 where valid_b is 0)
  int regions = 0;
  Tensor source;               // [count, size, size, 2]: pixel q of B shows A at (source[..., 0], source[..., 1])
  Tensor valid_b;              // [count, size, size]: 1 where B's pixel shows A's content (source inside A), else 0
};

// Random crops of the photos (each [C, H, W], all with the same C, H, W >= size) warped into B with ground truth.
// Each pair picks a photo uniformly, then a crop position uniformly. The set keeps the photos' C: for grey photos
// pass C = 1 tensors (a network trained on RGB needs them repeated to C = 3 by the caller). count >= 2 (the
// collapse diagnostic compares images), size >= 8. Throws naming make_correspondence_set and the photo's shape.
CorrespondenceSet make_correspondence_set(const std::vector<Tensor>& photos, const CorrespondenceOptions& options);

struct DenseEvalOptions {
  float label_temperature = 0.05f;  // softmax temperature of the label-propagation affinities (cosine similarity)
  int label_top_k = 10;             // neighbours kept per pixel of B
  int64_t batch = 8;                // images per feature call
};

struct DenseEvalResult {
  double pck1 = 0, pck2 = 0, pck4 = 0;  // % of valid pixels of A whose nearest feature in B is within 1/2/4 px
  double label_iou = 0;                  // mean IoU (J) of labels propagated A -> B against labels_b, in %
  double position_collapse = 0;          // collapse diagnostic in [0, 1] (1 = features depend on position only)
  double pck4_no_motion = 0;             // % of valid pixels with |t(p) - p| <= 4: PCK@4 of "every pixel stays put",
                                         // the floor that position-only features reach (a property of the set)
  double label_iou_no_motion = 0;        // J of "every pixel of B keeps the label of A at the same position"
  double seconds = 0;
};

// Evaluates one feature extractor on the set (features are compared by cosine similarity). The extractor runs on
// `batch` images at a time without gradient recording; its output must be [n, D, size, size] (any D >= 1), else
// the error names evaluate_dense_features and both shapes. Similarities are sgemm'd in 256-row chunks on OpenMP
// threads (one chunk per thread); results do not depend on the thread count.
DenseEvalResult evaluate_dense_features(const FeatureFn& features, const CorrespondenceSet& set,
                                        const DenseEvalOptions& options = {});

// The raw-pixel baseline row (D = C): each channel minus its mean over the image, so that the cosine similarity
// compares colour and brightness relative to the image (uncentred [0, 1] grey pixels would all point the same way).
FeatureFn raw_pixel_features();
// A stronger classical baseline: every pixel's (2 radius + 1)^2 neighbourhood of all channels (zeros outside the
// image), minus the neighbourhood's mean, D = C (2 radius + 1)^2 — cosine similarity of these is normalised
// cross-correlation of patches (NCC block matching).
FeatureFn raw_patch_features(int radius = 2);

// A picture for the README: for `rows` pairs, A | B | PCA(features of A) as RGB | PCA(features of B) | matches
// (flow colouring of the predicted A -> B match next to the true one). Writes a PNG; throws naming the path.
// PCA: the top 3 principal components of the pair's L2-normalised features (A and B pooled, so colours compare),
// each min-max stretched to [0, 1]. Flow colouring of a displacement d = match(p) - p on A's grid: hue = direction
// (atan2), saturation = |d| / (largest true |d| of the pair), value 1 (white = no motion, the Middlebury
// convention); invalid pixels black. C other than 1 or 3 is shown as the mean over channels (grey).
void write_feature_pictures(const FeatureFn& features, const CorrespondenceSet& set, int rows,
                            const std::string& png_path);

}  // namespace eq
