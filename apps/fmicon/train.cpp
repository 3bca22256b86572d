#include "apps/fmicon/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#if defined(__SSE__)
#endif

#include "apps/common/cli.h"
#include "apps/common/csv_log.h"
#include "apps/common/progress.h"
#include "augment/affine.h"
#include "augment/deformation.h"
#include "augment/equivariant_wrapper.h"
#include "augment/shift.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/elementwise.h"
#include "engine/parallel.h"
#include "engine/reduce.h"
#include "engine/resize.h"
#include "engine/shape_ops.h"
#include "losses/icon.h"

namespace eq {

// --- attempts ----------------------------------------------------------------------------------------------------

std::string Attempt::name() const {
  std::string s;
  for (auto [on, part] : {std::pair{affine, "affine"}, std::pair{roll, "roll"}, std::pair{center, "center"}})
    if (on) s += (s.empty() ? "" : "+") + std::string(part);
  return s.empty() ? "none" : s;
}

std::string Attempt::dir_name() const {
  std::string s = name();
  std::replace(s.begin(), s.end(), '+', '_');
  return s;
}

Attempt parse_attempt(const std::string& text) {
  if (text == "none") return {};
  Attempt a;
  std::set<std::string> seen;
  for (const std::string& part : split_list(text, '+')) {
    check(seen.insert(part).second, "fmicon: attempt '", text, "' names '", part, "' twice");
    if (part == "affine") a.affine = true;
    else if (part == "roll") a.roll = true;
    else if (part == "center") a.center = true;
    else fail("fmicon: unknown attempt '", text, "': '", part, "' is not one of affine, roll, center (join them "
              "with '+', e.g. affine+roll+center, or give 'none')");
  }
  check(!seen.empty(), "fmicon: empty attempt '", text, "' (give 'none' for no augmentation)");
  return a;
}

std::vector<Attempt> parse_attempts(const std::string& list) {
  std::vector<Attempt> out;
  for (const std::string& item : split_list(list, ',')) {
    const Attempt a = parse_attempt(item);
    for (const Attempt& b : out)
      check(!(a == b), "fmicon: attempt '", a.name(), "' is listed twice in '", list, "'");
    out.push_back(a);
  }
  check(!out.empty(), "fmicon: no attempt in '", list, "'");
  return out;
}

std::vector<Attempt> default_attempts() {
  return parse_attempts("none,affine,affine+center,roll,affine+roll+center");
}

Warp draw_attempt_warp(const Attempt& attempt, int64_t n, int64_t h, int64_t w, Rng& rng, float affine_sigma) {
  Warp identity{"identity", [](const Tensor& x) { return x; }, [](const Tensor& y) { return y; }};
  Warp warp = identity;
  if (attempt.affine) warp = affine_warp(random_affine(n, rng, affine_sigma));
  if (attempt.roll) {
    // Uniform over every position: after the roll no pixel of the network's input frame is special.
    Shifts by;
    for (int64_t s = 0; s < n; ++s) {
      by.dy.push_back(static_cast<int>(rng.randint(h)));
      by.dx.push_back(static_cast<int>(rng.randint(w)));
    }
    const Warp roll = shift_warp(by, ShiftPadding::Circular, h, w);
    warp = attempt.affine ? compose(warp, roll) : roll;
  }
  return warp;
}

// --- the network -------------------------------------------------------------------------------------------------

FeatureNet::FeatureNet(int in_channels, int dim, int width, int levels, int64_t size, bool center, float radius_init,
                       Rng& rng)
    : size_(size) {
  check(size > 0, "FeatureNet: size must be positive, got ", size);
  unet_ = register_module("unet", std::make_shared<UNet>(in_channels, dim, width, rng, levels));
  if (center) center_ = register_module("center", std::make_shared<PixelCenter>(dim, size, size));
  norm_ = register_module("norm", std::make_shared<FeatureBallNorm>(radius_init));
}

Tensor FeatureNet::forward(const Tensor& x) {
  Tensor f = unet_->forward(x);
  if (center_) f = center_->forward(f);
  return norm_->forward(f);
}

Tensor FeatureNet::position_mean(const Tensor& images, int64_t batch) {
  check(center_ != nullptr, "FeatureNet::position_mean: this network does not centre its features (no PixelCenter)");
  check(images.defined() && images.dim() == 4 && images.size(0) >= 1 && batch >= 1,
        "FeatureNet::position_mean: expected images [N >= 1, C, H, W] and batch >= 1, got ",
        images.defined() ? shape_str(images.shape()) : std::string("an undefined tensor"), " and batch ", batch);
  NoGrad no_grad;
  const bool was_training = is_training();
  unet_->eval();
  Tensor total;
  for (int64_t n0 = 0; n0 < images.size(0); n0 += batch) {
    const Tensor part = sum(unet_->forward(slice(images, 0, n0, std::min(images.size(0), n0 + batch))), {0});
    total = total.defined() ? total + part : part;
  }
  train(was_training);
  return total * (1.0f / static_cast<float>(images.size(0)));
}

Tensor FeatureNet::forward_centered(const Tensor& x, const Tensor& mean) {
  check(center_ != nullptr,
        "FeatureNet::forward_centered: this network does not centre its features (no PixelCenter)");
  check(mean.defined() && mean.shape() == center_->running_mean.shape(),
        "FeatureNet::forward_centered: expected a mean ", shape_str(center_->running_mean.shape()), ", got ",
        mean.defined() ? shape_str(mean.shape()) : std::string("an undefined tensor"));
  NoGrad no_grad;
  const bool was_training = is_training();
  eval();
  const Tensor f = unet_->forward(x);
  const Tensor out = norm_->forward(f - reshape(mean, {1, mean.size(0), mean.size(1), mean.size(2)}));
  train(was_training);
  return out;
}

std::string FeatureNet::name() const {
  return "FeatureNet(" + unet_->name() + (center_ ? " -> PixelCenter" : "") + " -> FeatureBallNorm)";
}

std::shared_ptr<FeatureNet> make_feature_net(const FmiconConfig& c, int in_channels, int64_t size) {
  Rng rng(c.seed * 7919ULL + 17);
  return std::make_shared<FeatureNet>(in_channels, c.dim, c.width, c.levels, size, c.attempt.center, c.radius_init,
                                      rng);
}

// --- training pairs ------------------------------------------------------------------------------------------------

namespace {

void check_images(const std::vector<Tensor>& images, int64_t min_h, int64_t min_w, const char* what) {
  check(!images.empty(), "fmicon: no ", what, " to draw training pairs from");
  for (size_t i = 0; i < images.size(); ++i) {
    const Tensor& t = images[i];
    check(t.dim() == 3 && t.size(0) == images[0].size(0), "fmicon: ", what, " ", i, " has shape ", t.shape(),
          " (expected [C, H, W] with C = ", images[0].dim() == 3 ? images[0].size(0) : -1, ")");
    check(t.size(1) >= min_h && t.size(2) >= min_w, "fmicon: ", what, " ", i, " is ", t.shape(), ", smaller than the ",
          min_h, "x", min_w, " a pair needs");
  }
}

// dst [C, s, s] <- src[:, y : y + s, x : x + s]
void copy_crop(const Tensor& src, int64_t y, int64_t x, int64_t s, float* dst) {
  const int64_t C = src.size(0), H = src.size(1), W = src.size(2);
  const float* p = src.data();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < s; ++i)
      std::memcpy(dst + (c * s + i) * s, p + (c * H + y + i) * W + x, static_cast<size_t>(s) * sizeof(float));
}

}  // namespace

