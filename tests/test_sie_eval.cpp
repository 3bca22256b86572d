// SIE evaluation (apps/sie/evaluate.cpp): R^2 with the global mean on perfect / mean / per-column-mean predictors,
// the linear probe on separable and on uninformative features, the pair regression on a bilinear target, retrieval
// ranks on hand-built embeddings (cosine and L2, ties, the kept top rows), the whole evaluation on a synthetic
// "model" whose representation is the class and the pose, and errors that name the shapes.
//
// evaluate.cpp is compiled here; views.cpp comes from tests/test_sie_views.cpp (one definition per binary).
#include <doctest/doctest.h>

#include <cmath>

#include "apps/sie/evaluate.cpp"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

constexpr float kPi = 3.14159265358979f;

// n points of `classes` classes: class c sits at 4 * e_c in the first `classes` dimensions, plus N(0, 0.5) noise
// on every one of `dims` dimensions (the extra ones are pure noise). Linearly separable with a wide margin.
void separable(int64_t n, int classes, int dims, Rng& rng, Tensor& x, std::vector<int>& y) {
  x = Tensor::randn({n, dims}, rng, 0, 0.5f);
  y.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<int>(rng.randint(classes));
    x.data()[i * dims + y[i]] += 4.0f;
  }
}

// A ViewSet of `objects` x `views` "images" [1, 1, 4] whose pixels are (class sign, -class sign, cos t, sin t) of
// the view's angle t: a representation that is exactly (invariant part, equivariant part) = (class, pose).
ViewSet class_and_pose_set(int objects, int views, uint64_t seed) {
  Rng rng(seed);
  ViewSet s;
  const int64_t n = int64_t(objects) * views;
  s.views_per_object = views;
  s.group_dim = 2;
  s.group_name = "SO(2) (cos, sin)";
  s.poses = Tensor({n, 1});
  s.data.images = Tensor({n, 1, 1, 4});
  s.data.num_classes = 2;
  s.data.name = "class-and-pose";
  s.data.labels.resize(n);
  for (int k = 0; k < objects; ++k) {
    const int label = static_cast<int>(rng.randint(2));
    for (int v = 0; v < views; ++v) {
      const int64_t r = int64_t(k) * views + v;
      const float t = rng.uniform(-kPi / 2, kPi / 2);
      s.poses.data()[r] = t;
      s.data.labels[r] = label;
      float* px = s.data.images.data() + 4 * r;
      px[0] = label ? 1.f : -1.f, px[1] = -px[0], px[2] = std::cos(t), px[3] = std::sin(t);
    }
  }
  return s;
}

// R^2 (global mean) of predicting every row of `target` by the per-column mean of `fit`: the score of a regressor
// that learnt nothing but the outputs' means.
double column_mean_r2(const Tensor& fit, const Tensor& target) {
  const int64_t n = fit.size(0), g = fit.size(1);
  Tensor prediction(target.shape());
  for (int64_t j = 0; j < g; ++j) {
    double m = 0;
    for (int64_t i = 0; i < n; ++i) m += fit.data()[i * g + j];
    for (int64_t i = 0; i < target.size(0); ++i) prediction.data()[i * g + j] = static_cast<float>(m / n);
  }
  return r2_global(prediction, target);
}

Tensor flat(const Tensor& images) { return reshape(images, {images.size(0), -1}); }

}  // namespace

TEST_CASE("sie_eval: R^2 with the global mean is 1 for a perfect and 0 for the global-mean prediction") {
  const Tensor y = Tensor::from({3, 2}, {1, 10, 2, 20, 3, 30});
  CHECK(r2_global(y, y) == doctest::Approx(1.0));
  const double mean = (1 + 10 + 2 + 20 + 3 + 30) / 6.0;
  CHECK(r2_global(Tensor::full({3, 2}, static_cast<float>(mean)), y) == doctest::Approx(0.0).epsilon(1e-6));
  // Each column's own mean (2 and 20) is NOT the baseline of this definition: it scores well above 0, because the
  // columns' means differ. By hand: SSE = 2 + 200 = 202, SST = sum (y - 11)^2 = 100 + 1 + 81 + 81 + 64 + 361 = 688.
  const Tensor column_means = Tensor::from({3, 2}, {2, 20, 2, 20, 2, 20});
  CHECK(r2_global(column_means, y) == doctest::Approx(1.0 - 202.0 / 688.0).epsilon(1e-9));
  // Worse than the mean: negative.
  CHECK(r2_global(Tensor::from({3, 2}, {30, 3, 20, 2, 10, 1}), y) < 0);
  CHECK_THROWS_NAMING(r2_global(Tensor({3, 2}), Tensor({2, 3})), "r2_global", "[3, 2]", "[2, 3]");
  CHECK_THROWS_NAMING(r2_global(Tensor({2, 2}), Tensor::ones({2, 2})), "r2_global", "constant");
}

