// equilab apps/fmicon — training dense features with the FMICON loss (REFERENCES.md section 6; issue #5), one
// "attempt" of the write-up at a time, so that each failure mode can be watched happening and being fixed.
//
// One step, for a batch of pairs (A, B) [n, C, s, s] of the same scene:
//   F~A = unwarp1(net(warp1(A)))   F.B = unwarp2(net(warp2(B)))   F^A = unwarp3(net(warp3(A)))   FvB = ... (draw 4)
//   loss = icon_loss(icon_pixels(F~A), icon_pixels(F.B), icon_pixels(F^A), icon_pixels(FvB), epsilon 1e-4)
// with four independent warp draws, then backward, gradient-norm clipping, an RMSprop (or Adam) step.
// net = UNet -> [PixelCenter] -> FeatureBallNorm (radius trainable, init 12): features [n, D, s, s] on a sphere.
//
// The attempts (what the warps are, and whether the network subtracts the per-location batch mean):
//   none                 no warp (attempt 0): the four maps are two pairs of identical maps, and a fixed vector
//                        per pixel position (a "where am I" code the zero padding makes easy) scores a perfect loss
//   affine               T = I + 0.05 N(0, 1) on the 2x3 part, T^-1 with probability 1/2 (attempt 1)
//   affine+center        the same, plus PixelCenter before the normalisation (attempt 2)
//   roll                 a circular roll by a uniform random amount on each axis, per sample (attempt 3's key part)
//   affine+roll+center   all three (the reference recipe, augment/warp.h fmicon_warp)
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "augment/warp.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "layers/feature_ball_norm.h"
#include "layers/module.h"
#include "layers/pixel_center.h"
#include "layers/unet.h"

namespace eq {

// --- attempts ----------------------------------------------------------------------------------------------------
struct Attempt {
  bool affine = false, roll = false, center = false;
  std::string name() const;       // "none", "affine", "affine+center", "roll", "affine+roll+center", ...
  std::string dir_name() const;   // name() with '+' -> '_' (a folder name)
  bool operator==(const Attempt& o) const { return affine == o.affine && roll == o.roll && center == o.center; }
};
// Any '+'-joined set of {affine, roll, center}, in any order, or "none". Throws naming the text on anything else.
Attempt parse_attempt(const std::string& text);
// A comma list of attempts ("none,affine"); duplicates and an empty list are errors.
std::vector<Attempt> parse_attempts(const std::string& list);
// The five attempts of the write-up, in its order.
std::vector<Attempt> default_attempts();

// One warp for a batch of n images h x w as the attempt prescribes: identity, random affine, random roll, or
// the affine followed by the roll. The identity has an inverse too (the identity), so every attempt goes through
// the same "warp -> network -> unwarp" code.
Warp draw_attempt_warp(const Attempt& attempt, int64_t n, int64_t h, int64_t w, Rng& rng, float affine_sigma = 0.05f);

// --- the network -------------------------------------------------------------------------------------------------
// UNet(in -> D) -> PixelCenter(D, s, s) if `center` -> FeatureBallNorm(radius_init).
// Children: "unet", "center" (only with center), "norm"; the radius is "norm.radius".
class FeatureNet : public Module {
 public:
  FeatureNet(int in_channels, int dim, int width, int levels, int64_t size, bool center, float radius_init, Rng& rng);
  Tensor forward(const Tensor& x) override;  // [N, in, size, size] -> [N, dim, size, size]
  std::string name() const override;
  float radius() const { return norm_->radius.data()[0]; }
  int64_t size() const { return size_; }

  // With centering only (else both throw naming the function). What PixelCenter subtracts, measured on other data:
  // position_mean = the mean over `images` [N, in, size, size] of the U-Net's output [dim, size, size] (eval mode,
  // no tape, `batch` images per call); forward_centered = the eval-mode features with `mean` subtracted in place of
  // the running mean (forward_centered(x, running mean) is forward(x) in eval mode).
  Tensor position_mean(const Tensor& images, int64_t batch = 8);
  Tensor forward_centered(const Tensor& x, const Tensor& mean);

 private:
  std::shared_ptr<UNet> unet_;
  std::shared_ptr<PixelCenter> center_;  // null without centering
  std::shared_ptr<FeatureBallNorm> norm_;
  int64_t size_;
};

// --- training pairs --------------------------------------------------------------------------------------------------
struct PairBatch {
  Tensor a, b;  // [n, C, s, s] each, values in [0, 1]
};

// Where the pairs come from: photos (two overlapping crops of one photo, B smoothly deformed) or a sequence of
// frames (the same crop of frames i and i + gap, gap in [1, max_gap]). All images [C, H, W] with the same C.
class PairSource {
 public:
  static PairSource photos(std::vector<Tensor> images, int64_t crop);
  static PairSource frames(std::vector<Tensor> frames, int64_t crop, int max_gap = 2);