PairSource PairSource::photos(std::vector<Tensor> images, int64_t crop) {
  check(crop >= 4, "fmicon: crop must be >= 4, got ", crop);
  PairSource p;
  p.crop_ = crop;
  p.max_offset_ = crop / 4;
  check_images(images, crop + 2 * p.max_offset_, crop + 2 * p.max_offset_, "photo");
  p.images_ = std::move(images);
  return p;
}

PairSource PairSource::frames(std::vector<Tensor> frames, int64_t crop, int max_gap) {
  check(crop >= 4 && max_gap >= 1, "fmicon: frames need crop >= 4 and max_gap >= 1, got ", crop, ", ", max_gap);
  check(frames.size() >= 2, "fmicon: a frame sequence needs at least 2 frames, got ", frames.size());
  check_images(frames, crop, crop, "frame");
  for (const Tensor& f : frames)
    check(f.shape() == frames[0].shape(), "fmicon: all frames must have the same shape; got ", f.shape(), " and ",
          frames[0].shape());
  PairSource p;
  p.crop_ = crop;
  p.sequence_ = true;
  p.max_gap_ = std::min<int>(max_gap, static_cast<int>(frames.size()) - 1);
  p.images_ = std::move(frames);
  return p;
}

PairBatch PairSource::sample(int64_t n, Rng& rng) const {
  check(n >= 1, "fmicon: need at least one pair per batch, got ", n);
  const int64_t C = images_.front().size(0), s = crop_;
  Tensor a({n, C, s, s}), b({n, C, s, s});
  for (int64_t k = 0; k < n; ++k) {
    float* pa = a.data() + k * C * s * s;
    float* pb = b.data() + k * C * s * s;
    if (sequence_) {
      const int gap = 1 + static_cast<int>(rng.randint(max_gap_));
      const size_t i = static_cast<size_t>(rng.randint(static_cast<int64_t>(images_.size()) - gap));
      const Tensor& f = images_[i];
      const int64_t y = rng.randint(f.size(1) - s + 1), x = rng.randint(f.size(2) - s + 1);
      copy_crop(f, y, x, s, pa);
      copy_crop(images_[i + gap], y, x, s, pb);
    } else {
      const Tensor& img = images_[static_cast<size_t>(rng.randint(static_cast<int64_t>(images_.size())))];
      const int64_t m = max_offset_;
      // A inside a margin of m, so that B (offset by up to m on each axis) stays inside the photo.
      const int64_t y = m + rng.randint(img.size(1) - s - 2 * m + 1), x = m + rng.randint(img.size(2) - s - 2 * m + 1);
      const int64_t dy = rng.randint(2 * m + 1) - m, dx = rng.randint(2 * m + 1) - m;
      copy_crop(img, y, x, s, pa);
      copy_crop(img, y + dy, x + dx, s, pb);
    }
  }
  if (!sequence_ && deform_gradient > 0) {
    NoGrad no_grad;
    GridSampleOptions border;
    border.padding = GridPadding::Border;
    const Tensor tau = smooth_random_field(n, s, s, std::max(1.0f, s / 8.0f), deform_gradient, rng);
    b = deform(b, tau, border);
  }
  return {a, b};
}

