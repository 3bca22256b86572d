// equilab apps/sie — evaluation of frozen representations: linear probe, rotation R^2, predictor retrieval
// (see evaluate.h for the definitions).
#include "apps/sie/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>

#include "apps/common/datasets.h"  // make_batches
#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/error.h"
#include "engine/optim.h"
#include "engine/shape_ops.h"
#include "layers/linear.h"
#include "losses/cross_entropy.h"
#include "losses/mse.h"

namespace eq {

namespace {

void check_matrix(const Tensor& x, const char* op, const char* what) {
  check(x.defined() && x.dim() == 2 && x.size(0) >= 1 && x.size(1) >= 1, op, ": ", what,
        " must be a non-empty matrix [N, D], got ", x.defined() ? x.shape() : Shape{});
}

// Minimises batch_loss(rows) over shuffled mini-batches of the n training rows with Adam, for config.epochs
// epochs (config: a ProbeConfig or RegressionConfig: lr, weight_decay, epochs, batch_size).
template <class Config>
void fit_with_adam(const std::vector<Tensor>& params, int64_t n, const Config& config, Rng& rng,
                   const std::function<Tensor(const std::vector<int64_t>& rows)>& batch_loss) {
  Adam adam(params, config.lr, 0.9f, 0.999f, 1e-8f, config.weight_decay);
  for (int epoch = 0; epoch < config.epochs; ++epoch)
    for (const auto& rows : make_batches(n, config.batch_size, &rng)) {
      adam.zero_grad();
      Tensor loss = batch_loss(rows);
      loss.backward();
      adam.step();
    }
}

std::vector<int> take_labels(const std::vector<int>& labels, const std::vector<int64_t>& rows) {
  std::vector<int> out;
  out.reserve(rows.size());
  for (int64_t r : rows) out.push_back(labels[r]);
  return out;
}

// Columns [begin, end) of x [N, D], copied.
Tensor columns(const Tensor& x, int64_t begin, int64_t end) {
  NoGrad no_grad;
  return slice(x, 1, begin, end).clone();
}

}  // namespace

// --- standardisation -------------------------------------------------------------------------------------------
Standardizer Standardizer::fit(const Tensor& features) {
  check_matrix(features, "Standardizer::fit", "features");
  const int64_t n = features.size(0), d = features.size(1);
  Standardizer s;
  s.mean.assign(d, 0.f);
  s.inv_std.assign(d, 1.f);
  const float* x = features.data();
  for (int64_t j = 0; j < d; ++j) {
    double sum = 0, sq = 0;  // double: features of 10^4 rows with a large offset lose digits in float
    for (int64_t i = 0; i < n; ++i) sum += x[i * d + j];
    const double mean = sum / n;
    for (int64_t i = 0; i < n; ++i) sq += (x[i * d + j] - mean) * (x[i * d + j] - mean);
    const double sd = std::sqrt(sq / n);
    s.mean[j] = static_cast<float>(mean);
    s.inv_std[j] = sd > 1e-8 * (1 + std::fabs(mean)) ? static_cast<float>(1 / sd) : 1.f;
  }
  return s;
}

Tensor Standardizer::apply(const Tensor& features) const {
  check_matrix(features, "Standardizer::apply", "features");
  const int64_t n = features.size(0), d = features.size(1);
  check(d == static_cast<int64_t>(mean.size()), "Standardizer::apply: fitted on ", mean.size(),
        " columns but features are ", features.shape());
  Tensor out({n, d});
  const float* x = features.data();
  float* y = out.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = (x[i * d + j] - mean[j]) * inv_std[j];
  return out;
}

Tensor take_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  check(x.defined() && x.dim() >= 1, "take_rows: need a tensor with a row axis, got ",
        x.defined() ? x.shape() : Shape{});
  Shape shape = x.shape();
  const int64_t n = shape[0], row = n ? x.numel() / n : 0;
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out(shape);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= n) fail("take_rows: row ", rows[i], " is out of range for ", x.shape());
    std::copy(x.data() + rows[i] * row, x.data() + (rows[i] + 1) * row, out.data() + i * row);
  }
  return out;
}

