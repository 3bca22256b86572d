// Part 4 of the shift app: a plain CNN vs a P4CNN (Cohen & Welling 2016) on rotated MNIST digits — accuracy when
// trained on upright or on rotated digits, and the per-layer rotation-equivariance error for quarter turns and for
// angles the p4 group does not contain.
#include <cmath>
#include <cstdio>
#include <map>

#include "apps/common/classifier_training.h"
#include "apps/common/csv_log.h"
#include "apps/common/equivariance.h"
#include "apps/common/plot.h"
#include "apps/shift/models.h"
#include "apps/shift/study.h"
#include "augment/affine.h"
#include "augment/rotation.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

// x [N, C, H, W] with sample n rotated by angles[n] degrees about the centre (bilinear, zeros outside).
Tensor rotate_each(const Tensor& x, const std::vector<float>& angles) {
  std::vector<Tensor> thetas;
  for (float a : angles) thetas.push_back(rotation_theta(1, a, x.size(2), x.size(3)));
  return warp_affine(x, concat(thetas, 0));
}

std::vector<float> uniform_angles(int64_t n, Rng& rng) {
  std::vector<float> a(static_cast<size_t>(n));
  for (auto& v : a) v = rng.uniform(0.0f, 360.0f);
  return a;
}

// Rotation by any angle, acting on p4 maps [N, C, 4, H, W] through the NEAREST group element: the rotation axis
// shifts by k = round(degrees / 90) (with the maps turned by k quarter turns, rotate_p4) and the remaining
// degrees - 90 k turn the maps by interpolation. Plain maps are rotated, logits left alone (invariance).
// rotation_transform() of equivariance.h rotates p4 maps without shifting the axis, which is right only for
// |degrees| < 45; this is the natural extension (a p4 net cannot do better for angles outside the group).
EquivarianceTransform nearest_p4_rotation(float degrees) {
  EquivarianceTransform t;
  t.name = "rotate(" + std::to_string(degrees) + ", nearest p4 action)";
  t.on_input = [degrees](const Tensor& x) { return rotate(x, degrees); };
  t.on_output = [degrees](const Tensor& y, const Shape&) {
    if (y.dim() < 3) return y;
    if (y.dim() != 5) return rotate(y, degrees);
    const int k = static_cast<int>(std::lround(degrees / 90.0f));
    const float rest = degrees - 90.0f * static_cast<float>(k);
    const Tensor turned = rotate_p4(y, ((k % 4) + 4) % 4);
    return rest == 0.0f ? turned : rotate(turned, rest);
  };
  return t;
}

struct RotationRun {
  double accuracy_rotated = 0, accuracy_upright = 0, seconds = 0;
  int64_t parameters = 0;
  std::vector<std::vector<LayerEquivariance>> layers;  // [transform][layer]
  std::vector<double> logit_invariance;                // per angle of kAngleSweep
};

const std::vector<float> kLayerAngles = {90.0f, 30.0f, 60.0f};  // 90: exact rot90 / rotate_p4
std::vector<float> angle_sweep() {
  std::vector<float> a;
  for (int d = 0; d <= 360; d += 15) a.push_back(static_cast<float>(d));
  return a;
}

}  // namespace

