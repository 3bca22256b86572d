// equilab apps/sie — evaluation of frozen self-supervised representations (SIE, REFERENCES.md section 7):
//
//   linear probe      class from one view's representation (invariant part, equivariant part, or all of it):
//                     softmax regression on standardised features, trained on train objects, scored on test
//                     objects (no object in both);
//   rotation R^2      the relative group element g of a pair of views from the pair of representations [r1, r2]
//                     (an MLP, or linear with hidden = 0), R^2 with the GLOBAL mean: 1 - SSE / sum (y - ybar)^2
//                     where ybar is ONE number, the mean of every entry of every target (as SIE's code computes
//                     it). So a constant prediction of each output's own mean can score above 0 when the outputs'
//                     means differ (a quaternion's w >= 0 has a larger mean than x, y, z);
//   predictor retrieval  the predicted embedding predict(embed(view1), g) ranked among embed() of ALL V views of
//                     the same object (view1 itself included); target = view2: MRR and Hit@1/2/5. Ties count
//                     against the target (a collapsed predictor that maps everything to one point ranks last, not
//                     first).
//
// The functions take representations, not models, so they are tested on synthetic features (tests/
// test_sie_eval.cpp); evaluate_representations() runs all three on anything that has the three maps.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "apps/sie/views.h"
#include "engine/tensor.h"