TEST_CASE("sie_eval: the linear probe separates separable features and not uninformative ones") {
  Rng rng(1);
  Tensor train_x, test_x;
  std::vector<int> train_y, test_y;
  separable(600, 4, 10, rng, train_x, train_y);
  separable(300, 4, 10, rng, test_x, test_y);
  // Features with a large offset and scale: standardisation makes the learning rate irrelevant to them.
  for (Tensor* x : {&train_x, &test_x})
    for (int64_t i = 0; i < x->numel(); ++i) x->data()[i] = 1000.f + 50.f * x->data()[i];
  ProbeConfig config;
  config.epochs = 20;
  config.batch_size = 64;
  const ProbeResult r = linear_probe(train_x, train_y, test_x, test_y, 4, config);
  CHECK(r.train_accuracy > 0.99);
  CHECK(r.test_accuracy > 0.99);
  // Labels unrelated to the features: test accuracy near chance (1/4).
  std::vector<int> shuffled_test = test_y;
  for (auto& y : shuffled_test) y = static_cast<int>(rng.randint(4));
  std::vector<int> shuffled_train = train_y;
  for (auto& y : shuffled_train) y = static_cast<int>(rng.randint(4));
  const ProbeResult chance = linear_probe(train_x, shuffled_train, test_x, shuffled_test, 4, config);
  CHECK(chance.test_accuracy < 0.4);
  // Deterministic for a seed.
  CHECK(linear_probe(train_x, train_y, test_x, test_y, 4, config).test_accuracy == r.test_accuracy);
  CHECK_THROWS_NAMING(linear_probe(train_x, train_y, Tensor({5, 9}), std::vector<int>(5), 4, config), "linear_probe",
                      "[600, 10]", "[5, 9]");
  CHECK_THROWS_NAMING(linear_probe(train_x, std::vector<int>(3), test_x, test_y, 4, config), "linear_probe",
                      "3 train labels", "[600, 10]");
}

TEST_CASE("sie_eval: pair regression learns the relative angle from two absolute poses, not from noise") {
  // x_i = (cos t_i, sin t_i, 2 noise dims); target (cos(t2 - t1), sin(t2 - t1)) is bilinear in (x1, x2).
  Rng rng(2);
  auto make = [&](int64_t n, Tensor& a, Tensor& b, Tensor& g) {
    a = Tensor::randn({n, 4}, rng, 0, 0.3f);
    b = Tensor::randn({n, 4}, rng, 0, 0.3f);
    g = Tensor({n, 2});
    for (int64_t i = 0; i < n; ++i) {
      const float t1 = rng.uniform(-kPi / 2, kPi / 2), t2 = rng.uniform(-kPi / 2, kPi / 2);
      a.data()[4 * i] = std::cos(t1), a.data()[4 * i + 1] = std::sin(t1);
      b.data()[4 * i] = std::cos(t2), b.data()[4 * i + 1] = std::sin(t2);
      g.data()[2 * i] = std::cos(t2 - t1), g.data()[2 * i + 1] = std::sin(t2 - t1);
    }
  };
  Tensor a, b, g, ta, tb, tg;
  make(1000, a, b, g);
  make(400, ta, tb, tg);
  RegressionConfig config;
  config.hidden = 64;
  config.epochs = 60;
  config.batch_size = 64;
  config.lr = 3e-3f;
  const RegressionResult mlp = pair_regression(a, b, g, ta, tb, tg, config);
  CHECK(mlp.test_r2 > 0.9);
  // Only the noise dimensions: nothing to learn beyond each output's mean (which the global-mean R^2 already
  // credits, cos of the difference having a positive mean), and a little less on new pairs.
  const Tensor noise_a = columns(a, 2, 4), noise_b = columns(b, 2, 4);
  const RegressionResult none =
      pair_regression(noise_a, noise_b, g, columns(ta, 2, 4), columns(tb, 2, 4), tg, config);
  CHECK(none.test_r2 < column_mean_r2(g, tg) + 0.05);
  CHECK_THROWS_NAMING(pair_regression(a, b, g, ta, tb, Tensor({400, 3}), config), "pair_regression", "[1000, 2]",
                      "[400, 3]");
  CHECK_THROWS_NAMING(pair_regression(a, Tensor({1000, 5}), g, ta, tb, tg, config), "pair_regression", "[1000, 4]",
                      "[1000, 5]");
}

