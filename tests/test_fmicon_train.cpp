// The FMICON training app's logic (apps/fmicon/train.cpp): attempt names, the warps each attempt draws, pairs
// from photos and frames, the hold-out rule, a short run that lowers the loss, and resuming from a checkpoint bit
// for bit. (Gradient clipping and RMSprop live in engine/optim, tested in tests/test_optim.cpp.)
//
// The app's sources are not part of libequilab.a (they link into build/fmicon only), so they are compiled here.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "apps/fmicon/train.cpp"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

// A tiny configuration that trains in milliseconds per step.
FmiconConfig tiny_config(const std::string& attempt, int steps) {
  FmiconConfig c;
  c.attempt = parse_attempt(attempt);
  c.steps = steps;
  c.batch = 4;
  c.dim = 8;
  c.width = 4;
  c.levels = 2;
  c.lr = 3e-3f;
  c.progress = false;
  return c;
}

// Synthetic "photos": smooth random colour fields, different per image.
std::vector<Tensor> synthetic_photos(int count, int64_t size, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> out;
  for (int i = 0; i < count; ++i) {
    Tensor noise = Tensor::uniform({1, 3, size, size}, rng);
    const Tensor field = smooth_random_field(1, size, size, 3.0f, 2.0f, rng);  // a strong warp of the noise
    GridSampleOptions reflect;
    reflect.padding = GridPadding::Reflection;
    out.push_back(reshape(deform(noise, field, reflect), {3, size, size}).clone());
  }
  return out;
}

}  // namespace

TEST_CASE("fmicon_train: attempt names parse, print back and name their folders") {
  for (const char* name : {"none", "affine", "affine+center", "roll", "affine+roll+center"}) {
    CHECK(parse_attempt(name).name() == name);
  }
  CHECK(parse_attempt("center+roll+affine") == parse_attempt("affine+roll+center"));
  CHECK(parse_attempt("affine+roll+center").dir_name() == "affine_roll_center");
  const Attempt a = parse_attempt("affine+center");
  CHECK((a.affine && a.center && !a.roll));
  CHECK(default_attempts().size() == 5);
  CHECK(default_attempts().front() == Attempt{});
  CHECK(parse_attempts("none,roll").size() == 2);
  CHECK_THROWS_NAMING(parse_attempt("rotate"), "rotate", "affine, roll, center");
  CHECK_THROWS_NAMING(parse_attempt("affine+affine"), "affine", "twice");
  CHECK_THROWS_NAMING(parse_attempts("roll,none,roll"), "roll", "twice");
  CHECK_THROWS_NAMING(parse_attempts(""), "no attempt");
}

TEST_CASE("fmicon_train: each attempt's warp, and its inverse on per-pixel features") {
  Rng rng(1);
  const Tensor x = Tensor::uniform({3, 2, 8, 8}, rng);
  // none: the identity both ways.
  const Warp none = draw_attempt_warp(Attempt{}, 3, 8, 8, rng);
  CHECK(max_abs_diff(none.apply(x), x) == 0.0f);
  CHECK(max_abs_diff(none.inverse(x), x) == 0.0f);
  // roll: a circular shift per sample (moves content, keeps the multiset of values), undone exactly.
  const Warp roll = draw_attempt_warp(parse_attempt("roll"), 3, 8, 8, rng);
  const Tensor rolled = roll.apply(x);
  CHECK(max_abs_diff(roll.inverse(rolled), x) == 0.0f);
  CHECK(sum(rolled, {0, 1, 2, 3}).item() == doctest::Approx(sum(x, {0, 1, 2, 3}).item()).epsilon(1e-5));
  // Three samples with 64 positions each: some sample moves (probability of three zero shifts is 64^-3).
  CHECK(max_abs_diff(rolled, x) > 0.0f);
  // affine: a real warp, approximately undone in the middle (bilinear twice, zeros outside).
  const Warp affine = draw_attempt_warp(parse_attempt("affine"), 3, 8, 8, rng, 0.05f);
  CHECK(max_abs_diff(affine.apply(x), x) > 1e-3f);
  // affine+roll: the composition (its name says so).
  CHECK(draw_attempt_warp(parse_attempt("affine+roll"), 3, 8, 8, rng).name == "affine then shift(circular)");
}