  // n pairs drawn with rng (deterministic given the rng state).
  PairBatch sample(int64_t n, Rng& rng) const;
  int64_t crop() const { return crop_; }
  int64_t max_offset() const { return max_offset_; }
  int channels() const { return static_cast<int>(images_.front().size(0)); }
  size_t count() const { return images_.size(); }

  // Photo pairs: B's crop is offset by up to crop / 4 on each axis, then deformed by a smooth field with
  // ||grad tau|| = deform_gradient and smoothness crop / 8 (border padding, so no black seams).
  float deform_gradient = 0.1f;

 private:
  PairSource() = default;
  std::vector<Tensor> images_;
  int64_t crop_ = 0, max_offset_ = 0;
  bool sequence_ = false;
  int max_gap_ = 1;
};

// Photos resized by `scale` (antialiased bilinear), but never so much that the shorter side drops below
// `min_side`; photos already smaller than min_side at full size are left out. `kept` (optional) receives the
// indices of the photos kept.
std::vector<Tensor> prepare_photos(const std::vector<Tensor>& photos, float scale, int64_t min_side,
                                   std::vector<size_t>* kept = nullptr);

// Which photos are held out for evaluation: those whose file name without folder and extension is in `names`
// ("chelsea" matches "data/photos/chelsea.png"). When none matches (a folder of other photos), every fourth photo
// in the given order (indices 3, 7, ...) instead, and the first one if there are fewer than four. At least one
// photo must remain for training.
std::vector<bool> holdout_mask(const std::vector<std::string>& paths, const std::vector<std::string>& names);

// --- optimisation helpers ------------------------------------------------------------------------------------------


// --- the training loop ---------------------------------------------------------------------------------------------
struct FmiconConfig {
  Attempt attempt;
  int steps = 300;
  int64_t batch = 8;
  int dim = 32, width = 16, levels = 3;
  float lr = 1e-3f;
  std::string optimizer = "rmsprop";  // rmsprop | adam
  float clip = 20.0f;                 // gradient-norm clip (0 = none)
  float affine_sigma = 0.05f, radius_init = 12.0f;
  float epsilon = 1e-4f;              // inside the loss's log, as the reference code
  uint64_t seed = 0;
  std::string out_dir;                // checkpoint.safetensors and train_log.csv go here when not empty
  bool resume = false;                // continue from out_dir/checkpoint.safetensors if it exists
  int checkpoint_every = 50;          // steps between checkpoints (and always after the last step)
  int eval_every = 0;                 // steps between held-out evaluations (and after the last step); 0: none
  bool progress = true;               // progress bar on stderr
};

struct StepRecord {
  int step;  // 1-based
  double loss, radius, grad_norm, seconds;
};

// Held-out correspondence measured during training (see evaluate.h for what the numbers mean).
struct EvalRecord {
  int step;  // measured after this many steps
  double pck1, pck2, pck4, label_iou, collapse;
  // Attempts with centering: PCK@1 and the collapse diagnostic again with the held-out set's own per-location mean
  // subtracted in place of the running mean (FeatureNet::forward_centered); NaN for the other attempts.
  double pck1_set_mean = std::numeric_limits<double>::quiet_NaN();
  double collapse_set_mean = std::numeric_limits<double>::quiet_NaN();
};
// Measures the network as it is after `step` steps; train_fmicon calls it with the network in eval mode.
using TrainingEvaluator = std::function<EvalRecord(int step)>;

struct FmiconRun {
  std::vector<StepRecord> history;  // all steps, including those restored from a checkpoint
  std::vector<EvalRecord> evals;    // every config.eval_every steps, including those restored from a checkpoint
  double seconds = 0;               // wall time of the steps run in this call, evaluations not included
  double eval_seconds = 0;          // wall time of this call's evaluations
  int steps_run = 0;                // steps run in this call
  double final_loss() const;        // mean loss over the last 10 % of the steps (at least 1)
};

// The network the config describes, initialised from the config's seed (the random-init baseline is this).
std::shared_ptr<FeatureNet> make_feature_net(const FmiconConfig& config, int in_channels, int64_t size);

// The loss of one step for the batch (four warp draws from rng), recorded for backward.
Tensor fmicon_step_loss(Module& net, const Attempt& attempt, const PairBatch& pairs, Rng& rng, float affine_sigma,
                        float epsilon);

// Trains `net` (made by make_feature_net with the same config) on pairs from `source`. Step k's pairs and warps
// come from an Rng seeded by (seed, k), so a resumed run takes exactly the steps it would have taken. With
// config.eval_every > 0 and an `evaluate`, it measures the network every eval_every steps and after the last one
// (to see a method improve and then degrade, not just where it ends), logs each measurement to
// <out_dir>/eval_log.csv and keeps them in the checkpoint.
FmiconRun train_fmicon(FeatureNet& net, const PairSource& source, const FmiconConfig& config,
                       const TrainingEvaluator& evaluate = {});

}  // namespace eq
