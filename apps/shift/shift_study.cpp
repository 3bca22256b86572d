// Parts 2 and 3 of the shift app: max-pool vs max-blur-pool (and strided conv vs conv + blur-pool) classifiers —
// accuracy, Zhang's shift consistency, per-layer shift-equivariance error — and their deformation stability.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "apps/common/classifier_training.h"
#include "apps/common/csv_log.h"
#include "apps/common/equivariance.h"
#include "apps/common/plot.h"
#include "apps/shift/models.h"
#include "apps/shift/study.h"
#include "engine/autograd.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

// Input shifts (pixels, along x) at which per-layer errors are measured; half-pixel ones are bilinear sub-pixel
// shifts. Circular: the digits sit on a black border, so this is a camera shift, and a conv with zero padding and a
// bias commutes with it exactly for integer shifts (a zero-padded shift would fill the vacated border with 0 where
// the conv outputs its bias, an error that is not aliasing).
const std::vector<float> kShifts = {0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f};
constexpr int kMaxShift = 4;            // consistency: random shifts in [-4, 4]^2
constexpr float kSmoothness = 4.0f;     // deformation fields: white noise blurred with std 4 px
const std::vector<float> kGradientNorms = {0.025f, 0.05f, 0.1f, 0.15f, 0.2f, 0.3f};

struct ModelSpec {
  std::string kind;
  int filter;
  std::string label;
};

std::vector<ModelSpec> model_specs(const StudyConfig& c) {
  std::vector<ModelSpec> specs;
  for (int f : c.filters) {
    const std::string kind = f == 1 ? "maxpool" : "maxblur";
    specs.push_back({kind, f, shift_model_label(kind, f)});
  }
  specs.push_back({"strided", 1, "strided"});
  specs.push_back({"convblur", c.blur_filter, shift_model_label("convblur", c.blur_filter)});
  return specs;
}

struct RunRecord {
  std::shared_ptr<Sequential> model;
  double accuracy = 0, consistency_circular = 0, consistency_zeros = 0, seconds = 0;
  std::vector<std::vector<LayerEquivariance>> layers;  // [shift index][layer]
};

// The last layer before Flatten: the final (downsampled) feature map, where aliasing has had its full effect.
size_t feature_layer(const std::vector<LayerEquivariance>& rows) {
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].name.find("Flatten") != std::string::npos) return i == 0 ? 0 : i - 1;
  return rows.size() - 1;
}

// "2 MaxBlurPool(k=2, ...)" -> "2 MaxBlurPool"
std::string short_layer_name(const std::string& name) { return name.substr(0, name.find('(')); }

bool chart_layer(const std::string& name) {
  return name.find("ReLU") == std::string::npos && name.find("Flatten") == std::string::npos;
}

std::vector<double> as_doubles(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Per-image relative change ||f(x) - f(S x)|| / ||f(x)|| for a zero-padded shift of (0, dx), averaged: the
// constant-displacement reference next to the deformations (||grad tau|| = 0 but every pixel moves).
double shift_relative_change(Module& model, const Tensor& images, float dx) {
  const bool was_training = model.is_training();
  model.eval();
  NoGrad no_grad;
  const size_t n = static_cast<size_t>(images.size(0));
  const Tensor a = model.forward(images);
  const Tensor b = model.forward(translate(images, std::vector<float>(n, 0.0f), std::vector<float>(n, dx),
                                           ShiftPadding::Zeros));
  model.train(was_training);
  const int64_t per = a.numel() / a.size(0);
  double sum = 0;
  int64_t counted = 0;
  for (int64_t s = 0; s < a.size(0); ++s) {
    double diff = 0, ref = 0;
    for (int64_t k = 0; k < per; ++k) {
      const double u = a.data()[s * per + k], d = u - b.data()[s * per + k];
      diff += d * d;
      ref += u * u;
    }
    if (ref > 0) sum += std::sqrt(diff / ref), ++counted;
  }
  return counted ? sum / static_cast<double>(counted) : std::nan("");
}

std::string pretty_dataset(const std::string& name) { return name == "mnist" ? "MNIST" : "Fashion-MNIST"; }

}  // namespace