TEST_CASE("fmicon_train: the feature net puts every pixel on the sphere; centering removes the batch mean") {
  Rng rng(2);
  FeatureNet net(3, 6, 4, 2, 8, /*center=*/true, 12.0f, rng);
  const Tensor f = net.forward(Tensor::uniform({4, 3, 8, 8}, rng));
  CHECK(f.shape() == Shape{4, 6, 8, 8});
  for (float r : sqrt(sum(square(f), {1})).to_vector()) CHECK(r == doctest::Approx(12.0f).epsilon(1e-4));
  CHECK(net.radius() == 12.0f);
  CHECK(net.name().find("PixelCenter") != std::string::npos);
  FeatureNet plain(3, 6, 4, 2, 8, /*center=*/false, 5.0f, rng);
  CHECK(plain.name().find("PixelCenter") == std::string::npos);
  CHECK_THROWS_NAMING(net.forward(Tensor::uniform({4, 3, 10, 10}, rng)), "PixelCenter", "[4, 6, 10, 10]");
}

TEST_CASE("fmicon_train: centering by another mean: the held-out set's own per-location mean in place of the running one") {
  Rng rng(4);
  FeatureNet net(3, 6, 4, 2, 8, /*center=*/true, 12.0f, rng);
  for (int k = 0; k < 3; ++k) net.forward(Tensor::uniform({4, 3, 8, 8}, rng));  // moves the running mean off zero
  const Tensor images = Tensor::uniform({5, 3, 8, 8}, rng);
  net.eval();
  const Tensor by_running = net.forward(images);
  Tensor running;
  for (const auto& [name, buffer] : net.named_buffers())
    if (name == "center.running_mean") running = buffer;
  REQUIRE(running.defined());
  CHECK(net.forward_centered(images, running).to_vector() == by_running.to_vector());
  // The mean of the U-Net's output over the images, in any batching; subtracting it is what the running mean
  // would do if it were that mean.
  const Tensor m = net.position_mean(images, 2);
  CHECK(m.shape() == Shape{6, 8, 8});
  const std::vector<float> m1 = m.to_vector(), m5 = net.position_mean(images, 5).to_vector();
  for (size_t i = 0; i < m1.size(); ++i) CHECK(m1[i] == doctest::Approx(m5[i]).epsilon(1e-5));
  const Tensor centred = net.forward_centered(images, m);
  std::copy(m1.begin(), m1.end(), running.data());  // the buffer itself (tensors share storage)
  const std::vector<float> a = centred.to_vector(), b = net.forward(images).to_vector();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  CHECK(std::fabs(a[0] - by_running.to_vector()[0]) > 1e-4f);  // a different mean, different features
  // One image centred by its own mean keeps nothing: the U-Net's output minus itself, 0 at every pixel.
  const Tensor one = slice(images, 0, 0, 1);
  for (float v : net.forward_centered(one, net.position_mean(one)).to_vector()) CHECK(v == 0.0f);
  CHECK(!net.is_training());  // both leave the mode as they found it
  net.train();
  net.position_mean(images);
  CHECK(net.is_training());
  FeatureNet plain(3, 6, 4, 2, 8, /*center=*/false, 5.0f, rng);
  CHECK_THROWS_NAMING(plain.position_mean(images), "FeatureNet::position_mean", "PixelCenter");
  CHECK_THROWS_NAMING(net.forward_centered(images, Tensor::zeros({6, 4, 4})), "FeatureNet::forward_centered",
                      "[6, 8, 8]", "[6, 4, 4]");
}

