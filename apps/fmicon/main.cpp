// equilab fmicon — FMICON end to end: train dense features with the feature-map inverse-consistency loss under
// each of the write-up's augmentation attempts, then measure correspondence on held-out photos.
//
//   build/fmicon --quick                      # the demo: every attempt with a tiny budget (about a minute)
//   build/fmicon --out out/fmicon             # the study (see apps/fmicon/README.md for the budget and results)
//
// Rows of the table: raw pixels, NCC patches, the random-init network, and each attempt trained with the same
// budget. Writes to --out: results.json, results.csv, curves.png (loss and radius), pck.png, features_<row>.png,
// and per attempt <attempt>/train_log.csv and <attempt>/checkpoint.safetensors (--resume continues or skips
// finished attempts).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/common/cli.h"
#include "apps/common/csv_log.h"
#include "apps/common/datasets.h"
#include "apps/common/json_writer.h"
#include "apps/common/plot.h"
#include "apps/fmicon/evaluate.h"
#include "apps/fmicon/train.h"
#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/parallel.h"
#include "engine/shape_ops.h"

using namespace eq;

namespace {

constexpr const char* kDefaultHoldout = "chelsea,coffee,motorcycle_left,motorcycle_right,rocket";

// Features of `net` for evaluation, in batches, without a tape. `batch_statistics`: run BatchNorm on the batch's
// own statistics (train mode) — for the random-init network, whose running statistics were never estimated.
FeatureFn network_features(std::shared_ptr<FeatureNet> net, bool batch_statistics) {
  return [net, batch_statistics](const Tensor& images) {
    NoGrad no_grad;
    net->train(batch_statistics);
    Tensor f = net->forward(images);
    net->eval();
    return f;
  };
}

// For a network with centering: its features with the held-out set's own per-location mean (over the set's A and
// B images, measured now) subtracted in place of the running mean.
FeatureFn set_mean_features(const std::shared_ptr<FeatureNet>& net, const CorrespondenceSet& set) {
  const Tensor mean = (net->position_mean(set.a) + net->position_mean(set.b)) * 0.5f;
  return [net, mean](const Tensor& images) { return net->forward_centered(images, mean); };
}

std::string short_label(const std::string& name) {
  if (name == "raw pixels") return "raw";
  if (name == "random init") return "init";
  if (name == "ncc patches 5x5") return "ncc";
  std::string s = name;
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"affine", "aff"}, {"center", "ctr"}, {", set mean", " set"}})
    for (size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, from.size(), to);
  return s;
}

struct Row {
  explicit Row(const std::string& row_name) : name(row_name), label(short_label(row_name)) {}
  std::string name, label;  // full name, short label for the bar chart
  std::string centering;    // attempts with PixelCenter: which per-location mean the evaluation subtracted
  bool trained = false;
  FmiconRun run;
  float radius = 0;
  DenseEvalResult eval;
};

std::string file_label(const std::string& name) {
  std::string s = name;
  for (char& ch : s)
    if (ch == ' ' || ch == '+') ch = '_';
  return s;
}

// Moving average over `window` steps (shorter at the start), so the loss curves are readable.
std::vector<double> smooth(const std::vector<double>& y, size_t window) {
  std::vector<double> out(y.size());
  double sum = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    sum += y[i];
    if (i >= window) sum -= y[i - window];
    out[i] = sum / static_cast<double>(std::min(i + 1, window));
  }
  return out;
}

void plot_curves(const std::vector<Row>& rows, const std::string& path) {
  LineChart loss("FMICON loss (moving average)", "step", "-log P[cycle returns]");
  LineChart radius("FeatureBallNorm radius", "step", "radius");
  for (const Row& r : rows) {
    if (!r.trained || r.run.history.empty()) continue;
    std::vector<double> steps, l, rad;
    for (const StepRecord& s : r.run.history) {
      steps.push_back(s.step);
      l.push_back(s.loss);
      rad.push_back(s.radius);
    }
    loss.add_series(r.name, steps, smooth(l, std::max<size_t>(1, l.size() / 20)));
    radius.add_series(r.name, steps, rad);
  }
  save_charts_png(path, {loss, radius});
}