Json run_rotation_study(const StudyConfig& c) {
  const Dataset full_train = load_dataset("mnist", true, c.data_root);
  const Dataset full_test = load_dataset("mnist", false, c.data_root);
  const Dataset train = full_train.subset(0, std::min(c.rot_train_size, full_train.size()));
  Dataset test = full_test.subset(0, std::min(c.test_size, full_test.size()));
  Dataset test_rotated = test;
  {
    Rng rng(20260101);
    test_rotated.images = rotate_each(test.images, uniform_angles(test.size(), rng));
  }
  const Tensor probe = slice(test_rotated.images, 0, 0, std::min<int64_t>(c.eval_size, test.size()));
  const std::vector<float> sweep = angle_sweep();
  std::printf("\n== Rotation: plain CNN vs P4CNN on MNIST digits rotated by uniform angles; %lld train / %lld test, "
              "%d epochs, %zu seed(s) ==\n",
              static_cast<long long>(train.size()), static_cast<long long>(test.size()), c.rot_epochs,
              c.seeds.size());
  CsvLog runs_csv(c.out_dir + "/rotation_runs.csv",
                  {"train_on", "model", "seed", "parameters", "accuracy_rotated_test", "accuracy_upright_test",
                   "train_seconds"});
  CsvLog layers_csv(c.out_dir + "/rotation_per_layer_error.csv",
                    {"train_on", "model", "seed", "degrees", "layer", "delta"});

  const std::vector<std::string> regimes = {"upright", "rotated"}, kinds = {"plain", "p4"};
  std::map<std::string, std::vector<RotationRun>> runs;  // "rotated/p4" -> per seed
  for (const std::string& regime : regimes) {
    for (uint64_t seed : c.seeds) {
      for (const std::string& kind : kinds) {
        Rng rng(seed);
        auto model = make_rotation_model(kind, c.rot_channels, train.num_classes, rng);
        TrainConfig tc;
        tc.epochs = c.rot_epochs;
        tc.batch = c.batch;
        tc.lr = c.rot_lr;
        tc.optimizer = c.rot_optimizer;
        tc.seed = seed;
        tc.quiet = true;
        if (regime == "rotated")
          tc.augment = [](const Tensor& x, Rng& r) { return rotate_each(x, uniform_angles(x.size(0), r)); };
        RotationRun run;
        run.seconds = train_classifier(*model, train, test_rotated, tc).seconds;
        run.parameters = model->num_parameters();
        run.accuracy_rotated = evaluate_classifier(*model, test_rotated).accuracy;
        run.accuracy_upright = evaluate_classifier(*model, test).accuracy;
        for (float deg : kLayerAngles) {
          const EquivarianceTransform t = deg == 90.0f ? rot90_transform(1) : nearest_p4_rotation(deg);
          run.layers.push_back(per_layer_equivariance_error(*model, probe, t));
          for (const auto& row : run.layers.back())
            layers_csv.row({regime, kind, static_cast<int64_t>(seed), deg, row.name, row.delta});
        }
        for (float deg : sweep)
          run.logit_invariance.push_back(equivariance_error(*model, probe, rotation_transform(deg)));
        std::printf("train on %-7s %-5s seed %llu  %6lld params  acc rotated %.2f%%  upright %.2f%%  Delta logits "
                    "rot90 %.2e  30deg %.2e  (%.1f s)\n",
                    regime.c_str(), kind.c_str(), static_cast<unsigned long long>(seed),
                    static_cast<long long>(run.parameters), 100 * run.accuracy_rotated, 100 * run.accuracy_upright,
                    run.layers[0].back().delta, run.layers[1].back().delta, run.seconds);
        std::fflush(stdout);
        runs_csv.row({regime, kind, static_cast<int64_t>(seed), run.parameters, run.accuracy_rotated,
                      run.accuracy_upright, run.seconds});
        runs[regime + "/" + kind].push_back(std::move(run));
      }
    }
  }

  // --- accuracy table ---
  std::printf("\n%-9s %-6s %7s %18s %18s\n", "train on", "model", "params", "acc rotated test %",
              "acc upright test %");
  Json result = Json::object();
  result.set("train_size", train.size()).set("test_size", test.size()).set("epochs", c.rot_epochs)
      .set("base_channels", c.rot_channels);
  Json acc_json = Json::array();
  BarChart bars("rotated MNIST test accuracy (mean over seeds)", "trained on / model", "accuracy (%)");
  for (const std::string& regime : regimes) {
    for (const std::string& kind : kinds) {
      const auto& rs = runs[regime + "/" + kind];
      std::vector<double> rot, up;
      for (const auto& r : rs) rot.push_back(r.accuracy_rotated), up.push_back(r.accuracy_upright);
      std::printf("%-9s %-6s %7lld %18s %18s\n", regime.c_str(), kind.c_str(),
                  static_cast<long long>(rs[0].parameters), format_mean_std(rot, 100).c_str(),
                  format_mean_std(up, 100).c_str());
      acc_json.push(Json::object().set("train_on", regime).set("model", kind).set("parameters", rs[0].parameters)
                        .set("accuracy_rotated_test", mean_std_json(rot))
                        .set("accuracy_upright_test", mean_std_json(up)));
      bars.add_bar(regime + " " + kind, 100 * mean_std(rot).mean);
    }
  }
  result.set("accuracy", acc_json);
  bars.save_png(c.out_dir + "/rotation_accuracy.png");

  // --- per-layer errors (models trained on rotated digits; both regimes in the JSON / CSV) ---
  Json layers_json = Json::array();
  LineChart per_layer("per-layer rotation Delta (rotated training)", "layer index (0 drawn at 1e-9)",
                      "equivariance error Delta");
  per_layer.set_log_y();
  for (const std::string& regime : regimes) {
    for (const std::string& kind : kinds) {
      const auto& rs = runs[regime + "/" + kind];
      const bool show = regime == "rotated";
      if (show)
        std::printf("\n%s CNN trained on rotated digits: per-layer Delta (mean over seeds)\n%-44s %10s %10s %10s\n",
                    kind.c_str(), "layer", "rot90", "30 deg", "60 deg");
      Json model_json = Json::object();
      model_json.set("train_on", regime).set("model", kind);
      Json rows = Json::array();
      std::vector<std::vector<double>> curve(kLayerAngles.size());
      for (size_t li = 0; li < rs[0].layers[0].size(); ++li) {
        if (show) std::printf("%-44s", rs[0].layers[0][li].name.substr(0, 44).c_str());
        Json row = Json::object();
        row.set("layer", rs[0].layers[0][li].name);
        for (size_t ai = 0; ai < kLayerAngles.size(); ++ai) {
          std::vector<double> d;
          for (const auto& r : rs) d.push_back(r.layers[ai][li].delta);
          const double m = mean_std(d).mean;
          if (show) std::printf(" %10.3g", m);
          row.set(ai == 0 ? "rot90" : std::to_string(static_cast<int>(kLayerAngles[ai])) + "deg", mean_std_json(d));
          curve[ai].push_back(std::max(m, 1e-9));
        }
        if (show) std::printf("\n");
        rows.push(row);
      }
      model_json.set("layers", rows);
      layers_json.push(model_json);
      if (show) {
        per_layer.add_series(kind + " rot90", curve[0]);
        per_layer.add_series(kind + " 30deg", curve[1]);
      }
    }
  }
  result.set("per_layer", layers_json);

  // --- logit invariance against the angle ---
  LineChart sweep_chart("logit change under rotation (rotated test digits)", "rotation (degrees)",
                        "Delta of the logits (0 drawn at 1e-9)");
  sweep_chart.set_log_y();
  Json sweep_json = Json::array();
  for (const std::string& regime : regimes) {
    for (const std::string& kind : kinds) {
      const auto& rs = runs[regime + "/" + kind];
      std::vector<double> xs, ys;
      Json pts = Json::array();
      for (size_t i = 0; i < sweep.size(); ++i) {
        std::vector<double> d;
        for (const auto& r : rs) d.push_back(r.logit_invariance[i]);
        xs.push_back(sweep[i]), ys.push_back(std::max(mean_std(d).mean, 1e-9));
        pts.push(Json::object().set("degrees", sweep[i]).set("delta", mean_std_json(d)));
      }
      sweep_chart.add_series(kind + " (" + regime + ")", xs, ys);
      sweep_json.push(Json::object().set("train_on", regime).set("model", kind).set("points", pts));
    }
  }
  result.set("logit_invariance_vs_angle", sweep_json);
  save_charts_png(c.out_dir + "/rotation_equivariance.png", {per_layer, sweep_chart});
  std::printf("wrote %s/{rotation_accuracy.png, rotation_equivariance.png, rotation_runs.csv, "
              "rotation_per_layer_error.csv}\n",
              c.out_dir.c_str());
  return result;
}

}  // namespace eq