TEST_CASE("fmicon_train: photo pairs are offset crops of one photo; frame pairs are the same crop of two frames") {
  // A linear ramp I(c, y, x) = 0.01 y + 0.001 x: B - A is the constant 0.01 dy + 0.001 dx with |dy|, |dx| <= crop/4.
  const int64_t H = 40, W = 44, s = 16;
  Tensor ramp({1, H, W});
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) ramp.data()[y * W + x] = 0.01f * y + 0.001f * x;
  PairSource photos = PairSource::photos({ramp}, s);
  photos.deform_gradient = 0;  // the deformation is checked below
  CHECK(photos.max_offset() == 4);
  Rng rng(3);
  const PairBatch p = photos.sample(6, rng);
  REQUIRE(p.a.shape() == Shape{6, 1, s, s});
  bool some_offset = false;
  for (int64_t n = 0; n < 6; ++n) {
    const float* a = p.a.data() + n * s * s;
    const float* b = p.b.data() + n * s * s;
    const float d = b[0] - a[0];
    for (int64_t i = 0; i < s * s; ++i) REQUIRE(b[i] - a[i] == doctest::Approx(d).epsilon(1e-4));
    // d = 0.01 dy + 0.001 dx: decode and bound the offsets.
    const long dy = std::lround(d / 0.01), dx = std::lround((d - 0.01 * dy) / 0.001);  // |0.001 dx| < 0.005
    CHECK(std::abs(dy) <= 4);
    CHECK(std::abs(dx) <= 4);
    some_offset = some_offset || d != 0;
  }
  CHECK(some_offset);
  // With the default deformation, B is no longer a pure shift of A.
  PairSource deformed = PairSource::photos({ramp}, s);
  Rng rng2(3);
  const PairBatch q = deformed.sample(6, rng2);
  CHECK(max_abs_diff(q.a, p.a) == 0.0f);  // same draws for A
  CHECK(max_abs_diff(q.b, p.b) > 1e-4f);
  CHECK_THROWS_NAMING(PairSource::photos({Tensor::zeros({1, 20, 60})}, s), "photo 0", "[1, 20, 60]", "24x24");

  // Frames: constant images of value i; a pair is (i, i + gap) with gap 1 or 2.
  std::vector<Tensor> frames;
  for (int i = 0; i < 5; ++i) frames.push_back(Tensor::full({2, 20, 20}, static_cast<float>(i)));
  const PairSource seq = PairSource::frames(frames, 8);
  const PairBatch f = seq.sample(16, rng);
  REQUIRE(f.b.shape() == Shape{16, 2, 8, 8});
  for (int64_t n = 0; n < 16; ++n) {
    const float gap = f.b.data()[n * 128] - f.a.data()[n * 128];
    CHECK((gap == 1.0f || gap == 2.0f));
  }
  CHECK_THROWS_NAMING(PairSource::frames({frames[0], Tensor::zeros({2, 20, 24})}, 8), "same shape", "[2, 20, 24]");
}

TEST_CASE("fmicon_train: hold-out by name, or every fourth photo; resizing keeps crops possible") {
  const std::vector<std::string> paths = {"d/a.png", "d/chelsea.png", "d/c.jpg", "d/d.png", "d/e.png"};
  CHECK(holdout_mask(paths, {"chelsea", "rocket"}) == std::vector<bool>{false, true, false, false, false});
  CHECK(holdout_mask(paths, {"nothing"}) == std::vector<bool>{false, false, false, true, false});
  CHECK(holdout_mask({"x.png", "y.png"}, {}) == std::vector<bool>{true, false});
  CHECK_THROWS_NAMING(holdout_mask({"a.png", "b.png"}, {"a", "b"}), "nothing is left to train on");

  std::vector<size_t> kept;
  const std::vector<Tensor> r =
      prepare_photos({Tensor::zeros({3, 100, 200}), Tensor::zeros({3, 30, 30}), Tensor::zeros({3, 50, 60})}, 0.5f,
                     40, &kept);
  CHECK(kept == std::vector<size_t>{0, 2});
  CHECK(r[0].shape() == Shape{3, 50, 100});  // halved
  CHECK(r[1].shape() == Shape{3, 40, 48});   // halving would go below 40: scaled by 0.8 instead
}

TEST_CASE("fmicon_train: a few steps lower the loss on a fixed batch (attempt 0 finds its shortcut at once)") {
  const std::vector<Tensor> photos = synthetic_photos(3, 40, 5);
  const PairSource source = PairSource::photos(photos, 16);
  for (const char* attempt : {"none", "affine+roll+center"}) {
    INFO("attempt " << attempt);
    FmiconConfig c = tiny_config(attempt, 3);
    c.lr = 1e-2f;
    auto net = make_feature_net(c, 3, 16);
    auto fixed_loss = [&] {
      Rng rng(99);
      const PairBatch pairs = source.sample(4, rng);
      NoGrad no_grad;
      return fmicon_step_loss(*net, c.attempt, pairs, rng, c.affine_sigma, c.epsilon).item();
    };
    const float before = fixed_loss();
    const FmiconRun run = train_fmicon(*net, source, c);
    CHECK(run.history.size() == 3);
    CHECK(run.steps_run == 3);
    const float after = fixed_loss();
    CHECK(after < before);
    CHECK(std::isfinite(run.final_loss()));
    CHECK(run.history.back().radius != doctest::Approx(12.0));  // the radius is trained
  }
}