std::vector<Tensor> prepare_photos(const std::vector<Tensor>& photos, float scale, int64_t min_side,
                                   std::vector<size_t>* kept) {
  check(scale > 0 && scale <= 1, "fmicon: photo scale must be in (0, 1], got ", scale);
  std::vector<Tensor> out;
  if (kept) kept->clear();
  for (size_t i = 0; i < photos.size(); ++i) {
    const Tensor& p = photos[i];
    check(p.dim() == 3, "fmicon: photo ", i, " must be [C, H, W], got ", p.shape());
    const int64_t short_side = std::min(p.size(1), p.size(2));
    if (short_side < min_side) continue;
    // Never below min_side: the largest scale <= `scale` that keeps the short side >= min_side.
    const double f = std::max<double>(scale, static_cast<double>(min_side) / static_cast<double>(short_side));
    const int64_t h = std::max<int64_t>(min_side, std::lround(p.size(1) * f));
    const int64_t w = std::max<int64_t>(min_side, std::lround(p.size(2) * f));
    ResizeOptions opt;
    opt.antialias = true;
    NoGrad no_grad;
    out.push_back(f >= 1.0 ? p : resize(p, h, w, opt));
    if (kept) kept->push_back(i);
  }
  return out;
}

std::vector<bool> holdout_mask(const std::vector<std::string>& paths, const std::vector<std::string>& names) {
  check(paths.size() >= 2, "fmicon: need at least 2 photos (one to train on, one to hold out), got ", paths.size());
  std::vector<bool> held(paths.size(), false);
  bool any = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string stem = std::filesystem::path(paths[i]).stem().string();
    held[i] = std::find(names.begin(), names.end(), stem) != names.end();
    any = any || held[i];
  }
  if (!any) {
    for (size_t i = 3; i < paths.size(); i += 4) held[i] = true;
    if (paths.size() < 4) held[0] = true;
  }
  check(std::count(held.begin(), held.end(), false) >= 1, "fmicon: every one of the ", paths.size(),
        " photos is held out; nothing is left to train on");
  return held;
}

