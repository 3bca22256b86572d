// equilab sie — Split Invariant-Equivariant representations (Garrido, Najman, LeCun, ICML 2023) and the methods it
// compares (VICReg, an EquiMod-like MLP predictor, a hypernetwork predictor without split, SIE, SIE without the
// prediction's variance term), trained self-supervised on pairs of views whose relative group element is known,
// then evaluated frozen (REFERENCES.md section 7; apps/sie/evaluate.h).
//
//   build/sie --quick                                         # the demo: 3DIE-mini, every method, a few minutes
//   build/sie --dataset 3die-mini --out out/sie               # the full study, ~40 min (apps/sie/README.md)
//   build/sie --dataset rotated-mnist --methods vicreg,sie --views 4
//
// Data: 3die-mini (procedural 3D objects, 10 views each, group element = the relative rotation quaternion) or
// rotated MNIST / Fashion-MNIST digits (V copies of each digit at angles in [-pi/2, pi/2], group element (cos, sin)
// of the relative angle). Objects are split between train and test: the probes and regressors are fitted on the
// train objects and scored on the test objects.
//
// Writes to --out: results.json (every number and the configuration), summary.md (the table), bars.png (probe
// accuracy, rotation R^2 and MRR per method), losses.png (every method's training loss), samples.png (the views
// of a few test objects), and per method <method>/train_log.csv, <method>/curves.png (the loss and its terms) and
// <method>/retrieval.png (for a few test pairs: the first view, the true second view, and the three views of the
// object the predictor's output is nearest to).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "apps/common/cli.h"
#include "apps/common/csv_log.h"
#include "apps/common/datasets.h"
#include "apps/common/die_mini.h"
#include "apps/common/json_writer.h"
#include "apps/common/plot.h"
#include "apps/sie/evaluate.h"
#include "apps/sie/train.h"
#include "apps/sie/views.h"
#include "engine/parallel.h"
#include "engine/shape_ops.h"

using namespace eq;