namespace eq {

// Per-column mean and 1 / std of training features, applied to any features of the same width. Columns with
// (near) zero spread are centred but not scaled (a constant feature carries no information either way).
struct Standardizer {
  std::vector<float> mean, inv_std;
  static Standardizer fit(const Tensor& features);  // features [N, D]
  Tensor apply(const Tensor& features) const;       // [M, D] -> [M, D]
};

// Rows `rows` of x [N, ...] as a new tensor [rows.size(), ...]. Throws naming the row and the shape.
Tensor take_rows(const Tensor& x, const std::vector<int64_t>& rows);

// --- linear probe -----------------------------------------------------------------------------------------------
struct ProbeConfig {
  int epochs = 30;
  int batch_size = 256;
  float lr = 1e-2f;             // Adam
  float weight_decay = 1e-5f;   // L2 on the weights
  uint64_t seed = 0;            // initialisation and batch order
};

struct ProbeResult {
  double train_accuracy = 0, test_accuracy = 0;
};

// Softmax regression logits = W x + b on features standardised with the training set's statistics.
ProbeResult linear_probe(const Tensor& train_features, const std::vector<int>& train_labels,
                         const Tensor& test_features, const std::vector<int>& test_labels, int num_classes,
                         const ProbeConfig& config = {});

// --- regression of the relative group element from a pair of representations ------------------------------------
// R^2 with the global mean (see the header comment). predicted and target [N, G] of equal shape. Throws when the
// target is constant (R^2 undefined).
double r2_global(const Tensor& predicted, const Tensor& target);

struct RegressionConfig {
  int hidden = 256;             // one hidden ReLU layer of this width; 0 = linear regression
  int epochs = 40;
  int batch_size = 256;
  float lr = 1e-3f;             // Adam
  float weight_decay = 1e-4f;   // L2: a few thousand pairs of 2 x R features overfit an MLP easily
  uint64_t seed = 0;
};

struct RegressionResult {
  double train_r2 = 0, test_r2 = 0;
};

// Fits y from standardised [x1, x2] (MSE, Adam) on the training pairs; R^2 on both sets.
RegressionResult pair_regression(const Tensor& train_first, const Tensor& train_second, const Tensor& train_target,
                                 const Tensor& test_first, const Tensor& test_second, const Tensor& test_target,
                                 const RegressionConfig& config = {});

// --- predictor retrieval ----------------------------------------------------------------------------------------
enum class Similarity { Cosine, L2 };
Similarity parse_similarity(const std::string& name);  // "cosine" or "l2"

struct RetrievalResult {
  int64_t queries = 0;
  double mrr = 0, hit1 = 0, hit2 = 0, hit5 = 0;       // fractions in [0, 1]
  std::vector<int> ranks;                             // per query, 1 = the target is the nearest
  std::vector<std::vector<int64_t>> top_rows;         // per query, the `keep_top` nearest rows, nearest first
};

// predicted [B, E]: one predicted embedding per query; embeddings [N, E]: every view of the set, object-major with
// `views_per_object` views each; target_rows[b]: the row query b should retrieve. Candidates are the rows of the
// target's object.
RetrievalResult predictor_retrieval(const Tensor& predicted, const Tensor& embeddings,
                                    const std::vector<int64_t>& target_rows, int views_per_object,
                                    Similarity similarity = Similarity::Cosine, int keep_top = 3);

// --- everything, for one trained method -------------------------------------------------------------------------
// What evaluation needs from a model (apps/sie/main.cpp builds it from a SieModel). represent is required; embed
// and predict only for retrieval (predict empty: no predictor, retrieval skipped).
struct RepresentationMaps {
  std::function<Tensor(const Tensor&)> represent;               // images [N, C, H, W] -> [N, R]
  int inv_dim = 0;                                              // > 0: columns [0, inv_dim) invariant, rest equi
  std::function<Tensor(const Tensor&)> embed;                   // images -> [N, E]
  std::function<Tensor(const Tensor&, const Tensor&)> predict;  // ([N, E], [N, G]) -> [N, E]
};

struct EvalConfig {
  ProbeConfig probe;
  RegressionConfig regression;
  int train_pairs_per_object = 16; // pairs for fitting the rotation regressor (cheap: representations are reused)
  int test_pairs_per_object = 4;   // pairs for its R^2 and for retrieval
  Similarity similarity = Similarity::Cosine;
  int batch_size = 512;            // images per represent / embed call
  uint64_t seed = 0;               // pair draws
  bool verbose = false;            // a line per stage on stderr
};

// One representation part's scores; present = false when the part does not exist (no split).
struct PartScores {
  bool present = false;
  ProbeResult probe;
  RegressionResult rotation;
};

struct SieEvaluation {
  PartScores inv, equi, full;
  // R^2 on the test pairs of predicting every pair by the training targets' per-output mean: what a regressor
  // that learnt nothing scores under the global-mean definition (above 0 when the outputs' means differ).
  double rotation_mean_baseline_r2 = 0;
  bool has_retrieval = false;
  RetrievalResult retrieval;
  // Collapse diagnostics (with retrieval): the fraction of queries whose nearest view is the first view itself
  // (a predictor that stayed near the identity), and the share of the test embeddings' variance that lies
  // between views of one object (0 = the embedding ignores the pose: collapsed to invariance).
  double source_top1 = 0, embedding_view_share = 0;
  std::vector<std::pair<int64_t, int64_t>> test_pairs;  // the test pairs (rows of the test set) scored above
  double seconds = 0;
};

// Representations of every view of `train` and `test` (batched), the probes on inv / equi / full (inv and equi
// only when maps.inv_dim > 0), the rotation regression on the same parts from train pairs to test pairs, and
// retrieval on the test pairs when maps.predict is set.
SieEvaluation evaluate_representations(const RepresentationMaps& maps, const ViewSet& train, const ViewSet& test,
                                       const EvalConfig& config = {});

// The share of the variance of embeddings [M * V, E] (object-major, V views each) that is within objects:
// sum over objects and views of ||e - object mean||^2 over sum ||e - global mean||^2. 0 when every object's views
// have one embedding; about (V - 1) / V for embeddings unrelated to the object.
double within_object_share(const Tensor& embeddings, int views_per_object);

// `pairs_per_object` pairs of different views of every object, drawn with Rng(seed) (fixed for every method).
std::vector<std::pair<int64_t, int64_t>> draw_pairs(const ViewSet& set, int pairs_per_object, uint64_t seed);

// f applied to x [N, ...] in batches of batch_size rows, outputs concatenated along axis 0 (no gradient).
Tensor map_batched(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, int64_t batch_size);

}  // namespace eq