TEST_CASE("sie_eval: retrieval ranks the target among the views of its object") {
  // 2 objects x 4 views in 2-D. Object 0's views point at 0, 30, 90, 180 degrees; object 1's at 0, 45, 100, 200.
  auto dir = [](float deg) { return std::vector<float>{std::cos(deg * kPi / 180), std::sin(deg * kPi / 180)}; };
  std::vector<float> e;
  for (float d : {0.f, 30.f, 90.f, 180.f, 0.f, 45.f, 100.f, 200.f}) {
    const auto v = dir(d);
    e.insert(e.end(), v.begin(), v.end());
  }
  const Tensor embeddings = Tensor::from({8, 2}, e);
  // Query 0 predicts 25 degrees, target view 1 (30): rank 1. Query 1 predicts 10 degrees, target row 1 (30): view
  // 0 (0) is nearer, rank 2. Query 2 predicts 40 degrees, target row 7 (200) of object 1: views at 45, 0, 100 are
  // all nearer, rank 4. Object 0's views are not candidates for query 2.
  std::vector<float> p;
  for (float d : {25.f, 10.f, 40.f}) {
    const auto v = dir(d);
    p.insert(p.end(), v.begin(), v.end());
  }
  const Tensor predicted = Tensor::from({3, 2}, p);
  const RetrievalResult r = predictor_retrieval(predicted, embeddings, {1, 1, 7}, 4, Similarity::Cosine, 3);
  CHECK(r.ranks == std::vector<int>{1, 2, 4});
  CHECK(r.mrr == doctest::Approx((1 + 0.5 + 0.25) / 3));
  CHECK(r.hit1 == doctest::Approx(1.0 / 3));
  CHECK(r.hit2 == doctest::Approx(2.0 / 3));
  CHECK(r.hit5 == doctest::Approx(1.0));
  CHECK(r.top_rows[0] == std::vector<int64_t>{1, 0, 2});
  CHECK(r.top_rows[2] == std::vector<int64_t>{5, 4, 6});

  // Cosine ignores lengths, L2 does not. Views a = (1, 0) and b = (3, 0.6), query (1, 0.25), target b: b has
  // nearly the query's direction (cosine 0.999 vs 0.970) but a is far closer in L2 (0.06 vs 4.1).
  const Tensor lengths = Tensor::from({2, 2}, {1, 0, 3, 0.6f});
  const Tensor query = Tensor::from({1, 2}, {1, 0.25f});
  CHECK(predictor_retrieval(query, lengths, {1}, 2, Similarity::Cosine).ranks[0] == 1);  // same direction as b
  CHECK(predictor_retrieval(query, lengths, {1}, 2, Similarity::L2).ranks[0] == 2);      // but a is closer

  // A collapsed predictor and collapsed embeddings: every view ties, and ties rank the target last.
  const Tensor same = Tensor::ones({8, 2});
  const RetrievalResult collapsed = predictor_retrieval(Tensor::ones({2, 2}), same, {0, 6}, 4);
  CHECK(collapsed.ranks == std::vector<int>{4, 4});
  CHECK(collapsed.mrr == doctest::Approx(0.25));

  CHECK_THROWS_NAMING(predictor_retrieval(Tensor({3, 5}), embeddings, {1, 1, 7}, 4), "predictor_retrieval",
                      "[3, 5]", "[8, 2]");
  CHECK_THROWS_NAMING(predictor_retrieval(predicted, embeddings, {1, 1, 8}, 4), "predictor_retrieval", "row 8");
  CHECK_THROWS_NAMING(predictor_retrieval(predicted, embeddings, {1, 1, 7}, 3), "predictor_retrieval", "3 views");
  CHECK_THROWS_NAMING(predictor_retrieval(predicted, embeddings, {1, 1}, 4), "predictor_retrieval", "2 target rows");
}