Tensor map_batched(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, int64_t batch_size) {
  check(f != nullptr, "map_batched: no function given");
  check(x.defined() && x.dim() >= 1 && x.size(0) >= 1 && batch_size >= 1, "map_batched: need x [N >= 1, ...] and "
        "batch_size >= 1, got ", x.defined() ? x.shape() : Shape{}, " and ", batch_size);
  NoGrad no_grad;
  std::vector<Tensor> parts;
  for (int64_t b = 0; b < x.size(0); b += batch_size)
    parts.push_back(f(slice(x, 0, b, std::min(x.size(0), b + batch_size))).detach());
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

// --- linear probe ----------------------------------------------------------------------------------------------
ProbeResult linear_probe(const Tensor& train_features, const std::vector<int>& train_labels,
                         const Tensor& test_features, const std::vector<int>& test_labels, int num_classes,
                         const ProbeConfig& config) {
  check_matrix(train_features, "linear_probe", "train features");
  check_matrix(test_features, "linear_probe", "test features");
  check(train_features.size(1) == test_features.size(1), "linear_probe: train features ", train_features.shape(),
        " and test features ", test_features.shape(), " differ in width");
  check(static_cast<int64_t>(train_labels.size()) == train_features.size(0) &&
            static_cast<int64_t>(test_labels.size()) == test_features.size(0),
        "linear_probe: ", train_labels.size(), " train labels for ", train_features.shape(), " and ",
        test_labels.size(), " test labels for ", test_features.shape());
  check(num_classes >= 2 && config.epochs >= 1 && config.batch_size >= 1, "linear_probe: need num_classes >= 2, "
        "epochs >= 1 and batch_size >= 1, got ", num_classes, ", ", config.epochs, ", ", config.batch_size);
  for (int y : train_labels) check(y >= 0 && y < num_classes, "linear_probe: label ", y, " outside [0, ", num_classes, ")");

  const Standardizer standardizer = Standardizer::fit(train_features);
  const Tensor train_x = standardizer.apply(train_features), test_x = standardizer.apply(test_features);
  Rng rng(config.seed);
  Linear probe(train_x.size(1), num_classes, rng);
  fit_with_adam(probe.parameters(), train_x.size(0), config, rng, [&](const std::vector<int64_t>& rows) {
    return cross_entropy(probe(take_rows(train_x, rows)), take_labels(train_labels, rows));
  });
  NoGrad no_grad;
  ProbeResult r;
  r.train_accuracy = accuracy(probe(train_x), train_labels);
  r.test_accuracy = accuracy(probe(test_x), test_labels);
  return r;
}

// --- rotation regression ---------------------------------------------------------------------------------------
double r2_global(const Tensor& predicted, const Tensor& target) {
  check(predicted.defined() && target.defined() && predicted.shape() == target.shape() && target.numel() >= 1,
        "r2_global: predicted ", predicted.defined() ? predicted.shape() : Shape{}, " and target ",
        target.defined() ? target.shape() : Shape{}, " must have the same non-empty shape");
  const int64_t n = target.numel();
  const float* p = predicted.data();
  const float* y = target.data();
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += y[i];
  mean /= static_cast<double>(n);
  double sse = 0, sst = 0;
  for (int64_t i = 0; i < n; ++i) {
    sse += (static_cast<double>(y[i]) - p[i]) * (static_cast<double>(y[i]) - p[i]);
    sst += (y[i] - mean) * (y[i] - mean);
  }
  check(sst > 0, "r2_global: the target ", target.shape(), " is constant, R^2 is undefined");
  return 1.0 - sse / sst;
}

RegressionResult pair_regression(const Tensor& train_first, const Tensor& train_second, const Tensor& train_target,
                                 const Tensor& test_first, const Tensor& test_second, const Tensor& test_target,
                                 const RegressionConfig& config) {
  const char* op = "pair_regression";
  for (const Tensor* t : {&train_first, &train_second, &train_target, &test_first, &test_second, &test_target})
    check_matrix(*t, op, "every input");
  check(train_first.shape() == train_second.shape() && test_first.shape() == test_second.shape() &&
            train_first.size(1) == test_first.size(1),
        op, ": first/second representations must match: train ", train_first.shape(), " / ", train_second.shape(),
        ", test ", test_first.shape(), " / ", test_second.shape());
  check(train_target.size(0) == train_first.size(0) && test_target.size(0) == test_first.size(0) &&
            train_target.size(1) == test_target.size(1),
        op, ": targets train ", train_target.shape(), " / test ", test_target.shape(), " do not fit the pairs train ",
        train_first.shape(), " / test ", test_first.shape());
  check(config.hidden >= 0 && config.epochs >= 1 && config.batch_size >= 1, op, ": need hidden >= 0, epochs >= 1, "
        "batch_size >= 1, got ", config.hidden, ", ", config.epochs, ", ", config.batch_size);

  Tensor train_x, test_x;
  {
    NoGrad no_grad;
    train_x = concat({train_first, train_second}, 1);
    test_x = concat({test_first, test_second}, 1);
  }
  const Standardizer standardizer = Standardizer::fit(train_x);
  train_x = standardizer.apply(train_x);
  test_x = standardizer.apply(test_x);
  const int64_t in = train_x.size(1), out = train_target.size(1);
  Rng rng(config.seed);
  std::shared_ptr<Linear> hidden, head;
  if (config.hidden > 0) hidden = std::make_shared<Linear>(in, config.hidden, rng);
  head = std::make_shared<Linear>(config.hidden > 0 ? config.hidden : in, out, rng);
  auto forward = [&](const Tensor& x) { return hidden ? (*head)(relu((*hidden)(x))) : (*head)(x); };
  std::vector<Tensor> params = head->parameters();
  if (hidden)
    for (const Tensor& p : hidden->parameters()) params.push_back(p);
  fit_with_adam(params, train_x.size(0), config, rng, [&](const std::vector<int64_t>& rows) {
    return mse_loss(forward(take_rows(train_x, rows)), take_rows(train_target, rows));
  });
  NoGrad no_grad;
  RegressionResult r;
  r.train_r2 = r2_global(forward(train_x), train_target);
  r.test_r2 = r2_global(forward(test_x), test_target);
  return r;
}

// --- predictor retrieval ---------------------------------------------------------------------------------------
Similarity parse_similarity(const std::string& name) {
  if (name == "cosine") return Similarity::Cosine;
  if (name == "l2") return Similarity::L2;
  fail("parse_similarity: unknown similarity '", name, "' (cosine or l2)");
}

RetrievalResult predictor_retrieval(const Tensor& predicted, const Tensor& embeddings,
                                    const std::vector<int64_t>& target_rows, int views_per_object,
                                    Similarity similarity, int keep_top) {
  check_matrix(predicted, "predictor_retrieval", "predicted");
  check_matrix(embeddings, "predictor_retrieval", "embeddings");
  const int64_t b = predicted.size(0), n = embeddings.size(0), e = embeddings.size(1);
  check(predicted.size(1) == e, "predictor_retrieval: predicted ", predicted.shape(), " and embeddings ",
        embeddings.shape(), " differ in width");
  check(static_cast<int64_t>(target_rows.size()) == b, "predictor_retrieval: ", target_rows.size(),
        " target rows for predicted ", predicted.shape());
  check(views_per_object >= 1 && n % views_per_object == 0, "predictor_retrieval: embeddings ", embeddings.shape(),
        " are not a whole number of objects of ", views_per_object, " views");
  check(keep_top >= 0, "predictor_retrieval: keep_top must be >= 0, got ", keep_top);
  const int v = views_per_object;
  RetrievalResult out;
  out.queries = b;
  out.ranks.resize(b);
  out.top_rows.resize(b);
  const float* pred = predicted.data();
  const float* emb = embeddings.data();
  for (int64_t q = 0; q < b; ++q) {
    const int64_t target = target_rows[q];
    if (target < 0 || target >= n)
      fail("predictor_retrieval: target row ", target, " of query ", q, " is out of range for embeddings ",
           embeddings.shape());
    const int64_t first = target / v * v;
    // Score every view of the object: higher = nearer (cosine similarity, or minus the squared L2 distance).
    std::vector<double> score(v);
    const float* p = pred + q * e;
    double pn = 0;
    for (int64_t k = 0; k < e; ++k) pn += double(p[k]) * p[k];
    for (int j = 0; j < v; ++j) {
      const float* c = emb + (first + j) * e;
      double dot = 0, cn = 0, d2 = 0;
      for (int64_t k = 0; k < e; ++k) {
        dot += double(p[k]) * c[k];
        cn += double(c[k]) * c[k];
        d2 += (double(p[k]) - c[k]) * (double(p[k]) - c[k]);
      }
      score[j] = similarity == Similarity::Cosine ? dot / std::max(1e-12, std::sqrt(pn * cn)) : -d2;
    }
    const int t = static_cast<int>(target - first);
    int rank = 1;
    for (int j = 0; j < v; ++j)
      if (j != t && score[j] >= score[t]) ++rank;  // ties count against the target
    out.ranks[q] = rank;
    out.mrr += 1.0 / rank;
    out.hit1 += rank <= 1;
    out.hit2 += rank <= 2;
    out.hit5 += rank <= 5;
    std::vector<int> order(v);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return score[a] > score[c]; });
    for (int j = 0; j < std::min(keep_top, v); ++j) out.top_rows[q].push_back(first + order[j]);
  }
  for (double* m : {&out.mrr, &out.hit1, &out.hit2, &out.hit5}) *m /= static_cast<double>(b);
  return out;
}

