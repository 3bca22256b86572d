// SIE training (apps/sie/train.cpp): every method trains on a tiny synthetic set of rotated shapes without error
// and lowers its loss; the trained model's maps (represent / embed / predict) have the documented shapes; the same
// seed gives the same model and another seed another; bad configurations are refused with a clear message.
//
// The app's sources are not part of libequilab.a, so train.cpp is compiled here; views.cpp is compiled once for
// the whole test binary by tests/test_sie_views.cpp.
#include <doctest/doctest.h>

#include <cmath>

#include "apps/sie/train.cpp"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

// `objects` 16x16 grey shapes of 3 classes (a bar, an off-centre blob, an L), random size, position and
// brightness per object, each seen in `views` rotations (rotated_digits: the group element is (cos, sin)).
ViewSet tiny_view_set(int objects, int views, uint64_t seed) {
  Dataset d;
  d.num_classes = 3;
  d.name = "tiny-shapes";
  d.images = Tensor({objects, 1, 16, 16});
  Rng rng(seed);
  for (int o = 0; o < objects; ++o) {
    const int cls = o % 3;
    d.labels.push_back(cls);
    float* img = d.images.data() + o * 256;
    const float bright = rng.uniform(0.6f, 1.0f);
    const int len = 4 + static_cast<int>(rng.randint(4)), off = static_cast<int>(rng.randint(3)) - 1;
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        bool on = false;
        if (cls == 0) on = std::abs(y - 8 - off) <= 1 && std::abs(x - 8) <= len;
        if (cls == 1) on = (y - 5 - off) * (y - 5 - off) + (x - 10) * (x - 10) <= len;
        if (cls == 2) on = (x >= 5 && x <= 6 && y >= 4 && y <= 4 + len) || (y >= 4 + len - 1 && y <= 4 + len &&
                                                                             x >= 5 && x <= 5 + len);
        img[y * 16 + x] = on ? bright : 0.0f;
      }
  }
  return rotated_digits(d, views, seed + 1);
}

SieConfig tiny_config(const std::string& method) {
  SieConfig c;
  c.method = method;
  c.inv_dim = 8;
  c.equi_dim = 8;
  c.projector_dim = 16;
  c.encoder_width = 8;
  c.epochs = 2;
  c.batch_size = 8;
  c.lr = 3e-3f;
  c.seed = 3;
  c.verbose = false;
  return c;
}

}  // namespace

TEST_CASE("sie train: every method trains two epochs and lowers its loss") {
  const ViewSet set = tiny_view_set(32, 4, 11);
  REQUIRE(sie_method_names().size() == 5);
  for (const std::string& method : sie_method_names()) {
    INFO("method " << method);
    std::vector<SieEpochLog> logs;
    SieModel model = train_sie(set, tiny_config(method), [&](const SieEpochLog& l) { logs.push_back(l); });
    REQUIRE(logs.size() == 2);
    CHECK(logs[0].epoch == 1);
    CHECK(logs[1].epoch == 2);
    for (const auto& l : logs) {
      CHECK(std::isfinite(l.loss));
      CHECK(l.loss > 0);
      CHECK(l.variance >= 0);
      CHECK(l.covariance >= 0);
      CHECK(l.seconds >= 0);
    }
    CHECK(logs[1].loss < logs[0].loss);
    const bool has_prediction = method != "vicreg";
    CHECK((logs[0].equivariance > 0) == has_prediction);
    CHECK((logs[0].invariance > 0) == (method != "hyper"));  // hyper has no invariance term
    CHECK(model.split == (method == "sie" || method == "sie-no-pred-var"));
    CHECK((model.predictor != nullptr) == has_prediction);
    CHECK(!model.encoder->is_training());  // returned in eval mode
  }
}

TEST_CASE("sie train: represent, embed and predict shapes; predict refuses vicreg") {
  const ViewSet set = tiny_view_set(24, 3, 12);
  Tensor images = slice(set.data.images, 0, 0, 5);
  Tensor group = Tensor::zeros({5, 2});
  for (int64_t b = 0; b < 5; ++b) group.data()[b * 2] = 1;  // the identity rotation
  for (const std::string& method : {std::string("sie"), std::string("equimod"), std::string("vicreg")}) {
    INFO("method " << method);
    SieConfig c = tiny_config(method);
    c.epochs = 1;
    SieModel model = train_sie(set, c);
    CHECK(model.representation_dim() == 16);
    CHECK(model.group_dim == 2);
    Tensor r = model.represent(images);
    CHECK(r.shape() == Shape{5, 16});
    CHECK(!r.requires_grad());
    Tensor e = model.embed(images);
    CHECK(e.shape() == Shape{5, 16});
    if (method == "vicreg") {
      CHECK_THROWS_NAMING(model.predict(e, group), "SieModel::predict", "vicreg");
    } else {
      CHECK(model.predict(e, group).shape() == Shape{5, 16});
      CHECK_THROWS_NAMING(model.predict(e, Tensor({5, 4})), "SieModel::predict", "[5, 4]");
    }
    // Batched internally: the same rows give the same values whatever else is in the call.
    CHECK(max_abs_diff(slice(model.represent(set.data.images), 0, 0, 5), r) < 1e-5f);
  }
}

TEST_CASE("sie train: the same seed gives the same model, another seed another") {
  const ViewSet set = tiny_view_set(24, 3, 13);
  SieConfig c = tiny_config("sie");
  c.epochs = 1;
  std::vector<double> losses;
  auto log = [&](const SieEpochLog& l) { losses.push_back(l.loss); };
  SieModel a = train_sie(set, c, log), b = train_sie(set, c, log);
  c.seed = 4;
  SieModel other = train_sie(set, c, log);
  Tensor images = slice(set.data.images, 0, 0, 6);
  CHECK(max_abs_diff(a.represent(images), b.represent(images)) == 0.0f);
  CHECK(losses[0] == losses[1]);
  CHECK(max_abs_diff(a.represent(images), other.represent(images)) > 1e-4f);
}

TEST_CASE("sie train: bad configurations and data are refused with the reason") {
  const ViewSet set = tiny_view_set(6, 2, 14);
  SieConfig c = tiny_config("simclr");
  CHECK_THROWS_NAMING(train_sie(set, c), "train_sie", "simclr", "vicreg, equimod");
  c = tiny_config("sie");
  c.batch_size = 1;
  CHECK_THROWS_NAMING(train_sie(set, c), "train_sie", "batch_size", "1");
  c = tiny_config("sie");
  c.inv_dim = 0;
  CHECK_THROWS_NAMING(train_sie(set, c), "train_sie", "inv_dim 0");
  ViewSet one_view = set;
  one_view.views_per_object = 1;
  CHECK_THROWS_NAMING(train_sie(one_view, tiny_config("sie")), "train_sie", "views per object");
  SieModel untrained;
  CHECK_THROWS_NAMING(untrained.represent(set.data.images), "SieModel::represent");
}