TEST_CASE("sie_eval: the whole evaluation on a representation that is (class, pose)") {
  const ViewSet train = class_and_pose_set(120, 4, 1), test = class_and_pose_set(60, 4, 2);
  EvalConfig config;
  config.probe.epochs = 10;
  config.regression.hidden = 32;
  config.regression.epochs = 40;
  config.regression.batch_size = 64;
  config.regression.lr = 3e-3f;
  config.train_pairs_per_object = 6;
  config.test_pairs_per_object = 3;

  RepresentationMaps maps;
  maps.represent = flat;  // columns (class, -class, cos t, sin t)
  maps.inv_dim = 2;
  maps.embed = [](const Tensor& images) { return slice(flat(images), 1, 2, 4); };  // (cos t, sin t)
  // The right predictor rotates the embedding by the relative angle: complex multiplication by g = (cos, sin).
  maps.predict = [](const Tensor& z, const Tensor& g) {
    Tensor out({z.size(0), 2});
    for (int64_t i = 0; i < z.size(0); ++i) {
      const float c = g.data()[2 * i], s = g.data()[2 * i + 1], x = z.data()[2 * i], y = z.data()[2 * i + 1];
      out.data()[2 * i] = c * x - s * y, out.data()[2 * i + 1] = s * x + c * y;
    }
    return out;
  };
  const SieEvaluation ev = evaluate_representations(maps, train, test, config);
  REQUIRE(ev.inv.present);
  REQUIRE(ev.equi.present);
  REQUIRE(ev.full.present);
  CHECK(ev.inv.probe.test_accuracy == doctest::Approx(1.0));
  CHECK(ev.equi.probe.test_accuracy < 0.75);        // the pose says nothing about the class
  CHECK(ev.equi.rotation.test_r2 > 0.85);           // the pose pair gives the relative angle
  // The class pair does not: no better than predicting each output's mean.
  CHECK(ev.inv.rotation.test_r2 < column_mean_r2(pair_groups(train, draw_pairs(train, 6, 0)),
                                                 pair_groups(test, ev.test_pairs)) + 0.05);
  CHECK(ev.full.rotation.test_r2 > 0.7);
  REQUIRE(ev.has_retrieval);
  CHECK(ev.test_pairs.size() == 180);
  CHECK(ev.retrieval.queries == 180);
  CHECK(ev.retrieval.mrr == doctest::Approx(1.0));  // the exact predictor finds every target
  CHECK(ev.source_top1 == 0);
  CHECK(ev.embedding_view_share > 0.5);               // the pose embedding varies between views
  CHECK(ev.rotation_mean_baseline_r2 > 0.05);         // cos of the difference has a positive mean
  CHECK(ev.rotation_mean_baseline_r2 < 0.3);

  // The identity predictor (what a collapsed hypernetwork becomes) retrieves the first view itself, which is
  // among the candidates: never the target at rank 1.
  maps.predict = [](const Tensor& z, const Tensor&) { return z.clone(); };
  const SieEvaluation identity = evaluate_representations(maps, train, test, config);
  CHECK(identity.retrieval.hit1 == 0);
  CHECK(identity.source_top1 == 1);
  CHECK(identity.retrieval.mrr < 0.6);
  // No split, no predictor: only the full part, no retrieval.
  maps.inv_dim = 0;
  maps.predict = nullptr;
  const SieEvaluation plain = evaluate_representations(maps, train, test, config);
  CHECK_FALSE(plain.inv.present);
  CHECK_FALSE(plain.equi.present);
  CHECK(plain.full.present);
  CHECK_FALSE(plain.has_retrieval);

  maps.inv_dim = 4;
  CHECK_THROWS_NAMING(evaluate_representations(maps, train, test, config), "evaluate_representations", "inv_dim 4",
                      "[480, 4]");
}

TEST_CASE("sie_eval: within-object share of the embedding variance") {
  // 2 objects x 2 views: object means (0, 0) and (4, 0); views +-1 in the second coordinate.
  const Tensor e = Tensor::from({4, 2}, {0, 1, 0, -1, 4, 1, 4, -1});
  // within = 4 * 1 = 4; total = 4 * 1 (second coordinate) + 4 * 4 (first: +-2 about 2) = 20.
  CHECK(within_object_share(e, 2) == doctest::Approx(0.2));
  CHECK(within_object_share(Tensor::from({4, 2}, {1, 2, 1, 2, 3, 0, 3, 0}), 2) == 0);  // invariant embedding
  CHECK_THROWS_NAMING(within_object_share(e, 3), "within_object_share", "[4, 2]", "3 views");
}

TEST_CASE("sie_eval: standardizer, take_rows and map_batched") {
  const Tensor x = Tensor::from({4, 2}, {1, 5, 3, 5, 5, 5, 7, 5});
  const Standardizer s = Standardizer::fit(x);
  const Tensor z = s.apply(x);
  CHECK(z.at({0, 0}) == doctest::Approx(-3 / std::sqrt(5.0)));
  CHECK(z.at({3, 0}) == doctest::Approx(3 / std::sqrt(5.0)));
  CHECK(z.at({2, 1}) == 0);  // a constant column is centred, not blown up
  CHECK_THROWS_NAMING(s.apply(Tensor({2, 3})), "Standardizer::apply", "2 columns", "[2, 3]");
  CHECK(take_rows(x, {3, 0}).to_vector() == std::vector<float>{7, 5, 1, 5});
  CHECK_THROWS_NAMING(take_rows(x, {4}), "take_rows", "row 4", "[4, 2]");
  int calls = 0;
  const Tensor doubled = map_batched([&](const Tensor& t) { ++calls; return mul(t, 2.f); }, x, 3);
  CHECK(calls == 2);
  CHECK(doubled.to_vector() == std::vector<float>{2, 10, 6, 10, 10, 10, 14, 10});
}