// Held-out PCK@1 and the collapse diagnostic against the training step, one line per attempt: whether an attempt
// improves and then degrades (the write-up's story for affine warps) shows here, not in the final table.
void plot_eval_curves(const std::vector<Row>& rows, const std::string& path) {
  LineChart pck("held-out PCK@1 during training", "step", "% of pixels within 1 px");
  LineChart collapse("collapse during training", "step", "variance explained by position");
  bool any = false;
  for (const Row& r : rows) {
    if (!r.trained || r.run.evals.empty()) continue;
    std::vector<double> steps, p1, col;
    for (const EvalRecord& e : r.run.evals) {
      steps.push_back(e.step);
      p1.push_back(e.pck1);
      col.push_back(e.collapse);
    }
    pck.add_series(r.name, steps, p1);
    collapse.add_series(r.name, steps, col);
    any = true;
    if (r.centering.empty()) continue;
    std::vector<double> set_steps, set_p1, set_col;  // centred by the held-out set's mean (finite where measured)
    for (const EvalRecord& e : r.run.evals)
      if (std::isfinite(e.pck1_set_mean)) {
        set_steps.push_back(e.step);
        set_p1.push_back(e.pck1_set_mean);
        set_col.push_back(e.collapse_set_mean);
      }
    if (set_steps.empty()) continue;
    pck.add_series(r.name + ", set mean", set_steps, set_p1);
    collapse.add_series(r.name + ", set mean", set_steps, set_col);
  }
  if (any) save_charts_png(path, {pck, collapse});
}

void plot_pck(const std::vector<Row>& rows, const std::string& path) {
  // A slot of 100 px per row holds its label ("aff+roll+ctr set", 16 characters); the three charts side by side
  // while that stays under 2,400 px, else one above the other.
  const int h = 380, w = std::max(520, 80 + 100 * static_cast<int>(rows.size()));
  const bool stacked = 3 * w > 2400;
  Canvas canvas(stacked ? w : 3 * w, stacked ? 3 * h : h);
  const char* titles[3] = {"PCK@1 (%)", "PCK@2 (%)", "PCK@4 (%)"};
  for (int k = 0; k < 3; ++k) {
    BarChart chart(titles[k], "", "% of pixels matched within the radius");
    for (const Row& r : rows) chart.add_bar(r.label, k == 0 ? r.eval.pck1 : k == 1 ? r.eval.pck2 : r.eval.pck4);
    chart.draw(canvas, stacked ? 0 : k * w, stacked ? k * h : 0, w, h);
  }
  canvas.save_png(path);
}