// --- everything ------------------------------------------------------------------------------------------------
std::vector<std::pair<int64_t, int64_t>> draw_pairs(const ViewSet& set, int pairs_per_object, uint64_t seed) {
  const int v = set.views_per_object;
  check(v >= 2 && pairs_per_object >= 1, "draw_pairs: ", set.data.name, " has ", v, " view(s) per object and ",
        pairs_per_object, " pair(s) per object were asked for; need 2 views and 1 pair");
  Rng rng(seed);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t k = 0; k < set.num_objects(); ++k)
    for (int i = 0; i < pairs_per_object; ++i) {
      const int64_t v1 = rng.randint(v);
      int64_t v2 = rng.randint(v - 1);
      if (v2 >= v1) ++v2;
      pairs.emplace_back(k * v + v1, k * v + v2);
    }
  return pairs;
}

double within_object_share(const Tensor& embeddings, int views_per_object) {
  check_matrix(embeddings, "within_object_share", "embeddings");
  const int64_t n = embeddings.size(0), e = embeddings.size(1), v = views_per_object;
  check(v >= 1 && n % v == 0, "within_object_share: embeddings ", embeddings.shape(), " are not a whole number of "
        "objects of ", views_per_object, " views");
  const float* x = embeddings.data();
  std::vector<double> global(e, 0.0), local(e);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < e; ++k) global[k] += x[i * e + k];
  for (double& g : global) g /= static_cast<double>(n);
  double within = 0, total = 0;
  for (int64_t o = 0; o < n / v; ++o) {
    std::fill(local.begin(), local.end(), 0.0);
    for (int64_t j = 0; j < v; ++j)
      for (int64_t k = 0; k < e; ++k) local[k] += x[(o * v + j) * e + k];
    for (double& l : local) l /= static_cast<double>(v);
    for (int64_t j = 0; j < v; ++j)
      for (int64_t k = 0; k < e; ++k) {
        const double value = x[(o * v + j) * e + k];
        within += (value - local[k]) * (value - local[k]);
        total += (value - global[k]) * (value - global[k]);
      }
  }
  return total > 0 ? within / total : 0.0;
}