namespace {

struct MethodRun {
  std::string method;
  SieConfig config;
  int64_t parameters = 0;
  std::vector<SieEpochLog> logs;
  double train_seconds = 0, seconds_per_epoch = 0;
  SieEvaluation eval;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A cell of the table: the value as a percentage / with 3 decimals, or "-" when the part does not exist.
std::string pct(bool present, double v) { return present ? fmt("%.1f", 100 * v) : "-"; }
std::string dec(bool present, double v) { return present ? fmt("%.3f", v) : "-"; }

int64_t count_parameters(const SieModel& m) {
  int64_t n = 0;
  for (const auto* module : {&m.encoder, &m.projector_inv, &m.projector_equi, &m.predictor})
    if (*module) n += (*module)->num_parameters();
  return n;
}

// The train / test view sets of the chosen dataset.
struct ViewData {
  ViewSet train, test;
  std::string description;
};

ViewData load_views(const std::string& dataset, const std::string& data_root, int objects, int views,
                    int64_t train_digits, int64_t test_digits, uint64_t seed) {
  ViewData d;
  if (dataset == "3die-mini") {
    DieMiniConfig config;
    config.objects = objects;
    const DieMini set = load_or_generate_die_mini(data_root + "/3die-mini", config);
    d.train = view_set_from_die_mini(die_mini_split(set, true));
    d.test = view_set_from_die_mini(die_mini_split(set, false));
    d.description = "3DIE-mini, " + std::to_string(objects) + " objects x " + std::to_string(config.views) +
                    " views at 32x32 (first 80% of the objects train, the rest test); group element: the relative "
                    "rotation quaternion q2 conj(q1), w >= 0";
    return d;
  }
  std::string source;
  if (dataset == "rotated-mnist") source = "mnist";
  else if (dataset == "rotated-fashion") source = "fashion-mnist";
  else fail("sie: unknown --dataset '", dataset, "' (3die-mini, rotated-mnist or rotated-fashion)");
  const Dataset train = load_dataset(source, true, data_root), test = load_dataset(source, false, data_root);
  check(train_digits >= 2 && test_digits >= 1, "sie: --train-digits and --test-digits must be >= 2 and >= 1");
  const int64_t ntr = std::min(train_digits, train.size()), nte = std::min(test_digits, test.size());
  // Different seeds for the two parts: the test objects' angles are not the train objects' angles.
  d.train = rotated_digits(train.subset(0, ntr), views, seed * 2 + 101);
  d.test = rotated_digits(test.subset(0, nte), views, seed * 2 + 102);
  d.description = "rotated " + source + ": " + std::to_string(ntr) + " train / " + std::to_string(nte) +
                  " test digits x " + std::to_string(views) + " views, each at an angle uniform in [-pi/2, pi/2] "
                  "(bilinear, zeros outside); group element (cos, sin) of the relative angle";
  return d;
}

// For `count` test pairs spread over the test objects: view 1, the true view 2, and the predictor's three nearest
// views.
void write_retrieval_picture(const std::string& path, const std::string& method, const ViewSet& test,
                             const SieEvaluation& ev, int count) {
  const int pairs = static_cast<int>(ev.test_pairs.size());
  count = std::min(count, pairs);
  std::vector<int64_t> rows;
  GridOptions g;
  g.columns = 5;
  g.scale = 3;
  g.title = method + ": input view | true view | predictor's nearest 3 (T = the true view, S = the input)";
  for (int i = 0; i < count; ++i) {
    const int q = static_cast<int>(static_cast<int64_t>(i) * pairs / count);  // pairs are object-major: spread out
    const auto [first, second] = ev.test_pairs[q];
    rows.push_back(first);
    rows.push_back(second);
    g.captions.push_back("input");
    g.captions.push_back("true");
    const auto& top = ev.retrieval.top_rows[q];
    for (int k = 0; k < 3; ++k) {
      const int64_t r = k < static_cast<int>(top.size()) ? top[k] : first;
      rows.push_back(r);
      g.captions.push_back("#" + std::to_string(k + 1) + (r == second ? " T" : r == first ? " S" : ""));
    }
  }
  write_image_grid(path, take_rows(test.data.images, rows), g);
}

void write_curves(const std::string& path, const MethodRun& run) {
  std::vector<double> epochs, loss, inv, equi, var, cov;
  for (const auto& l : run.logs) {
    epochs.push_back(l.epoch);
    loss.push_back(l.loss);
    inv.push_back(l.invariance);
    equi.push_back(l.equivariance);
    var.push_back(l.variance);
    cov.push_back(l.covariance);
  }
  LineChart total(run.method + ": training loss", "epoch", "loss");
  total.add_series("loss", epochs, loss);
  LineChart terms(run.method + ": unweighted terms", "epoch", "term (log)");
  terms.set_log_y();
  terms.add_series("invariance", epochs, inv).add_series("equivariance", epochs, equi);
  terms.add_series("variance", epochs, var).add_series("covariance", epochs, cov);
  save_charts_png(path, {total, terms});
}

Json part_json(const PartScores& p) {
  if (!p.present) return Json("n/a (no split)");
  return Json::object()
      .set("probe_train_accuracy", p.probe.train_accuracy)
      .set("probe_test_accuracy", p.probe.test_accuracy)
      .set("rotation_r2_train", p.rotation.train_r2)
      .set("rotation_r2_test", p.rotation.test_r2);
}

}  // namespace

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("sie",
              "SIE and the methods it compares (vicreg, equimod, hyper, sie, sie-no-pred-var), trained on pairs of "
              "views with a known relative group element and evaluated frozen: linear probe of the class from the "
              "invariant / equivariant / full representation, R^2 of the relative rotation from a pair of "
              "representations, and the predictor's retrieval (MRR, Hit@k) among the views of the same object.");
  flags.add("dataset", "3die-mini", "3die-mini, rotated-mnist or rotated-fashion");
  flags.add("methods", "vicreg,equimod,hyper,sie,sie-no-pred-var", "comma-separated methods to train and compare");
  flags.add("epochs", "60", "training epochs per method (one epoch = every training object once, as one pair)");
  flags.add("batch", "64", "pairs per training step");
  flags.add("lr", "0.001", "Adam learning rate");
  flags.add("inv-dim", "64", "invariant part of the representation (the whole is inv-dim + equi-dim)");
  flags.add("equi-dim", "64", "equivariant part of the representation");
  flags.add("projector-dim", "256", "projector hidden and output width");
  flags.add("encoder-width", "16", "SmallResNet stem channels (stages w, 2w, 4w; compute ~ width^2; 32 costs ~4x)");
  flags.add("equi-factor", "0.45", "SIE's weight of the equivariant prediction term (its README command)");
  flags.add("objects", "2000", "3die-mini: objects rendered (10 views each; 80% train, 20% test)");
  flags.add("views", "4", "rotated digits: rotated copies (views) per digit");
  flags.add("train-digits", "4000", "rotated digits: training digits (objects)");
  flags.add("test-digits", "1000", "rotated digits: test digits (objects)");
  flags.add("probe-epochs", "30", "linear probe epochs (Adam, standardised features)");
  flags.add("regression-epochs", "40", "rotation regressor epochs (MLP, one hidden layer)");
  flags.add("regression-hidden", "256", "rotation regressor hidden width (0: linear)");
  flags.add("train-pairs", "16", "pairs per train object for fitting the rotation regressor");
  flags.add("test-pairs", "4", "pairs per test object for the regressor's R^2 and for retrieval");
  flags.add("similarity", "cosine", "retrieval similarity: cosine or l2");
  flags.add("pictures", "6", "test pairs shown in each retrieval picture");
  flags.add("quick", "false", "the demo (a few minutes on 2 cores): 3die-mini with 500 objects, 6 epochs, "
            "shorter probes; flags given explicitly still win");
  flags.add("seed", "0", "seed of initialisation, batches, pairs and the rotated digits' angles");
  flags.add("threads", "2", "threads for OpenMP loops and OpenBLAS");
  flags.add("data", "data", "folder that `make data` filled (3die-mini is rendered into data/3die-mini)");
  flags.add("out", "out/sie", "output folder");
  try {
    if (!flags.parse(argc, argv)) return 0;
    set_num_threads(flags.get_int("threads"));
    const bool quick = flags.get_bool("quick");
    const std::string dataset = flags.get("dataset"), out = flags.get("out");
    const uint64_t seed = static_cast<uint64_t>(flags.get_int("seed"));
    const std::vector<std::string> methods = split_list(flags.get("methods"));
    check(!methods.empty(), "sie: --methods is empty");
    for (const auto& m : methods) {
      bool known = false;
      for (const auto& name : sie_method_names()) known = known || name == m;
      check(known, "sie: unknown method '", m, "' in --methods (vicreg, equimod, hyper, sie, sie-no-pred-var)");
    }

    SieConfig base;
    base.epochs = flags.get_int_or_quick("epochs", 6, quick);
    base.batch_size = flags.get_int("batch");
    base.lr = static_cast<float>(flags.get_double("lr"));
    base.inv_dim = flags.get_int("inv-dim");
    base.equi_dim = flags.get_int("equi-dim");
    base.projector_dim = flags.get_int("projector-dim");
    base.encoder_width = flags.get_int("encoder-width");
    base.equi_factor = static_cast<float>(flags.get_double("equi-factor"));
    base.seed = seed;
    EvalConfig eval_config;
    eval_config.probe.epochs = flags.get_int_or_quick("probe-epochs", 15, quick);
    eval_config.probe.seed = seed;
    eval_config.regression.epochs = flags.get_int_or_quick("regression-epochs", 20, quick);
    eval_config.regression.hidden = flags.get_int("regression-hidden");
    eval_config.regression.seed = seed;
    eval_config.train_pairs_per_object = flags.get_int("train-pairs");
    eval_config.test_pairs_per_object = flags.get_int("test-pairs");
    eval_config.similarity = parse_similarity(flags.get("similarity"));
    eval_config.seed = seed;
    eval_config.verbose = true;

    const auto t_start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
    const ViewData data = load_views(dataset, flags.get("data"), flags.get_int_or_quick("objects", 500, quick),
                                     flags.get_int("views"), flags.get_int_or_quick("train-digits", 1000, quick),
                                     flags.get_int_or_quick("test-digits", 250, quick), seed);
    std::printf("sie: %s\n  train: %lld objects x %d views, test: %lld objects x %d views, %d classes, group %s\n",
                data.description.c_str(), static_cast<long long>(data.train.num_objects()),
                data.train.views_per_object, static_cast<long long>(data.test.num_objects()),
                data.test.views_per_object, data.train.data.num_classes, data.train.group_name.c_str());
    std::printf("  %d epoch(s), batch %d, representation %d = %d inv + %d equi, encoder width %d, projector %d, "
                "lr %g, threads %d\n", base.epochs, base.batch_size, base.inv_dim + base.equi_dim, base.inv_dim,
                base.equi_dim, base.encoder_width, base.projector_dim, base.lr, flags.get_int("threads"));
    make_dirs(out);
    {
      const int64_t objects_shown = std::min<int64_t>(4, data.test.num_objects());
      const int v = data.test.views_per_object;
      GridOptions g;
      g.columns = v;
      g.scale = 3;
      g.title = "test objects (rows) and their views";
      write_image_grid(out + "/samples.png", slice(data.test.data.images, 0, 0, objects_shown * v), g);
    }

    std::vector<MethodRun> runs;
    for (const auto& method : methods) {
      std::printf("\n== %s (%.0f s elapsed)\n", method.c_str(), elapsed());
      std::fflush(stdout);
      MethodRun run;
      run.method = method;
      run.config = base;
      run.config.method = method;
      make_dirs(out + "/" + method);
      CsvLog log(out + "/" + method + "/train_log.csv",
                 {"epoch", "loss", "invariance", "equivariance", "variance", "covariance", "seconds"});
      const auto t_train = std::chrono::steady_clock::now();
      const SieModel model = train_sie(data.train, run.config, [&](const SieEpochLog& l) {
        run.logs.push_back(l);
        log.row({l.epoch, l.loss, l.invariance, l.equivariance, l.variance, l.covariance, l.seconds});
        std::printf("  %s epoch %d: loss %.4f (inv %.4f, equi %.4f, var %.4f, cov %.4f) %.1f s\n", method.c_str(),
                    l.epoch, l.loss, l.invariance, l.equivariance, l.variance, l.covariance, l.seconds);
        std::fflush(stdout);
      });
      run.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
      for (const auto& l : run.logs) run.seconds_per_epoch += l.seconds / static_cast<double>(run.logs.size());
      run.parameters = count_parameters(model);

      RepresentationMaps maps;
      maps.represent = [&](const Tensor& x) { return model.represent(x); };
      maps.inv_dim = model.split ? model.config.inv_dim : 0;
      if (model.predictor) {
        maps.embed = [&](const Tensor& x) { return model.embed(x); };
        maps.predict = [&](const Tensor& z, const Tensor& g) { return model.predict(z, g); };
      }
      run.eval = evaluate_representations(maps, data.train, data.test, eval_config);
      const SieEvaluation& e = run.eval;
      std::printf("  %s: probe %s / %s / %s %%, rotation R^2 %s / %s / %s (inv / equi / full)", method.c_str(),
                  pct(e.inv.present, e.inv.probe.test_accuracy).c_str(),
                  pct(e.equi.present, e.equi.probe.test_accuracy).c_str(),
                  pct(true, e.full.probe.test_accuracy).c_str(), dec(e.inv.present, e.inv.rotation.test_r2).c_str(),
                  dec(e.equi.present, e.equi.rotation.test_r2).c_str(), dec(true, e.full.rotation.test_r2).c_str());
      if (e.has_retrieval)
        std::printf(", MRR %.3f, H@1 %.3f, input retrieved first %.0f %%", e.retrieval.mrr, e.retrieval.hit1,
                    100 * e.source_top1);
      std::printf(" (evaluation %.0f s)\n", e.seconds);
      write_curves(out + "/" + method + "/curves.png", run);
      if (e.has_retrieval)
        write_retrieval_picture(out + "/" + method + "/retrieval.png", method, data.test, e, flags.get_int("pictures"));
      runs.push_back(std::move(run));
    }
    const double total_seconds = elapsed();

    // --- the table ----------------------------------------------------------------------------------------------
    const double baseline = runs.front().eval.rotation_mean_baseline_r2;
    std::ostringstream md;
    md << "### SIE study: " << data.description << "\n\n"
       << base.epochs << " epochs, batch " << base.batch_size << ", representation " << base.inv_dim << " inv + "
       << base.equi_dim << " equi, seed " << seed << ". Probe and regression fitted on train objects, scored on "
       << data.test.num_objects() << " test objects (" << runs.front().eval.test_pairs.size() << " test pairs).\n\n"
       << "| method | probe acc % inv / equi / full | rotation R^2 inv / equi / full | MRR | H@1 | H@2 | H@5 | "
          "input 1st % | view share | sec/epoch |\n|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& r : runs) {
      const SieEvaluation& e = r.eval;
      const bool ret = e.has_retrieval;
      md << "| " << r.method << " | " << pct(e.inv.present, e.inv.probe.test_accuracy) << " / "
         << pct(e.equi.present, e.equi.probe.test_accuracy) << " / " << pct(true, e.full.probe.test_accuracy) << " | "
         << dec(e.inv.present, e.inv.rotation.test_r2) << " / " << dec(e.equi.present, e.equi.rotation.test_r2)
         << " / " << dec(true, e.full.rotation.test_r2) << " | " << dec(ret, e.retrieval.mrr) << " | "
         << dec(ret, e.retrieval.hit1) << " | " << dec(ret, e.retrieval.hit2) << " | " << dec(ret, e.retrieval.hit5)
         << " | " << pct(ret, e.source_top1) << " | " << dec(ret, e.embedding_view_share) << " | "
         << fmt("%.1f", r.seconds_per_epoch) << " |\n";
    }
    md << "\nR^2 uses the global mean (1 - SSE / sum (y - mean of all entries)^2); a regressor that predicts each "
          "output's training mean scores "
       << fmt("%.3f", baseline)
       << " here. Retrieval ranks the predicted embedding among all " << data.test.views_per_object
       << " views of the object (the input view included, ties count against the target); \"input 1st\" = how often "
          "the input view itself is the nearest (a predictor stuck near the identity); \"view share\" = the share of "
          "the test embeddings' variance between views of one object (0 = invariant embedding). Total "
       << fmt("%.0f", total_seconds) << " s on " << flags.get_int("threads") << " thread(s).\n";
    std::printf("\n%s", md.str().c_str());
    {
      std::FILE* f = std::fopen((out + "/summary.md").c_str(), "w");
      check(f != nullptr, "sie: cannot write ", out, "/summary.md");
      std::fputs(md.str().c_str(), f);
      std::fclose(f);
    }