TEST_CASE("fmicon_train: resuming from a checkpoint reproduces the uninterrupted run bit for bit") {
  // At the suite's 2 threads: bit-exact resume also needs icon_loss to sum its per-thread partials the same way
  // on every call (its static schedule).
  const std::vector<Tensor> photos = synthetic_photos(2, 40, 6);
  const PairSource source = PairSource::photos(photos, 16);
  testing::TempDir dir("fmicon_resume");
  FmiconConfig straight = tiny_config("affine+roll+center", 4);
  auto net_a = make_feature_net(straight, 3, 16);
  const FmiconRun full = train_fmicon(*net_a, source, straight);

  FmiconConfig part = tiny_config("affine+roll+center", 2);
  part.out_dir = dir.path();
  part.checkpoint_every = 1;
  auto net_b = make_feature_net(part, 3, 16);
  train_fmicon(*net_b, source, part);
  FmiconConfig rest = part;
  rest.steps = 4;
  rest.resume = true;
  auto net_c = make_feature_net(rest, 3, 16);
  const FmiconRun resumed = train_fmicon(*net_c, source, rest);
  REQUIRE(resumed.history.size() == 4);
  CHECK(resumed.steps_run == 2);
  for (size_t i = 0; i < 4; ++i) CHECK(resumed.history[i].loss == full.history[i].loss);
  for (auto& [name, t] : net_a->named_parameters()) {
    INFO(name);
    bool same = false;
    for (auto& [name_c, t_c] : net_c->named_parameters())
      if (name_c == name) same = max_abs_diff(t, t_c) == 0.0f;
    CHECK(same);
  }
  // The CSV log holds every step once.
  std::ifstream csv(dir.file("train_log.csv"));
  int lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  CHECK(lines == 1 + 4);

  // Another attempt's checkpoint is refused, naming the file.
  FmiconConfig other = tiny_config("affine", 4);
  other.out_dir = dir.path();
  other.resume = true;
  auto net_d = make_feature_net(other, 3, 16);
  CHECK_THROWS_NAMING(train_fmicon(*net_d, source, other), "cannot resume", "checkpoint.safetensors", "affine");
}

TEST_CASE("fmicon_train: evaluations during training come every eval_every steps, in eval mode, and survive a resume") {
  const std::vector<Tensor> photos = synthetic_photos(2, 40, 8);
  const PairSource source = PairSource::photos(photos, 16);
  Rng probe_rng(9);
  const Tensor probe = Tensor::uniform({1, 3, 16, 16}, probe_rng);
  // A measurement that depends on the weights (so a resumed run must reproduce them) and records the mode.
  const auto evaluator = [&](FeatureNet& net) {
    return [&net, &probe](int step) {
      NoGrad no_grad;
      const bool training = net.is_training();
      const Tensor f = net.forward(probe);
      return EvalRecord{step, static_cast<double>(mean(f).item()), static_cast<double>(f.data()[7]), 0, 0,
                        training ? 1.0 : 0.0};
    };
  };
  testing::TempDir dir("fmicon_evals");
  FmiconConfig straight = tiny_config("affine", 5);
  straight.eval_every = 2;
  auto net_a = make_feature_net(straight, 3, 16);
  const FmiconRun full = train_fmicon(*net_a, source, straight, evaluator(*net_a));
  REQUIRE(full.evals.size() == 3);
  CHECK(full.evals[0].step == 2);
  CHECK(full.evals[1].step == 4);
  CHECK(full.evals[2].step == 5);  // the last step is always measured
  for (const EvalRecord& e : full.evals) CHECK(e.collapse == 0.0);  // measured in eval mode
  CHECK(net_a->is_training());                                      // and training resumed in train mode
  CHECK(full.evals[0].pck1 != full.evals[2].pck1);                  // the weights moved between measurements

  // The evaluations change nothing in training: the same steps without them give the same losses.
  auto net_b = make_feature_net(straight, 3, 16);
  const FmiconRun plain = train_fmicon(*net_b, source, straight);
  CHECK(plain.evals.empty());
  for (size_t i = 0; i < 5; ++i) CHECK(plain.history[i].loss == full.history[i].loss);

  // Interrupted after step 3 and resumed: the earlier measurements come back from the checkpoint, the later ones
  // are those of the uninterrupted run, and eval_log.csv holds each once.
  FmiconConfig part = straight;
  part.steps = 3;
  part.out_dir = dir.path();
  auto net_c = make_feature_net(part, 3, 16);
  const FmiconRun first = train_fmicon(*net_c, source, part, evaluator(*net_c));
  REQUIRE(first.evals.size() == 2);  // steps 2 and 3 (its last)
  FmiconConfig rest = straight;
  rest.out_dir = dir.path();
  rest.resume = true;
  auto net_d = make_feature_net(rest, 3, 16);
  const FmiconRun resumed = train_fmicon(*net_d, source, rest, evaluator(*net_d));
  REQUIRE(resumed.evals.size() == 4);
  CHECK(resumed.evals[0].pck1 == full.evals[0].pck1);
  CHECK(resumed.evals[1].step == 3);
  CHECK(resumed.evals[2].step == 4);
  CHECK(resumed.evals[2].pck1 == full.evals[1].pck1);
  CHECK(resumed.evals[3].pck1 == full.evals[2].pck1);
  std::ifstream csv(dir.file("eval_log.csv"));
  int lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  CHECK(lines == 1 + 4);

  FmiconConfig negative = tiny_config("affine", 1);
  negative.eval_every = -1;
  auto net_e = make_feature_net(negative, 3, 16);
  CHECK_THROWS_NAMING(train_fmicon(*net_e, source, negative, evaluator(*net_e)), "--eval-every", "-1");
}