namespace {

// The relative group elements of `pairs` as [P, group_dim].
Tensor pair_groups(const ViewSet& set, const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  Tensor g({static_cast<int64_t>(pairs.size()), set.group_dim});
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::vector<float> e = set.relative(pairs[i].first, pairs[i].second);
    std::copy(e.begin(), e.end(), g.data() + i * set.group_dim);
  }
  return g;
}

std::vector<int64_t> firsts(const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  std::vector<int64_t> out;
  for (const auto& p : pairs) out.push_back(p.first);
  return out;
}
std::vector<int64_t> seconds(const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  std::vector<int64_t> out;
  for (const auto& p : pairs) out.push_back(p.second);
  return out;
}

}  // namespace

SieEvaluation evaluate_representations(const RepresentationMaps& maps, const ViewSet& train, const ViewSet& test,
                                       const EvalConfig& config) {
  check(maps.represent != nullptr, "evaluate_representations: no represent map given");
  check(train.group_dim == test.group_dim && train.data.num_classes == test.data.num_classes,
        "evaluate_representations: train (group_dim ", train.group_dim, ", ", train.data.num_classes,
        " classes) and test (group_dim ", test.group_dim, ", ", test.data.num_classes, " classes) differ");
  const auto start = std::chrono::steady_clock::now();
  auto say = [&](const char* what) {
    if (config.verbose)
      std::fprintf(stderr, "  evaluate: %s (%.0f s)\n", what,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  say("representations");
  const Tensor train_rep = map_batched(maps.represent, train.data.images, config.batch_size);
  const Tensor test_rep = map_batched(maps.represent, test.data.images, config.batch_size);
  check(train_rep.dim() == 2 && train_rep.size(0) == train.data.size() && test_rep.dim() == 2 &&
            test_rep.size(1) == train_rep.size(1),
        "evaluate_representations: represent gave ", train_rep.shape(), " for train images ",
        train.data.images.shape(), " and ", test_rep.shape(), " for test images ", test.data.images.shape());
  const int64_t r = train_rep.size(1);
  check(maps.inv_dim >= 0 && maps.inv_dim < r, "evaluate_representations: inv_dim ", maps.inv_dim,
        " does not split representations ", train_rep.shape());

  SieEvaluation ev;
  ev.test_pairs = draw_pairs(test, config.test_pairs_per_object, config.seed + 1);
  const auto train_pairs = draw_pairs(train, config.train_pairs_per_object, config.seed);
  const Tensor train_g = pair_groups(train, train_pairs), test_g = pair_groups(test, ev.test_pairs);

  {
    // The regressor that learnt only the training targets' per-output means.
    const int64_t g = train_g.size(1), n = train_g.size(0);
    Tensor baseline(test_g.shape());
    for (int64_t j = 0; j < g; ++j) {
      double m = 0;
      for (int64_t i = 0; i < n; ++i) m += train_g.data()[i * g + j];
      for (int64_t i = 0; i < test_g.size(0); ++i) baseline.data()[i * g + j] = static_cast<float>(m / n);
    }
    ev.rotation_mean_baseline_r2 = r2_global(baseline, test_g);
  }

  auto score_part = [&](PartScores& part, int64_t begin, int64_t end, const char* name) {
    const Tensor tr = begin == 0 && end == r ? train_rep : columns(train_rep, begin, end);
    const Tensor te = begin == 0 && end == r ? test_rep : columns(test_rep, begin, end);
    part.present = true;
    say((std::string("linear probe, ") + name).c_str());
    part.probe = linear_probe(tr, train.data.labels, te, test.data.labels, train.data.num_classes, config.probe);
    say((std::string("rotation regression, ") + name).c_str());
    part.rotation = pair_regression(take_rows(tr, firsts(train_pairs)), take_rows(tr, seconds(train_pairs)), train_g,
                                    take_rows(te, firsts(ev.test_pairs)), take_rows(te, seconds(ev.test_pairs)),
                                    test_g, config.regression);
  };
  if (maps.inv_dim > 0) {
    score_part(ev.inv, 0, maps.inv_dim, "invariant part");
    score_part(ev.equi, maps.inv_dim, r, "equivariant part");
  }
  score_part(ev.full, 0, r, "full representation");

  if (maps.predict && maps.embed) {
    say("predictor retrieval");
    const Tensor test_emb = map_batched(maps.embed, test.data.images, config.batch_size);
    check(test_emb.dim() == 2 && test_emb.size(0) == test.data.size(), "evaluate_representations: embed gave ",
          test_emb.shape(), " for test images ", test.data.images.shape());
    Tensor predicted;
    {
      NoGrad no_grad;
      predicted = maps.predict(take_rows(test_emb, firsts(ev.test_pairs)), test_g).detach();
    }
    ev.retrieval = predictor_retrieval(predicted, test_emb, seconds(ev.test_pairs), test.views_per_object,
                                       config.similarity, 3);
    ev.has_retrieval = true;
    int64_t source_first = 0;
    for (size_t q = 0; q < ev.test_pairs.size(); ++q)
      source_first += !ev.retrieval.top_rows[q].empty() && ev.retrieval.top_rows[q][0] == ev.test_pairs[q].first;
    ev.source_top1 = static_cast<double>(source_first) / static_cast<double>(ev.test_pairs.size());
    ev.embedding_view_share = within_object_share(test_emb, test.views_per_object);
  }
  ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ev;
}

}  // namespace eq