    // --- results.json -------------------------------------------------------------------------------------------
    std::string command;
    for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
    Json methods_json = Json::array();
    for (const auto& r : runs) {
      const SieEvaluation& e = r.eval;
      Json j = Json::object();
      j.set("method", r.method).set("parameters", r.parameters).set("train_seconds", r.train_seconds);
      j.set("seconds_per_epoch", r.seconds_per_epoch).set("evaluation_seconds", e.seconds);
      j.set("invariant", part_json(e.inv)).set("equivariant", part_json(e.equi)).set("full", part_json(e.full));
      if (e.has_retrieval)
        j.set("retrieval", Json::object()
                               .set("queries", e.retrieval.queries)
                               .set("mrr", e.retrieval.mrr)
                               .set("hit1", e.retrieval.hit1)
                               .set("hit2", e.retrieval.hit2)
                               .set("hit5", e.retrieval.hit5)
                               .set("input_view_first", e.source_top1)
                               .set("embedding_view_share", e.embedding_view_share));
      Json log = Json::array();
      for (const auto& l : r.logs)
        log.push(Json::object()
                     .set("epoch", l.epoch)
                     .set("loss", l.loss)
                     .set("invariance", l.invariance)
                     .set("equivariance", l.equivariance)
                     .set("variance", l.variance)
                     .set("covariance", l.covariance)
                     .set("seconds", l.seconds));
      j.set("train_log", log);
      methods_json.push(j);
    }
    Json results = Json::object();
    results.set("command", command)
        .set("dataset", dataset)
        .set("data", data.description)
        .set("train_objects", data.train.num_objects())
        .set("test_objects", data.test.num_objects())
        .set("views_per_object", data.train.views_per_object)
        .set("group", data.train.group_name)
        .set("epochs", base.epochs)
        .set("batch", base.batch_size)
        .set("lr", base.lr)
        .set("inv_dim", base.inv_dim)
        .set("equi_dim", base.equi_dim)
        .set("projector_dim", base.projector_dim)
        .set("encoder_width", base.encoder_width)
        .set("equi_factor", base.equi_factor)
        .set("seed", static_cast<int64_t>(seed))
        .set("probe", Json::object()
                          .set("model", "softmax regression on standardised features, Adam")
                          .set("epochs", eval_config.probe.epochs)
                          .set("lr", eval_config.probe.lr))
        .set("rotation_regression",
             Json::object()
                 .set("model", eval_config.regression.hidden > 0 ? "MLP [r1, r2] -> hidden ReLU -> group element"
                                                                  : "linear [r1, r2] -> group element")
                 .set("hidden", eval_config.regression.hidden)
                 .set("epochs", eval_config.regression.epochs)
                 .set("weight_decay", eval_config.regression.weight_decay)
                 .set("train_pairs_per_object", eval_config.train_pairs_per_object)
                 .set("test_pairs_per_object", eval_config.test_pairs_per_object)
                 .set("r2_definition", "1 - SSE / sum (y - ybar)^2 with ybar the mean of all target entries")
                 .set("per_output_mean_baseline_r2", baseline))
        .set("retrieval_similarity", flags.get("similarity"))
        .set("methods", methods_json)
        .set("seconds_total", total_seconds)
        .set("threads", flags.get_int("threads"));
    write_json_file(out + "/results.json", results);