TEST_CASE("fmicon_train: attempts with centering log the set-mean measurements; older checkpoints and logs resume") {
  const PairSource source = PairSource::photos(synthetic_photos(2, 40, 8), 16);
  // A stand-in measurement with distinct, step-dependent set-mean values.
  const TrainingEvaluator evaluator = [](int step) {
    EvalRecord e{step, 1.0 * step, 0, 0, 0, 0};
    e.pck1_set_mean = 10.0 * step;
    e.collapse_set_mean = -0.5 * step;
    return e;
  };
  // `steps` steps of `attempt` measured after each, logged in `out_dir` (continuing it when `resume`).
  const auto run = [&](const std::string& attempt, int steps, const std::string& out_dir, bool resume) {
    FmiconConfig c = tiny_config(attempt, steps);
    c.eval_every = 1;
    c.out_dir = out_dir;
    c.resume = resume;
    auto net = make_feature_net(c, 3, 16);
    return train_fmicon(*net, source, c, evaluator);
  };
  testing::TempDir dir("fmicon_set_mean");
  run("affine+center", 2, dir.path(), false);
  CHECK(first_line(dir.file("eval_log.csv")) ==
        "step,pck1,pck2,pck4,label_iou,position_collapse,pck1_set_mean,position_collapse_set_mean");
  // Resumed for a third step: the first two come back from the checkpoint with their set-mean values.
  const FmiconRun resumed = run("affine+center", 3, dir.path(), true);
  REQUIRE(resumed.evals.size() == 3);
  CHECK(resumed.evals[1].pck1_set_mean == 20.0);
  CHECK(resumed.evals[1].collapse_set_mean == -1.0);
  CHECK(resumed.evals[2].pck1_set_mean == 30.0);

  // A checkpoint and a log from before the set-mean columns: the measurements load with NaN there, and the log
  // goes on in its own six columns.
  Checkpoint cp = load_safetensors(dir.file("checkpoint.safetensors"));
  for (auto& [name, t] : cp.tensors)
    if (name == "evals") {
      Tensor six({t.size(0), 6});
      for (int64_t i = 0; i < t.size(0); ++i) std::copy_n(t.data() + i * 8, 6, six.data() + i * 6);
      t = six;
    }
  save_safetensors(dir.file("checkpoint.safetensors"), cp.tensors, cp.metadata);
  {
    std::ofstream old_log(dir.file("eval_log.csv"));
    old_log << "step,pck1,pck2,pck4,label_iou,position_collapse\n";
  }
  const FmiconRun from_old = run("affine+center", 4, dir.path(), true);
  REQUIRE(from_old.evals.size() == 4);
  CHECK(from_old.evals[0].pck1 == 1.0);
  CHECK(std::isnan(from_old.evals[0].pck1_set_mean));
  CHECK(from_old.evals[3].pck1_set_mean == 40.0);
  CHECK(first_line(dir.file("eval_log.csv")) == "step,pck1,pck2,pck4,label_iou,position_collapse");

  // Attempts without centering keep six columns.
  testing::TempDir plain_dir("fmicon_no_set_mean");
  run("roll", 1, plain_dir.path(), false);
  CHECK(first_line(plain_dir.file("eval_log.csv")) == "step,pck1,pck2,pck4,label_iou,position_collapse");
}

TEST_CASE("fmicon_train: mismatched sizes and impossible settings are refused clearly") {
  const PairSource source = PairSource::photos(synthetic_photos(1, 40, 7), 16);
  FmiconConfig c = tiny_config("affine+center", 1);
  auto net = make_feature_net(c, 3, 24);
  CHECK_THROWS_NAMING(train_fmicon(*net, source, c), "24x24", "16x16");
  c.batch = 1;
  auto net16 = make_feature_net(c, 3, 16);
  CHECK_THROWS_NAMING(train_fmicon(*net16, source, c), "affine+center", "--batch >= 2");
  FmiconConfig bad = tiny_config("roll", 1);
  bad.optimizer = "sgd";
  auto net_bad = make_feature_net(bad, 3, 16);
  CHECK_THROWS_NAMING(train_fmicon(*net_bad, source, bad), "optimizer", "sgd", "rmsprop");
}