// --- the training loop ---------------------------------------------------------------------------------------------

double FmiconRun::final_loss() const {
  if (history.empty()) return 0;
  const size_t tail = std::max<size_t>(1, history.size() / 10);
  double s = 0;
  for (size_t i = history.size() - tail; i < history.size(); ++i) s += history[i].loss;
  return s / static_cast<double>(tail);
}

Tensor fmicon_step_loss(Module& net, const Attempt& attempt, const PairBatch& pairs, Rng& rng, float affine_sigma,
                        float epsilon) {
  check(pairs.a.dim() == 4 && pairs.a.shape() == pairs.b.shape(), "fmicon: A and B must both be [n, C, s, s], got ",
        pairs.a.shape(), " and ", pairs.b.shape());
  const int64_t n = pairs.a.size(0), h = pairs.a.size(2), w = pairs.a.size(3);
  // Four independent draws: A twice, B twice (warp -> network -> unwarp, gradients through both warps).
  auto features = [&](const Tensor& x) {
    const Warp warp = draw_attempt_warp(attempt, n, h, w, rng, affine_sigma);
    return icon_pixels(warp.inverse(net(warp.apply(x))));
  };
  const Tensor a1 = features(pairs.a);
  const Tensor b1 = features(pairs.b);
  const Tensor a2 = features(pairs.a);
  const Tensor b2 = features(pairs.b);
  IconOptions opt;
  opt.epsilon = epsilon;
  return icon_loss(a1, b1, a2, b2, opt);
}

namespace {

std::unique_ptr<Optimizer> make_optimizer(const FmiconConfig& c, std::vector<Tensor> params) {
  if (c.optimizer == "rmsprop") return std::make_unique<RMSprop>(std::move(params), c.lr);
  if (c.optimizer == "adam") return std::make_unique<Adam>(std::move(params), c.lr);
  fail("fmicon: unknown optimizer '", c.optimizer, "' (choose rmsprop or adam)");
}

// Per-step and per-evaluation records <-> [records, columns] checkpoint tensors (float32 holds step numbers
// exactly up to 2^24).
constexpr int64_t kHistoryColumns = 5, kEvalColumns = 8;
constexpr int64_t kEvalColumnsBeforeSetMean = 6;  // checkpoints written before the set-mean columns

Tensor records_tensor(const std::vector<std::vector<double>>& rows, int64_t columns) {
  Tensor t({static_cast<int64_t>(rows.size()), columns});
  float* out = t.data();
  for (const std::vector<double>& row : rows)
    for (int64_t j = 0; j < columns; ++j) *out++ = static_cast<float>(row[static_cast<size_t>(j)]);
  return t;
}

// The rows of a checkpoint's [records, columns] tensor `name`; a tensor of `older_columns` columns (written before
// the later columns existed) reads as NaN in the missing ones. None if the checkpoint has no such tensor and
// `optional` (checkpoints written before evaluations were logged).
std::vector<std::vector<double>> records_from(const Checkpoint& cp, const std::string& name, int64_t columns,
                                              bool optional, int64_t older_columns = -1) {
  if (optional && !cp.contains(name)) return {};
  const Tensor& t = cp.get(name);
  check(t.dim() == 2 && (t.size(1) == columns || t.size(1) == older_columns), "fmicon: checkpoint tensor '", name,
        "' must be [records, ", columns, "], got ", t.shape());
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < t.size(0); ++i) {
    std::vector<double> row(static_cast<size_t>(columns), std::numeric_limits<double>::quiet_NaN());
    for (int64_t j = 0; j < t.size(1); ++j) row[static_cast<size_t>(j)] = t.data()[i * t.size(1) + j];
    rows.push_back(row);
  }
  return rows;
}