Json run_shift_classifiers(const StudyConfig& c) {
  const std::vector<ModelSpec> specs = model_specs(c);
  CsvLog runs_csv(c.out_dir + "/classify_runs.csv",
                  {"dataset", "model", "seed", "parameters", "test_accuracy", "consistency_circular",
                   "consistency_zeros", "train_seconds"});
  CsvLog layers_csv(c.out_dir + "/per_layer_shift_error.csv",
                    {"dataset", "model", "seed", "shift_px", "layer", "output_shape", "delta"});
  Json classify = Json::object();
  // MNIST models per label, one per seed, for the deformation part.
  std::map<std::string, std::vector<std::shared_ptr<Sequential>>> mnist_models;

  for (const std::string& dataset : c.datasets) {
    const Dataset full_train = load_dataset(dataset, true, c.data_root);
    const Dataset full_test = load_dataset(dataset, false, c.data_root);
    const Dataset train = full_train.subset(0, std::min(c.train_size, full_train.size()));
    const Dataset test = full_test.subset(0, std::min(c.test_size, full_test.size()));
    const Tensor probe = slice(test.images, 0, 0, std::min<int64_t>(c.eval_size, test.size()));
    std::printf("\n== %s: %lld train / %lld test images, %zu models x %zu seeds, %d epochs ==\n",
                pretty_dataset(dataset).c_str(), static_cast<long long>(train.size()),
                static_cast<long long>(test.size()), specs.size(), c.seeds.size(), c.epochs);
    std::map<std::string, std::vector<RunRecord>> runs;
    for (uint64_t seed : c.seeds) {
      for (const ModelSpec& spec : specs) {
        Rng rng(seed);
        RunRecord r;
        r.model = make_shift_model(spec.kind, spec.filter, train.height(), train.num_classes, rng);
        TrainConfig tc;
        tc.epochs = c.epochs;
        tc.batch = c.batch;
        tc.lr = c.lr;
        tc.optimizer = c.optimizer;
        tc.seed = seed;
        tc.quiet = true;
        if (c.train_shift > 0) {
          const int max_shift = c.train_shift;
          tc.augment = [max_shift](const Tensor& x, Rng& r) {
            return random_translate(x, max_shift, ShiftPadding::Zeros, r);
          };
        }
        const TrainResult tr = train_classifier(*r.model, train, test, tc);
        r.accuracy = tr.test_accuracy;
        r.seconds = tr.seconds;
        r.consistency_circular = shift_consistency(*r.model, test.images, kMaxShift, ShiftPadding::Circular, seed + 77);
        r.consistency_zeros = shift_consistency(*r.model, test.images, kMaxShift, ShiftPadding::Zeros, seed + 77);
        for (float s : kShifts) {
          const EquivarianceTransform shift = shift_transform(0.0f, s, ShiftPadding::Circular);
          r.layers.push_back(per_layer_equivariance_error(*r.model, probe, shift));
          for (const auto& row : r.layers.back()) {
            std::string shape;
            for (int64_t d : row.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
            layers_csv.row({dataset, spec.label, static_cast<int64_t>(seed), s, row.name, shape, row.delta});
          }
        }
        const auto& at1 = r.layers[1];
        std::printf("%-14s seed %llu  acc %.2f%%  consistency circ %.2f%% zeros %.2f%%  Delta@1px features %.4f "
                    "logits %.4f  (%.1f s)\n",
                    spec.label.c_str(), static_cast<unsigned long long>(seed), 100 * r.accuracy,
                    r.consistency_circular, r.consistency_zeros, at1[feature_layer(at1)].delta, at1.back().delta,
                    r.seconds);
        std::fflush(stdout);
        runs_csv.row({dataset, spec.label, static_cast<int64_t>(seed), r.model->num_parameters(), r.accuracy,
                      r.consistency_circular, r.consistency_zeros, r.seconds});
        if (dataset == "mnist") mnist_models[spec.label].push_back(r.model);
        runs[spec.label].push_back(std::move(r));
      }
    }

    // --- table, JSON, figures for this dataset ---
    std::printf("\n%s, mean +- std over %zu seed(s); Delta = per-layer equivariance error (circular x-shifts) at the "
                "last feature map / at the logits (invariance)\n",
                pretty_dataset(dataset).c_str(), c.seeds.size());
    std::printf("%-14s %7s %15s %15s %15s", "model", "params", "test acc %", "consist. circ %", "consist. zeros %");
    for (float s : kShifts) std::printf("  feat@%-4g", s);
    std::printf("  logits@1\n");
    Json ds_json = Json::object();
    Json models_json = Json::array();
    for (const ModelSpec& spec : specs) {
      const auto& rs = runs[spec.label];
      std::vector<double> acc, cc, cz, logit1;
      for (const auto& r : rs) {
        acc.push_back(r.accuracy), cc.push_back(r.consistency_circular), cz.push_back(r.consistency_zeros);
        logit1.push_back(r.layers[1].back().delta);
      }
      std::printf("%-14s %7lld %15s %15s %15s", spec.label.c_str(),
                  static_cast<long long>(rs[0].model->num_parameters()), format_mean_std(acc, 100).c_str(),
                  format_mean_std(cc).c_str(), format_mean_std(cz).c_str());
      Json m = Json::object();
      m.set("model", spec.label).set("kind", spec.kind).set("filter_size", spec.filter)
          .set("parameters", rs[0].model->num_parameters()).set("test_accuracy", mean_std_json(acc))
          .set("consistency_circular", mean_std_json(cc)).set("consistency_zeros", mean_std_json(cz));
      Json per_shift = Json::array();
      for (size_t si = 0; si < kShifts.size(); ++si) {
        const size_t n_layers = rs[0].layers[si].size();
        std::vector<double> feat;
        for (const auto& r : rs) feat.push_back(r.layers[si][feature_layer(r.layers[si])].delta);
        std::printf("  %9.4f", mean_std(feat).mean);
        Json layers = Json::array();
        for (size_t li = 0; li < n_layers; ++li) {
          std::vector<double> d;
          for (const auto& r : rs) d.push_back(r.layers[si][li].delta);
          layers.push(Json::object().set("layer", rs[0].layers[si][li].name).set("delta", mean_std_json(d)));
        }
        per_shift.push(Json::object().set("shift_px", kShifts[si]).set("layers", layers));
      }
      std::printf("  %8.4f\n", mean_std(logit1).mean);
      m.set("per_layer_equivariance_error", per_shift);
      models_json.push(m);
    }
    ds_json.set("train_size", train.size()).set("test_size", test.size()).set("models", models_json);
    classify.set(dataset, ds_json);

    // Consistency and accuracy against the MaxBlurPool filter size; the strided pair as flat references.
    std::vector<double> fx, fcc, fcz, facc;
    for (const ModelSpec& spec : specs) {
      if (spec.kind != "maxpool" && spec.kind != "maxblur") continue;
      std::vector<double> acc, cc, cz;
      for (const auto& r : runs[spec.label])
        acc.push_back(100 * r.accuracy), cc.push_back(r.consistency_circular), cz.push_back(r.consistency_zeros);
      fx.push_back(spec.filter), fcc.push_back(mean_std(cc).mean), fcz.push_back(mean_std(cz).mean);
      facc.push_back(mean_std(acc).mean);
    }
    const std::string ds = pretty_dataset(dataset);
    LineChart cons(ds + ": shift consistency", "MaxBlurPool filter size (1 = MaxPool)", "consistency (%)");
    cons.add_series("circular", fx, fcc).add_series("zero-padded", fx, fcz);
    LineChart acc_chart(ds + ": test accuracy", "MaxBlurPool filter size (1 = MaxPool)", "accuracy (%)");
    acc_chart.add_series("MaxBlurPool", fx, facc);
    for (const std::string& label : {std::string("strided"), shift_model_label("convblur", c.blur_filter)}) {
      std::vector<double> cc, acc;
      for (const auto& r : runs[label]) cc.push_back(r.consistency_circular), acc.push_back(100 * r.accuracy);
      if (fx.size() >= 2) {
        const std::vector<double> ends = {fx.front(), fx.back()};
        cons.add_series(label + " (circ)", ends, std::vector<double>(2, mean_std(cc).mean));
        acc_chart.add_series(label, ends, std::vector<double>(2, mean_std(acc).mean));
      }
    }
    save_charts_png(c.out_dir + "/consistency_vs_filter_" + dataset + ".png", {cons, acc_chart});

    // Per-layer error against the shift: the last feature map for every model, then every layer of two models.
    LineChart feat(ds + ": last feature map", "input shift (px)", "equivariance error Delta");
    feat.set_log_y();
    for (const ModelSpec& spec : specs) {
      std::vector<double> y;
      for (size_t si = 0; si < kShifts.size(); ++si) {
        std::vector<double> d;
        for (const auto& r : runs[spec.label]) d.push_back(r.layers[si][feature_layer(r.layers[si])].delta);
        y.push_back(mean_std(d).mean);
      }
      feat.add_series(spec.label, as_doubles(kShifts), y);
    }
    std::vector<LineChart> charts = {feat};
    std::vector<std::string> detail = {"maxpool", shift_model_label("maxblur", c.blur_filter)};
    for (const std::string& label : detail) {
      if (!runs.count(label)) continue;
      const auto& rs = runs[label];
      LineChart per(ds + ": " + label + " per layer", "input shift (px)", "equivariance error Delta");
      per.set_log_y();
      for (size_t li = 0; li < rs[0].layers[0].size(); ++li) {
        const std::string& name = rs[0].layers[0][li].name;
        if (!chart_layer(name)) continue;
        std::vector<double> y;
        for (size_t si = 0; si < kShifts.size(); ++si) {
          std::vector<double> d;
          for (const auto& r : rs) d.push_back(r.layers[si][li].delta);
          y.push_back(mean_std(d).mean);
        }
        per.add_series(short_layer_name(name), as_doubles(kShifts), y);
      }
      charts.push_back(per);
    }
    save_charts_png(c.out_dir + "/per_layer_error_" + dataset + ".png", charts);
    std::printf("wrote %s/{consistency_vs_filter_%s.png, per_layer_error_%s.png}\n", c.out_dir.c_str(),
                dataset.c_str(), dataset.c_str());
  }

  Json result = Json::object();
  result.set("classify", classify);
  if (!c.deform) return result;

  // --- part 3: deformation stability of the MNIST models ---
  check(!mnist_models.empty(), "shift: the deformation part needs the MNIST models (add mnist to --datasets)");
  const Dataset test = load_dataset("mnist", false, c.data_root);
  const Tensor probe = slice(test.images, 0, 0, std::min<int64_t>(c.eval_size, test.size()));
  const std::vector<std::string> labels = {"maxpool", shift_model_label("maxblur", c.blur_filter), "strided",
                                           shift_model_label("convblur", c.blur_filter)};
  CsvLog deform_csv(c.out_dir + "/deformation_stability.csv",
                    {"model", "seed_index", "target_grad_norm", "measured_grad_norm", "relative_change"});
  std::printf("\n== Deformation stability on %lld MNIST test digits: mean ||f(x) - f(D_tau x)|| / ||f(x)|| of the "
              "logits (smooth fields, std %.0f px) ==\n",
              static_cast<long long>(probe.size(0)), kSmoothness);
  std::printf("%-14s %10s", "model", "shift 1px");
  for (float g : kGradientNorms) std::printf("  |grad|=%-5g", g);
  std::printf("\n");
  LineChart chart("MNIST: deformation stability (logits)", "||grad tau||", "||f(x) - f(D x)|| / ||f(x)||");
  Json deform_json = Json::object();
  deform_json.set("smoothness_px", kSmoothness).set("images", probe.size(0));
  Json models_json = Json::array();
  for (const std::string& label : labels) {
    if (!mnist_models.count(label)) continue;
    const auto& models = mnist_models[label];
    std::vector<std::vector<double>> change(kGradientNorms.size()), grad(kGradientNorms.size());
    std::vector<double> shift_change;
    for (size_t m = 0; m < models.size(); ++m) {
      const auto pts = deformation_stability(*models[m], probe, kGradientNorms, kSmoothness, 4242);
      for (size_t t = 0; t < pts.size(); ++t) {
        change[t].push_back(pts[t].relative_change), grad[t].push_back(pts[t].gradient_norm);
        deform_csv.row({label, static_cast<int64_t>(m), kGradientNorms[t], pts[t].gradient_norm,
                        pts[t].relative_change});
      }
      shift_change.push_back(shift_relative_change(*models[m], probe, 1.0f));
    }
    std::printf("%-14s %10.4f", label.c_str(), mean_std(shift_change).mean);
    std::vector<double> xs, ys;
    Json pts = Json::array();
    for (size_t t = 0; t < kGradientNorms.size(); ++t) {
      xs.push_back(mean_std(grad[t]).mean), ys.push_back(mean_std(change[t]).mean);
      std::printf("  %12s", format_mean_std(change[t], 1, 4).c_str());
      pts.push(Json::object().set("grad_norm", xs.back()).set("relative_change", mean_std_json(change[t])));
    }
    std::printf("\n");
    chart.add_series(label, xs, ys);
    models_json.push(Json::object().set("model", label).set("shift_1px_relative_change", mean_std_json(shift_change))
                         .set("points", pts));
  }
  deform_json.set("models", models_json);
  chart.save_png(c.out_dir + "/deformation_stability.png");
  std::printf("wrote %s/deformation_stability.{png,csv}\n", c.out_dir.c_str());
  result.set("deformation", deform_json);
  return result;
}

}  // namespace eq