    // --- figures ------------------------------------------------------------------------------------------------
    BarChart acc("class acc % (inv, or full)", "method", "linear probe accuracy (%)");
    BarChart rot("rotation R^2 (equi, or full)", "method", "R^2 (global mean)");
    BarChart mrr("predictor retrieval MRR", "method", "MRR");
    for (const auto& r : runs) {
      const SieEvaluation& e = r.eval;
      acc.add_bar(r.method, 100 * (e.inv.present ? e.inv : e.full).probe.test_accuracy);
      rot.add_bar(r.method, (e.equi.present ? e.equi : e.full).rotation.test_r2);
      if (e.has_retrieval) mrr.add_bar(r.method, e.retrieval.mrr);
    }
    Canvas bars(3 * 520, 420);
    acc.draw(bars, 0, 0, 520, 420);
    rot.draw(bars, 520, 0, 520, 420);
    if (!mrr.values.empty()) mrr.draw(bars, 1040, 0, 520, 420);
    bars.save_png(out + "/bars.png");
    LineChart losses("training loss per method", "epoch", "loss");
    for (const auto& r : runs) {
      std::vector<double> x, y;
      for (const auto& l : r.logs) x.push_back(l.epoch), y.push_back(l.loss);
      losses.add_series(r.method, x, y);
    }
    losses.save_png(out + "/losses.png", 800, 450);
    std::printf("wrote %s/{results.json, summary.md, bars.png, losses.png, samples.png, <method>/train_log.csv, "
                "<method>/curves.png, <method>/retrieval.png}\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sie: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