// The first line of a text file ("" if it cannot be read).
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

Tensor history_tensor(const std::vector<StepRecord>& h) {
  std::vector<std::vector<double>> rows;
  for (const StepRecord& r : h) rows.push_back({double(r.step), r.loss, r.radius, r.grad_norm, r.seconds});
  return records_tensor(rows, kHistoryColumns);
}

Tensor evals_tensor(const std::vector<EvalRecord>& e) {
  std::vector<std::vector<double>> rows;
  for (const EvalRecord& r : e)
    rows.push_back({double(r.step), r.pck1, r.pck2, r.pck4, r.label_iou, r.collapse, r.pck1_set_mean,
                    r.collapse_set_mean});
  return records_tensor(rows, kEvalColumns);
}

}  // namespace

FmiconRun train_fmicon(FeatureNet& net, const PairSource& source, const FmiconConfig& c,
                       const TrainingEvaluator& evaluate) {
  check(c.steps >= 1 && c.batch >= 1 && c.lr > 0, "fmicon: steps, batch and lr must be positive (got ", c.steps, ", ",
        c.batch, ", ", c.lr, ")");
  check(c.eval_every >= 0, "fmicon: --eval-every must be 0 (no evaluations during training) or positive, got ",
        c.eval_every);
  check(net.size() == source.crop(), "fmicon: the network is built for ", net.size(), "x", net.size(),
        " inputs but the pairs are ", source.crop(), "x", source.crop(), " crops");
  check(!c.attempt.center || c.batch >= 2, "fmicon: attempt '", c.attempt.name(), "' subtracts the batch mean, ",
        "which needs --batch >= 2 (got ", c.batch, ")");
  auto opt = make_optimizer(c, net.parameters());
  FmiconRun run;
  const std::string ckpt = c.out_dir.empty() ? "" : c.out_dir + "/checkpoint.safetensors";
  const std::string format = "equilab fmicon checkpoint, attempt " + c.attempt.name();

  if (c.resume && !ckpt.empty() && std::filesystem::exists(ckpt)) {
    Checkpoint cp = load_safetensors(ckpt);
    NamedTensors state = net.named_parameters();
    for (auto& nt : net.named_buffers()) state.push_back(nt);
    try {
      const auto it = cp.metadata.find("format");
      check(it != cp.metadata.end() && it->second == format, "it is not a checkpoint of attempt '",
            c.attempt.name(), "'");
      load_into(Checkpoint{strip_prefix(cp.tensors, "model."), {}}, state, /*strict=*/true);
      opt->load_state(strip_prefix(cp.tensors, "optimizer."));
      for (const auto& r : records_from(cp, "history", kHistoryColumns, false))
        run.history.push_back({static_cast<int>(r[0]), r[1], r[2], r[3], r[4]});
      for (const auto& r : records_from(cp, "evals", kEvalColumns, true, kEvalColumnsBeforeSetMean))
        run.evals.push_back({static_cast<int>(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]});
    } catch (const Error& e) {
      fail("cannot resume from ", ckpt, " (was it written with other flags?): ", e.what());
    }
    check(static_cast<int>(run.history.size()) <= c.steps, "cannot resume from ", ckpt, ": it has ",
          run.history.size(), " steps, more than --steps ", c.steps);
    if (c.progress)
      std::printf("  resumed %s from %s after step %zu\n", c.attempt.name().c_str(), ckpt.c_str(),
                  run.history.size());
  }
  const int first = static_cast<int>(run.history.size());
  std::unique_ptr<CsvLog> csv;
  if (!c.out_dir.empty())
    csv = std::make_unique<CsvLog>(c.out_dir + "/train_log.csv",
                                   std::vector<std::string>{"step", "loss", "radius", "grad_norm", "seconds"},
                                   /*append=*/first > 0);
  std::unique_ptr<CsvLog> eval_csv;
  const bool evaluating = evaluate && c.eval_every > 0;
  // Attempts with centering log the set-mean measurements too, unless continuing a log written before them.
  std::vector<std::string> eval_columns{"step", "pck1", "pck2", "pck4", "label_iou", "position_collapse"};
  const std::string eval_path = c.out_dir + "/eval_log.csv";
  const bool continue_evals = first > 0 && !run.evals.empty();
  const bool older_log = continue_evals && first_line(eval_path) == "step,pck1,pck2,pck4,label_iou,position_collapse";
  if (c.attempt.center && !older_log)
    eval_columns.insert(eval_columns.end(), {"pck1_set_mean", "position_collapse_set_mean"});
  if (!c.out_dir.empty() && evaluating)
    eval_csv = std::make_unique<CsvLog>(eval_path, eval_columns, /*append=*/continue_evals);
  auto save = [&] {
    NamedTensors all = with_prefix("model.", net.named_parameters());
    for (auto& nt : with_prefix("model.", net.named_buffers())) all.push_back(nt);
    for (auto& nt : with_prefix("optimizer.", opt->state())) all.push_back(nt);
    all.emplace_back("history", history_tensor(run.history));
    all.emplace_back("evals", evals_tensor(run.evals));
    save_safetensors(ckpt, all, {{"format", format}, {"step", std::to_string(run.history.size())}});
  };

  net.train();
  const auto t_start = std::chrono::steady_clock::now();
  std::unique_ptr<ProgressBar> bar;
  if (c.progress && first < c.steps)
    bar = std::make_unique<ProgressBar>(c.steps - first, "  " + c.attempt.name(), "pair");
  for (int step = first; step < c.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    Rng rng(c.seed * 1000003ULL + static_cast<uint64_t>(step) * 7919ULL + 1);
    const PairBatch pairs = source.sample(c.batch, rng);
    Tensor loss = fmicon_step_loss(net, c.attempt, pairs, rng, c.affine_sigma, c.epsilon);
    opt->zero_grad();
    loss.backward();
    const double gnorm = clip_grad_norm(opt->params(), c.clip);
    opt->step();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const StepRecord rec{step + 1, loss.item(), net.radius(), gnorm, secs};
    check(std::isfinite(rec.loss), "fmicon: the loss became ", rec.loss, " at step ", rec.step, " of attempt '",
          c.attempt.name(), "' (try a smaller --lr)");
    run.history.push_back(rec);
    ++run.steps_run;
    if (csv) csv->row({rec.step, rec.loss, rec.radius, rec.grad_norm, rec.seconds});
    if (evaluating && (rec.step % c.eval_every == 0 || rec.step == c.steps)) {
      const auto te = std::chrono::steady_clock::now();
      net.eval();
      const EvalRecord e = evaluate(rec.step);
      net.train();
      run.evals.push_back(e);
      if (eval_csv) {
        std::vector<CsvField> fields{e.step, e.pck1, e.pck2, e.pck4, e.label_iou, e.collapse};
        if (eval_columns.size() > fields.size()) fields.insert(fields.end(), {e.pck1_set_mean, e.collapse_set_mean});
        eval_csv->row(fields);
      }
      run.eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    }
    if (!ckpt.empty() && ((step + 1) % std::max(1, c.checkpoint_every) == 0 || step + 1 == c.steps)) save();
    if (bar) {
      char extra[96];
      const int n = std::snprintf(extra, sizeof extra, "loss %.4f radius %.2f", rec.loss, rec.radius);
      if (!run.evals.empty())
        std::snprintf(extra + n, sizeof extra - n, " PCK@1 %.1f %% (step %d)", run.evals.back().pck1,
                      run.evals.back().step);
      bar->step(c.batch, extra);
    }
  }
  if (bar) bar->finish();
  run.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() - run.eval_seconds;
  return run;
}

}  // namespace eq