Json row_json(const Row& r) {
  Json j = Json::object();
  j.set("name", r.name).set("trained", r.trained);
  if (r.trained) {
    j.set("steps", static_cast<int>(r.run.history.size()))
        .set("final_loss", r.run.final_loss())
        .set("first_loss", r.run.history.empty() ? 0.0 : r.run.history.front().loss)
        .set("train_seconds", r.run.seconds)
        .set("steps_run_now", r.run.steps_run)
        .set("eval_seconds_during_training", r.run.eval_seconds);
    Json during = Json::array();
    for (const EvalRecord& e : r.run.evals) {
      Json m = Json::object();
      m.set("step", e.step)
          .set("pck1", e.pck1)
          .set("pck2", e.pck2)
          .set("pck4", e.pck4)
          .set("label_iou", e.label_iou)
          .set("position_collapse", e.collapse);
      if (std::isfinite(e.pck1_set_mean))
        m.set("pck1_set_mean", e.pck1_set_mean).set("position_collapse_set_mean", e.collapse_set_mean);
      during.push(m);
    }
    j.set("during_training", during);
  }
  if (r.radius > 0) j.set("radius", static_cast<double>(r.radius));
  if (!r.centering.empty()) j.set("centering", r.centering);
  j.set("pck1", r.eval.pck1)
      .set("pck2", r.eval.pck2)
      .set("pck4", r.eval.pck4)
      .set("label_iou", r.eval.label_iou)
      .set("position_collapse", r.eval.position_collapse)
      .set("eval_seconds", r.eval.seconds);
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("fmicon",
              "FMICON: train dense features with the feature-map inverse-consistency loss under the write-up's "
              "augmentation attempts, then measure correspondence (PCK, label propagation, collapse) on held-out "
              "photos.");
  flags.add("attempts", "none,affine,affine+center,roll,affine+roll+center",
            "comma list of attempts: none, affine, affine+center, roll, affine+roll+center (any '+' set of affine, "
            "roll, center)");
  flags.add("photos", "data/photos", "folder of PNG/JPG photos (training crops and the held-out evaluation set)");
  flags.add("holdout", kDefaultHoldout,
            "photos held out for evaluation (file names without extension); if none is in --photos, every 4th");
  flags.add("frames", "", "optional folder of sequence frames (sorted by name): train on frame pairs instead");
  flags.add("photo-scale", "0.5", "resize photos by this factor first (never below what a crop needs)");
  flags.add("steps", "600", "training steps per attempt (the same budget for every attempt)");
  flags.add("crop", "48", "training and evaluation crops are crop x crop pixels");
  flags.add("batch", "8", "pairs per step");
  flags.add("dim", "32", "feature dimension D");
  flags.add("width", "16", "U-Net base width (channels at full resolution; x2 per level)");
  flags.add("levels", "3", "U-Net levels");
  flags.add("lr", "0.001", "learning rate");
  flags.add("optimizer", "rmsprop", "rmsprop (the reference's) or adam");
  flags.add("clip", "20", "gradient-norm clipping threshold (0: off)");
  flags.add("eval-pairs", "32", "held-out evaluation pairs");
  flags.add("checkpoint-every", "50", "steps between checkpoints");
  flags.add("eval-every", "50", "steps between held-out evaluations during training (0: only at the end)");
  flags.add("quick", "false",
            "tiny budget for the demo (steps 20, crop 32, batch 4, 12 evaluation pairs, evaluation every 5 steps)");
  flags.add("threads", "2", "threads for OpenMP loops and OpenBLAS");
  flags.add("seed", "0", "random seed (initialisation, pairs, warps, evaluation set)");
  flags.add("out", "out/fmicon", "output folder");
  flags.add("resume", "false", "continue each attempt from <out>/<attempt>/checkpoint.safetensors (same flags)");
  try {
    if (!flags.parse(argc, argv)) return 0;
    const auto t_start = std::chrono::steady_clock::now();
    set_num_threads(flags.get_int("threads"));
    const bool quick = flags.get_bool("quick");
    const std::vector<Attempt> attempts = parse_attempts(flags.get("attempts"));
    const std::string out = flags.get("out");
    make_dirs(out);

    FmiconConfig base;
    base.steps = flags.get_int_or_quick("steps", 20, quick);
    base.batch = flags.get_int_or_quick("batch", 4, quick);
    base.dim = flags.get_int("dim");
    base.width = flags.get_int("width");
    base.levels = flags.get_int("levels");
    base.lr = static_cast<float>(flags.get_double("lr"));
    base.optimizer = flags.get("optimizer");
    base.clip = static_cast<float>(flags.get_double("clip"));
    base.seed = static_cast<uint64_t>(flags.get_int("seed"));
    base.resume = flags.get_bool("resume");
    base.checkpoint_every = flags.get_int("checkpoint-every");
    base.eval_every = flags.get_int_or_quick("eval-every", 5, quick);
    const int64_t crop = flags.get_int_or_quick("crop", 32, quick);
    const int64_t eval_pairs = flags.get_int_or_quick("eval-pairs", 12, quick);
    const float photo_scale = static_cast<float>(flags.get_double("photo-scale"));

    // --- data: training photos (or frames) and the held-out photos -------------------------------------------------
    const std::vector<NamedImage> photos = load_image_folder(flags.get("photos"), 3);
    const bool use_frames = !flags.get("frames").empty();
    std::vector<std::string> paths;
    for (const NamedImage& p : photos) paths.push_back(p.path);
    // With frames, no photo is trained on, so all of them evaluate.
    const std::vector<bool> held =
        use_frames ? std::vector<bool>(paths.size(), true) : holdout_mask(paths, split_list(flags.get("holdout")));
    std::vector<Tensor> train_raw, held_raw;
    std::vector<std::string> train_names, held_names;
    for (size_t i = 0; i < photos.size(); ++i) {
      const std::string stem = std::filesystem::path(paths[i]).stem().string();
      (held[i] ? held_raw : train_raw).push_back(photos[i].image);
      (held[i] ? held_names : train_names).push_back(stem);
    }
    const int64_t min_side = crop + 2 * (crop / 4);
    std::vector<size_t> kept_held;
    const std::vector<Tensor> held_photos = prepare_photos(held_raw, photo_scale, min_side, &kept_held);
    check(!held_photos.empty(), "fmicon: no held-out photo is at least ", min_side, " pixels on its short side");
    std::vector<std::string> eval_names;
    for (size_t i : kept_held) eval_names.push_back(held_names[i]);

    std::unique_ptr<PairSource> source;
    if (use_frames) {
      std::vector<Tensor> frames;
      for (const NamedImage& f : load_image_folder(flags.get("frames"), 3)) frames.push_back(f.image);
      source = std::make_unique<PairSource>(PairSource::frames(frames, crop));
      std::printf("training on %zu frames of %s; evaluating on all %zu photos\n", source->count(),
                  flags.get("frames").c_str(), held_photos.size());
    } else {
      std::vector<size_t> kept;
      const std::vector<Tensor> train_photos = prepare_photos(train_raw, photo_scale, min_side, &kept);
      std::vector<std::string> used;
      for (size_t i : kept) used.push_back(train_names[i]);
      train_names = used;
      source = std::make_unique<PairSource>(PairSource::photos(train_photos, crop));
      std::string list;
      for (const std::string& n : eval_names) list += (list.empty() ? "" : ", ") + n;
      std::printf("training on %zu photos, evaluating on %zu held-out photos (%s)\n", train_photos.size(),
                  held_photos.size(), list.c_str());
      std::fflush(stdout);
    }

    CorrespondenceOptions co;
    co.count = eval_pairs;
    co.size = crop;
    co.seed = base.seed + 101;
    const CorrespondenceSet eval_set = make_correspondence_set(held_photos, co);
    DenseEvalOptions eo;
    const int picture_rows = static_cast<int>(std::min<int64_t>(4, eval_pairs));

    std::printf("budget: %d steps x %lld pairs of %lldx%lld crops per attempt, D = %d, U-Net width %d, %d levels, "
                "%s lr %g, clip %g\n",
                base.steps, static_cast<long long>(base.batch), static_cast<long long>(crop),
                static_cast<long long>(crop), base.dim, base.width, base.levels, base.optimizer.c_str(), base.lr,
                base.clip);
    std::fflush(stdout);

    // --- baselines -----------------------------------------------------------------------------------------------
    std::vector<Row> rows;
    {
      Row raw("raw pixels");
      raw.eval = evaluate_dense_features(raw_pixel_features(), eval_set, eo);
      write_feature_pictures(raw_pixel_features(), eval_set, picture_rows, out + "/features_raw_pixels.png");
      rows.push_back(raw);
      Row patches("ncc patches 5x5");
      patches.eval = evaluate_dense_features(raw_patch_features(2), eval_set, eo);
      rows.push_back(patches);
      std::printf("no motion (every pixel matched to itself, what position-only features reach): PCK@4 %.1f %%, "
                  "J %.1f %%\n",
                  raw.eval.pck4_no_motion, raw.eval.label_iou_no_motion);
      std::fflush(stdout);
      Row init("random init");
      auto net = make_feature_net(base, source->channels(), crop);
      init.radius = net->radius();
      const FeatureFn fn = network_features(net, /*batch_statistics=*/true);
      init.eval = evaluate_dense_features(fn, eval_set, eo);
      write_feature_pictures(fn, eval_set, picture_rows, out + "/features_random_init.png");
      rows.push_back(init);
    }

    // --- the attempts, same budget each ------------------------------------------------------------------------------
    for (const Attempt& attempt : attempts) {
      FmiconConfig config = base;
      config.attempt = attempt;
      config.out_dir = out + "/" + attempt.dir_name();
      make_dirs(config.out_dir);
      auto net = make_feature_net(config, source->channels(), crop);
      Row row(attempt.name());
      row.trained = true;
      const FeatureFn fn = network_features(net, /*batch_statistics=*/false);
      // The measurements after the last step double as the final ones.
      DenseEvalResult after_last_step, after_last_step_set_mean;
      bool measured_last_step = false;
      const TrainingEvaluator during = [&](int step) {
        const DenseEvalResult r = evaluate_dense_features(fn, eval_set, eo);
        EvalRecord rec{step, r.pck1, r.pck2, r.pck4, r.label_iou, r.position_collapse};
        if (attempt.center) {
          const DenseEvalResult rs = evaluate_dense_features(set_mean_features(net, eval_set), eval_set, eo);
          rec.pck1_set_mean = rs.pck1;
          rec.collapse_set_mean = rs.position_collapse;
          after_last_step_set_mean = rs;
        }
        if (step == config.steps) after_last_step = r, measured_last_step = true;
        return rec;
      };
      row.run = train_fmicon(*net, *source, config, during);
      row.radius = net->radius();
      net->eval();
      row.eval = measured_last_step ? after_last_step : evaluate_dense_features(fn, eval_set, eo);
      write_feature_pictures(fn, eval_set, picture_rows, out + "/features_" + file_label(row.name) + ".png");
      std::printf("  %-20s loss %.4f -> %.4f  radius %.2f  PCK@1/2/4 %.1f / %.1f / %.1f %%  J %.1f %%  collapse %.3f"
                  "  (%.0f s)\n",
                  row.name.c_str(), row.run.history.front().loss, row.run.final_loss(), row.radius, row.eval.pck1,
                  row.eval.pck2, row.eval.pck4, row.eval.label_iou, row.eval.position_collapse, row.run.seconds);
      if (!row.run.evals.empty()) {
        const auto best = std::max_element(row.run.evals.begin(), row.run.evals.end(),
                                           [](const EvalRecord& x, const EvalRecord& y) { return x.pck1 < y.pck1; });
        std::printf("  %-20s held-out PCK@1 during training: best %.1f %% at step %d of %zu measured (%.0f s)\n", "",
                    best->pck1, best->step, row.run.evals.size(), row.run.eval_seconds);
      }
      std::fflush(stdout);
      if (attempt.center) row.centering = "running mean (training crops, momentum 0.1), as the reference code";
      rows.push_back(row);
      if (attempt.center) {
        // The same network centred by the held-out set's own per-location mean (of its A and B images) instead of
        // the running mean, which PixelCenter estimates on training crops while the network changes under it: how
        // much of the collapse diagnostic and of the correspondence is the running mean's estimation error.
        Row set_row(attempt.name() + ", set mean");
        set_row.radius = row.radius;
        set_row.centering = "mean of the held-out set's A and B images";
        set_row.eval = measured_last_step ? after_last_step_set_mean
                                          : evaluate_dense_features(set_mean_features(net, eval_set), eval_set, eo);
        std::printf("  %-20s centred by the held-out set's mean: PCK@1/2/4 %.1f / %.1f / %.1f %%  J %.1f %%  "
                    "collapse %.3f\n",
                    "", set_row.eval.pck1, set_row.eval.pck2, set_row.eval.pck4, set_row.eval.label_iou,
                    set_row.eval.position_collapse);
        std::fflush(stdout);
        rows.push_back(set_row);
      }
    }

    // --- table, results.json, CSV, figures ---------------------------------------------------------------------------
    std::printf("\n| %-28s | %10s | %6s | %6s | %6s | %6s | %7s | %8s |\n", "attempt", "final loss", "radius", "PCK@1",
                "PCK@2", "PCK@4", "label J", "collapse");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(12, '-').c_str(),
                std::string(8, '-').c_str(), std::string(8, '-').c_str(), std::string(8, '-').c_str(),
                std::string(8, '-').c_str(), std::string(9, '-').c_str(), std::string(10, '-').c_str());
    CsvLog csv(out + "/results.csv", {"row", "steps", "final_loss", "radius", "pck1", "pck2", "pck4", "label_iou",
                                      "position_collapse", "train_seconds"});
    Json json_rows = Json::array();
    for (const Row& r : rows) {
      const std::string loss = r.trained ? std::to_string(r.run.final_loss()).substr(0, 8) : "-";
      const std::string radius = r.radius > 0 ? std::to_string(r.radius).substr(0, 5) : "-";
      std::printf("| %-28s | %10s | %6s | %6.1f | %6.1f | %6.1f | %7.1f | %8.3f |\n", r.name.c_str(), loss.c_str(),
                  radius.c_str(), r.eval.pck1, r.eval.pck2, r.eval.pck4, r.eval.label_iou, r.eval.position_collapse);
      csv.row({r.name, r.trained ? static_cast<int>(r.run.history.size()) : 0, r.trained ? r.run.final_loss() : 0.0,
               static_cast<double>(r.radius), r.eval.pck1, r.eval.pck2, r.eval.pck4, r.eval.label_iou,
               r.eval.position_collapse, r.trained ? r.run.seconds : 0.0});
      json_rows.push(row_json(r));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

    Json config = Json::object();
    config.set("steps", base.steps)
        .set("batch", static_cast<int64_t>(base.batch))
        .set("crop", static_cast<int64_t>(crop))
        .set("dim", base.dim)
        .set("width", base.width)
        .set("levels", base.levels)
        .set("lr", static_cast<double>(base.lr))
        .set("optimizer", base.optimizer)
        .set("clip", static_cast<double>(base.clip))
        .set("affine_sigma", static_cast<double>(base.affine_sigma))
        .set("radius_init", static_cast<double>(base.radius_init))
        .set("loss_epsilon", static_cast<double>(base.epsilon))
        .set("photo_scale", static_cast<double>(photo_scale))
        .set("eval_pairs", static_cast<int64_t>(eval_pairs))
        .set("eval_every", base.eval_every)
        .set("seed", static_cast<int64_t>(base.seed))
        .set("threads", flags.get_int("threads"))
        .set("quick", quick)
        .set("training_source", use_frames ? "frames:" + flags.get("frames") : "photos:" + flags.get("photos"));
    Json train_list = Json::array(), held_list = Json::array();
    if (!use_frames)
      for (const std::string& n : train_names) train_list.push(n);
    for (const std::string& n : eval_names) held_list.push(n);
    Json results = Json::object();
    results.set("config", config)
        .set("training_photos", train_list)
        .set("heldout_photos", held_list)
        .set("rows", json_rows)
        .set("no_motion", Json::object()
                              .set("pck4", rows.front().eval.pck4_no_motion)
                              .set("label_iou", rows.front().eval.label_iou_no_motion))
        .set("seconds", seconds);
    write_json_file(out + "/results.json", results);
    plot_curves(rows, out + "/curves.png");
    plot_pck(rows, out + "/pck.png");
    plot_eval_curves(rows, out + "/pck_curve.png");
    std::printf("\n%.0f s in all; wrote %s/{results.json, results.csv, curves.png, pck.png, pck_curve.png, "
                "features_*.png, <attempt>/train_log.csv, <attempt>/eval_log.csv, <attempt>/checkpoint.safetensors}\n",
                seconds, out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmicon: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
