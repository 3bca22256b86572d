// Optimizers: SGD (momentum, Nesterov, dampening, weight decay), Adam and AdamW trajectories against hand numbers
// and a double-precision reference written here from PyTorch's documented update rules; skipped parameters; state
// export/import that makes the next step identical; bad hyper-parameters and bad state; LR schedules.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/elementwise.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

// The gradient of the test objective, a function of the current parameters so trajectories compound:
// g_i = 2 p_i - 1 + 0.25 i  (the gradient of sum_i (p_i^2 - p_i + 0.25 i p_i)).
double objective_grad(double p, int64_t i) { return 2 * p - 1 + 0.25 * static_cast<double>(i); }

void set_grad(Tensor& p) {
  float* g = p.grad_data();
  for (int64_t i = 0; i < p.numel(); ++i) g[i] = static_cast<float>(objective_grad(p.data()[i], i));
}

// torch.optim.SGD's documented algorithm, in double.
struct ReferenceSGD {
  double lr, momentum, weight_decay, dampening;
  bool nesterov;
  std::vector<double> buf;
  void step(std::vector<double>& p) {
    const bool first = buf.empty();
    if (first) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = objective_grad(p[i], static_cast<int64_t>(i)) + weight_decay * p[i];
      if (momentum != 0) {
        buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
};

// torch.optim.Adam / AdamW's documented algorithm, in double.
struct ReferenceAdam {
  double lr, b1, b2, eps, weight_decay;
  bool decoupled;
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& p) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double g = objective_grad(p[i], static_cast<int64_t>(i));
      if (decoupled) p[i] *= 1 - lr * weight_decay;
      else g += weight_decay * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(b1, t)), v_hat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

std::vector<double> as_double(const Tensor& t) {
  std::vector<double> out;
  for (float v : t.to_vector()) out.push_back(v);
  return out;
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol) {
  REQUIRE(static_cast<size_t>(got.numel()) == want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(got.data()[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
  CHECK(worst < tol);
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0;
}

}  // namespace

TEST_CASE("optim: SGD and SGD with momentum on hand-computed numbers") {
  // p0 = 1, loss p^2 (g = 2p), lr 0.1.  Plain: p = 0.8, 0.64, 0.512.
  Tensor p = Tensor::from({1}, {1.0f}).set_requires_grad();
  SGD sgd({p}, 0.1f);
  const float plain[] = {0.8f, 0.64f, 0.512f};
  for (float want : plain) {
    p.grad_data()[0] = 2 * p.data()[0];
    sgd.step();
    CHECK(p.item() == doctest::Approx(want).epsilon(1e-6));
  }
  // Momentum 0.9: buf = 2 -> p 0.8; g 1.6, buf 3.4 -> p 0.46; g 0.92, buf 3.98 -> p 0.062.
  Tensor q = Tensor::from({1}, {1.0f}).set_requires_grad();
  SGD momentum({q}, 0.1f, 0.9f);
  const float with_momentum[] = {0.8f, 0.46f, 0.062f};
  for (float want : with_momentum) {
    q.grad_data()[0] = 2 * q.data()[0];
    momentum.step();
    CHECK(q.item() == doctest::Approx(want).epsilon(1e-5));
  }
}

TEST_CASE("optim: SGD variants follow the reference for 3 steps") {
  struct Case {
    float lr, momentum, weight_decay, dampening;
    bool nesterov;
  };
  const Case cases[] = {{0.1f, 0, 0, 0, false},     {0.05f, 0.9f, 0, 0, false},   {0.05f, 0.9f, 0, 0, true},
                        {0.1f, 0, 0.01f, 0, false}, {0.05f, 0.8f, 0.1f, 0, true}, {0.05f, 0.9f, 0.05f, 0.3f, false}};
  for (const Case& c : cases) {
    INFO("lr " << c.lr << " momentum " << c.momentum << " wd " << c.weight_decay << " dampening " << c.dampening
               << " nesterov " << c.nesterov);
    Tensor p = Tensor::from({2, 3}, {1.0f, -2.0f, 0.5f, 3.0f, -0.25f, 0.0f}).set_requires_grad();
    std::vector<double> ref_p = as_double(p);
    SGD sgd({p}, c.lr, c.momentum, c.nesterov, c.weight_decay, c.dampening);
    ReferenceSGD ref{c.lr, c.momentum, c.weight_decay, c.dampening, c.nesterov, {}};
    for (int step = 0; step < 3; ++step) {
      set_grad(p);
      sgd.step();
      ref.step(ref_p);
    }
    check_close(p, ref_p, 1e-5);
  }
}

TEST_CASE("optim: Adam first step moves each weight by lr against its gradient's sign") {
  // With zero moments, bias correction makes m_hat = g and v_hat = g^2: the step is lr * g / (|g| + eps).
  Tensor p = Tensor::from({3}, {1.0f, -1.0f, 0.5f}).set_requires_grad();
  Adam adam({p}, 0.1f);
  float* g = p.grad_data();
  g[0] = 2.0f, g[1] = -0.001f, g[2] = 300.0f;
  adam.step();
  CHECK(p.to_vector()[0] == doctest::Approx(0.9f));
  CHECK(p.to_vector()[1] == doctest::Approx(-0.9f));
  CHECK(p.to_vector()[2] == doctest::Approx(0.4f));
}

TEST_CASE("optim: Adam and AdamW follow the reference for 3 steps; decoupled decay differs from L2") {
  struct Case {
    float lr, b1, b2, eps, weight_decay;
    bool decoupled;
  };
  const Case cases[] = {{0.1f, 0.9f, 0.999f, 1e-8f, 0, false},   {0.01f, 0.8f, 0.99f, 1e-6f, 0, false},
                        {0.05f, 0.9f, 0.999f, 1e-8f, 0.1f, false}, {0.05f, 0.9f, 0.999f, 1e-8f, 0.1f, true},
                        {0.3f, 0.5f, 0.9f, 1e-3f, 0.5f, true}};
  for (const Case& c : cases) {
    INFO("lr " << c.lr << " betas " << c.b1 << ", " << c.b2 << " eps " << c.eps << " wd " << c.weight_decay
               << " decoupled " << c.decoupled);
    Tensor p = Tensor::from({5}, {1.0f, -2.0f, 0.5f, 3.0f, 0.0f}).set_requires_grad();
    std::vector<double> ref_p = as_double(p);
    Adam adam({p}, c.lr, c.b1, c.b2, c.eps, c.weight_decay, c.decoupled);
    ReferenceAdam ref{c.lr, c.b1, c.b2, c.eps, c.weight_decay, c.decoupled, {}, {}};
    for (int step = 0; step < 3; ++step) {
      set_grad(p);
      adam.step();
      ref.step(ref_p);
    }
    check_close(p, ref_p, 2e-6);
  }
  // AdamW is Adam with decoupled decay, and it is not the same as L2-regularised Adam.
  Tensor a = Tensor::from({2}, {1.0f, -3.0f}).set_requires_grad();
  Tensor b = a.clone().set_requires_grad(), c = a.clone().set_requires_grad();
  AdamW adamw({a}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f);
  Adam decoupled({b}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, true);
  Adam l2({c}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, false);
  for (int step = 0; step < 3; ++step) {
    set_grad(a), set_grad(b), set_grad(c);
    adamw.step(), decoupled.step(), l2.step();
  }
  CHECK(bit_equal(a, b));
  CHECK(eq::testing::max_abs_diff(a, c) > 1e-3f);
}

TEST_CASE("optim: large tensors (the multi-threaded path) match the reference") {
  Rng rng(3);
  Tensor p = Tensor::randn({300, 400}, rng).set_requires_grad();
  Tensor q = p.clone().set_requires_grad();
  std::vector<double> ref_p = as_double(p), ref_q = as_double(q);
  SGD sgd({p}, 0.01f, 0.9f, true, 1e-3f);
  AdamW adamw({q}, 0.01f);
  ReferenceSGD ref_sgd{0.01f, 0.9f, 1e-3f, 0, true, {}};
  ReferenceAdam ref_adam{0.01f, 0.9f, 0.999f, 1e-8f, 1e-2f, true, {}, {}};
  for (int step = 0; step < 3; ++step) {
    set_grad(p), set_grad(q);
    sgd.step(), adamw.step();
    ref_sgd.step(ref_p), ref_adam.step(ref_q);
  }
  check_close(p, ref_p, 1e-5);
  check_close(q, ref_q, 1e-5);
}

TEST_CASE("optim: parameters without a gradient are skipped and their state does not advance") {
  Tensor used = Tensor::from({2}, {1, 2}).set_requires_grad();
  Tensor unused = Tensor::from({2}, {5, 6}).set_requires_grad();
  Adam adam({used, unused}, 0.1f);
  used.grad_data()[0] = 1, used.grad_data()[1] = 1;
  adam.step();
  adam.step();
  CHECK(unused.to_vector() == std::vector<float>{5, 6});
  CHECK(used.to_vector()[0] < 1.0f);
  const NamedTensors state = adam.state();
  auto value = [&](const std::string& key) {
    for (const auto& [k, t] : state)
      if (k == key) return t.to_vector();
    FAIL("no key " << key);
    return std::vector<float>{};
  };
  CHECK(value("param.0.step") == std::vector<float>{2});
  CHECK(value("param.1.step") == std::vector<float>{0});
  CHECK(value("param.1.exp_avg") == std::vector<float>{0, 0});
  adam.zero_grad();
  CHECK_FALSE(used.has_grad());
}

TEST_CASE("optim: state round-trip makes the next step identical (SGD momentum, Adam)") {
  Rng rng(5);
  auto run = [&](auto make_optimizer) {
    Tensor a = Tensor::randn({4, 3}, rng).set_requires_grad();
    Tensor b = Tensor::randn({7}, rng).set_requires_grad();
    auto original = make_optimizer(std::vector<Tensor>{a, b});
    for (int step = 0; step < 2; ++step) {
      set_grad(a), set_grad(b);
      original.step();
    }
    original.set_lr(original.lr() * 0.5f);  // a schedule changed the lr: it must be restored too
    const NamedTensors snapshot = original.state();
    Tensor a2 = a.clone().set_requires_grad(), b2 = b.clone().set_requires_grad();
    Tensor a3 = a.clone().set_requires_grad(), b3 = b.clone().set_requires_grad();
    auto resumed = make_optimizer(std::vector<Tensor>{a2, b2});
    resumed.load_state(snapshot);
    auto fresh = make_optimizer(std::vector<Tensor>{a3, b3});  // no state: must differ, or the test is vacuous
    CHECK(resumed.lr() == original.lr());
    for (int step = 0; step < 2; ++step) {
      set_grad(a), set_grad(b), set_grad(a2), set_grad(b2), set_grad(a3), set_grad(b3);
      original.step(), resumed.step(), fresh.step();
    }
    CHECK(bit_equal(a, a2));
    CHECK(bit_equal(b, b2));
    CHECK_FALSE(bit_equal(a, a3));
  };
  run([](std::vector<Tensor> p) { return SGD(std::move(p), 0.1f, 0.9f, false, 1e-3f); });
  run([](std::vector<Tensor> p) { return Adam(std::move(p), 0.05f, 0.9f, 0.99f); });
  run([](std::vector<Tensor> p) { return AdamW(std::move(p), 0.05f); });
}

TEST_CASE("optim: load_state reports missing, unexpected and mis-shaped entries") {
  Tensor a = Tensor::zeros({2, 3}).set_requires_grad();
  Adam adam({a}, 0.1f);
  NamedTensors state = adam.state();
  NamedTensors missing(state.begin(), state.end() - 1);  // drops param.0.exp_avg_sq
  CHECK_THROWS_NAMING(adam.load_state(missing), "Adam", "missing", "param.0.exp_avg_sq");
  NamedTensors wrong = state;
  wrong[2].second = Tensor::zeros({3, 2});
  CHECK_THROWS_NAMING(adam.load_state(wrong), "Adam", "wrong shape", wrong[2].first.c_str(), "[2, 3]", "[3, 2]");
  Tensor b = Tensor::zeros({2, 3}).set_requires_grad();
  SGD sgd({b}, 0.1f, 0.9f);
  CHECK_THROWS_NAMING(sgd.load_state(state), "SGD", "missing: param.0.momentum_buffer", "unexpected",
                      "param.0.exp_avg");
  NamedTensors bad_step = state;
  bad_step[1].second = Tensor::scalar(1.5f);
  CHECK_THROWS_NAMING(adam.load_state(bad_step), "Adam", "param.0.step", "whole number");
  // A rejected state leaves the optimizer as it was.
  CHECK(adam.lr() == 0.1f);
}

TEST_CASE("optim: bad hyper-parameters are errors naming the optimizer") {
  Tensor p = Tensor::zeros({2}).set_requires_grad();
  CHECK_THROWS_NAMING(SGD({p}, -0.1f), "SGD", "learning rate");
  CHECK_THROWS_NAMING(SGD({p}, 0.1f, 0.0f, true), "SGD", "Nesterov");
  CHECK_THROWS_NAMING(SGD({p}, 0.1f, 0.9f, true, 0, 0.5f), "SGD", "Nesterov", "dampening");
  CHECK_THROWS_NAMING(Adam({p}, 0.1f, 1.0f), "Adam", "betas");
  CHECK_THROWS_NAMING(AdamW({p}, 0.1f, 0.9f, 0.999f, 1e-8f, -1.0f), "AdamW", "weight_decay");
  CHECK_THROWS_NAMING(SGD({Tensor()}, 0.1f), "SGD", "undefined");
  CHECK_THROWS_NAMING(SGD({p * 2.0f}, 0.1f), "SGD", "[2]", "not a leaf");
}

TEST_CASE("optim: StepLR and CosineLR schedules") {
  StepLR step(0.1f, {2, 4}, 0.1f);
  CHECK(step.lr(0) == doctest::Approx(0.1f));
  CHECK(step.lr(1) == doctest::Approx(0.1f));
  CHECK(step.lr(2) == doctest::Approx(0.01f));
  CHECK(step.lr(3) == doctest::Approx(0.01f));
  CHECK(step.lr(4) == doctest::Approx(0.001f));
  CHECK(step.lr(100) == doctest::Approx(0.001f));
  CHECK_THROWS_NAMING(StepLR(0.1f, {4, 2}), "StepLR", "increasing");

  CosineLR cosine(1.0f, 10);
  CHECK(cosine.lr(0) == doctest::Approx(1.0f));
  CHECK(cosine.lr(5) == doctest::Approx(0.5f));
  CHECK(cosine.lr(10) == doctest::Approx(0.0f));
  CHECK(cosine.lr(2) == doctest::Approx((1 + std::cos(M_PI * 0.2)) / 2));
  // Warm-up 2 epochs (0.5, 1.0), then cosine from 1.0 to 0.1 over epochs 2..10.
  CosineLR warm(1.0f, 10, 0.1f, 2);
  CHECK(warm.lr(0) == doctest::Approx(0.5f));
  CHECK(warm.lr(1) == doctest::Approx(1.0f));
  CHECK(warm.lr(2) == doctest::Approx(1.0f));
  CHECK(warm.lr(6) == doctest::Approx(0.55f));
  CHECK(warm.lr(12) == doctest::Approx(0.1f));
  CHECK_THROWS_NAMING(CosineLR(1.0f, 5, 0.0f, 5), "CosineLR", "warmup");
}

// --- parameter groups ------------------------------------------------------------------------------------------

TEST_CASE("optim: two parameter groups step at their own rates (hand-computed)") {
  // Loss p^2 + q^2 (g = 2x), base lr 0.1; q's group has multiplier 0.5, so it steps at 0.05.
  // Plain SGD: p = 1 -> 0.8 -> 0.64; q = 1 -> 0.9 -> 0.81.
  Tensor p = Tensor::from({1}, {1.0f}).set_requires_grad();
  Tensor q = Tensor::from({1}, {1.0f}).set_requires_grad();
  SGD sgd(std::vector<ParamGroup>{{{p}, 1.0f, "rest"}, {{q}, 0.5f, "slow"}}, 0.1f);
  REQUIRE(sgd.num_groups() == 2);
  CHECK(sgd.group_lr(0) == 0.1f);
  CHECK(sgd.group_lr(1) == 0.05f);
  const float want_p[] = {0.8f, 0.64f}, want_q[] = {0.9f, 0.81f};
  for (int step = 0; step < 2; ++step) {
    p.grad_data()[0] = 2 * p.data()[0];
    q.grad_data()[0] = 2 * q.data()[0];
    sgd.step();
    CHECK(p.item() == doctest::Approx(want_p[step]).epsilon(1e-6));
    CHECK(q.item() == doctest::Approx(want_q[step]).epsilon(1e-6));
  }
  // Adam's first step moves each weight by its group's rate: 0.1 and 0.1 * 0.25 = 0.025.
  Tensor a = Tensor::from({2}, {1.0f, -1.0f}).set_requires_grad();
  Tensor b = Tensor::from({2}, {1.0f, -1.0f}).set_requires_grad();
  Adam adam(std::vector<ParamGroup>{{{a}, 1.0f, ""}, {{b}, 0.25f, "offsets"}}, 0.1f);
  for (Tensor* t : {&a, &b}) t->grad_data()[0] = 3.0f, t->grad_data()[1] = -0.5f;
  adam.step();
  CHECK(a.to_vector()[0] == doctest::Approx(0.9f));
  CHECK(a.to_vector()[1] == doctest::Approx(-0.9f));
  CHECK(b.to_vector()[0] == doctest::Approx(0.975f));
  CHECK(b.to_vector()[1] == doctest::Approx(-0.975f));
}

TEST_CASE("optim: a grouped optimizer is bit-identical to one optimizer per group at lr * multiplier") {
  // Covers momentum, Nesterov, L2 and decoupled decay (AdamW's decay also uses the group's rate).
  const float base = 0.05f, mult = 0.1f;
  auto check_pair = [&](auto make) {
    Tensor a = Tensor::from({2, 2}, {1.0f, -2.0f, 0.5f, 3.0f}).set_requires_grad();
    Tensor b = Tensor::from({3}, {-1.0f, 0.25f, 2.0f}).set_requires_grad();
    Tensor a_alone = a.clone().set_requires_grad(), b_alone = b.clone().set_requires_grad();
    Tensor b_at_base = b.clone().set_requires_grad();  // b without its multiplier: must end elsewhere
    auto grouped = make(std::vector<ParamGroup>{{{a}, 1.0f, ""}, {{b}, mult, ""}}, base);
    auto only_a = make(std::vector<ParamGroup>{{{a_alone}, 1.0f, ""}}, base);
    auto only_b = make(std::vector<ParamGroup>{{{b_alone}, 1.0f, ""}}, base * mult);
    auto b_base = make(std::vector<ParamGroup>{{{b_at_base}, 1.0f, ""}}, base);
    for (int step = 0; step < 3; ++step) {
      set_grad(a), set_grad(b), set_grad(a_alone), set_grad(b_alone), set_grad(b_at_base);
      grouped.step(), only_a.step(), only_b.step(), b_base.step();
    }
    CHECK(bit_equal(a, a_alone));
    CHECK(bit_equal(b, b_alone));
    CHECK(eq::testing::max_abs_diff(b, b_at_base) > 1e-3f);
  };
  check_pair([](std::vector<ParamGroup> g, float lr) { return SGD(std::move(g), lr, 0.9f, true, 1e-3f); });
  check_pair([](std::vector<ParamGroup> g, float lr) { return Adam(std::move(g), lr, 0.9f, 0.99f, 1e-8f, 0.1f); });
  check_pair([](std::vector<ParamGroup> g, float lr) { return AdamW(std::move(g), lr); });
  // A single group of multiplier 1 is the plain parameter list, bit for bit.
  Tensor p = Tensor::from({3}, {1.0f, -2.0f, 0.5f}).set_requires_grad();
  Tensor q = p.clone().set_requires_grad();
  Adam listed({p}, 0.05f), grouped(std::vector<ParamGroup>{{{q}, 1.0f, "all"}}, 0.05f);
  for (int step = 0; step < 3; ++step) {
    set_grad(p), set_grad(q);
    listed.step(), grouped.step();
  }
  CHECK(bit_equal(p, q));
}

TEST_CASE("optim: set_lr sets the base rate and every group keeps its multiplier (as a schedule needs)") {
  Tensor a = Tensor::zeros({2}).set_requires_grad(), b = Tensor::zeros({2}).set_requires_grad();
  SGD sgd(std::vector<ParamGroup>{{{a}, 1.0f, ""}, {{b}, 0.1f, "offsets"}}, 0.01f);
  CosineLR schedule(0.01f, 10);
  for (int epoch : {0, 3, 7}) {
    sgd.set_lr(schedule.lr(epoch));
    CHECK(sgd.lr() == schedule.lr(epoch));
    CHECK(sgd.group_lr(0) == schedule.lr(epoch));
    CHECK(sgd.group_lr(1) == schedule.lr(epoch) * 0.1f);
  }
  // The step uses the rates set last: gradient 1 moves a by lr and b by lr * 0.1.
  sgd.set_lr(0.5f);
  a.grad_data()[0] = 1, b.grad_data()[0] = 1;
  sgd.step();
  CHECK(a.to_vector()[0] == doctest::Approx(-0.5f));
  CHECK(b.to_vector()[0] == doctest::Approx(-0.05f));
  CHECK_THROWS_NAMING(sgd.lr_multiplier(2), "SGD", "group 2", "2 groups");
}

TEST_CASE("optim: state round trip with groups; group layout is checked, single-group keys unchanged") {
  Rng rng(11);
  auto groups_of = [](Tensor a, Tensor b, Tensor c, float mult) {
    return std::vector<ParamGroup>{{{a, b}, 1.0f, "rest"}, {{c}, mult, "offsets"}};
  };
  Tensor a = Tensor::randn({4, 3}, rng).set_requires_grad(), b = Tensor::randn({5}, rng).set_requires_grad(),
         c = Tensor::randn({2, 2}, rng).set_requires_grad();
  Adam original(groups_of(a, b, c, 0.1f), 0.05f);
  for (int step = 0; step < 2; ++step) {
    set_grad(a), set_grad(b), set_grad(c);
    original.step();
  }
  original.set_lr(0.03f);
  const NamedTensors snapshot = original.state();
  Tensor a2 = a.clone().set_requires_grad(), b2 = b.clone().set_requires_grad(), c2 = c.clone().set_requires_grad();
  Adam resumed(groups_of(a2, b2, c2, 0.1f), 0.05f);
  resumed.load_state(snapshot);
  CHECK(resumed.lr() == 0.03f);
  for (int step = 0; step < 2; ++step) {
    set_grad(a), set_grad(b), set_grad(c), set_grad(a2), set_grad(b2), set_grad(c2);
    original.step(), resumed.step();
  }
  CHECK(bit_equal(a, a2));
  CHECK(bit_equal(b, b2));
  CHECK(bit_equal(c, c2));

  // Another multiplier, another grouping, or no groups: refused, naming the key; the optimizer is left as it was.
  Tensor x = a.clone().set_requires_grad(), y = b.clone().set_requires_grad(), z = c.clone().set_requires_grad();
  Adam other_mult(groups_of(x, y, z, 0.5f), 0.05f);
  CHECK_THROWS_NAMING(other_mult.load_state(snapshot), "Adam", "group.1.lr_multiplier", "0.5", "lr multipliers");
  CHECK(other_mult.lr() == 0.05f);
  Adam other_split(std::vector<ParamGroup>{{{x}, 1.0f, ""}, {{y, z}, 0.1f, ""}}, 0.05f);
  CHECK_THROWS_NAMING(other_split.load_state(snapshot), "Adam", "group.0.params");
  Adam flat({x, y, z}, 0.05f);
  CHECK_THROWS_NAMING(flat.load_state(snapshot), "Adam", "unexpected", "group.0.lr_multiplier");
  // One group writes exactly the keys of an optimizer without groups (older checkpoints keep loading).
  Adam one_group(std::vector<ParamGroup>{{{x, y, z}, 1.0f, ""}}, 0.05f);
  std::vector<std::string> flat_keys, grouped_keys;
  for (const auto& [k, t] : flat.state()) flat_keys.push_back(k);
  for (const auto& [k, t] : one_group.state()) grouped_keys.push_back(k);
  CHECK(flat_keys == grouped_keys);
  CHECK(flat_keys.size() == 1 + 3 * 3);  // lr, then step / exp_avg / exp_avg_sq per parameter
}

TEST_CASE("optim: bad parameter groups are errors naming the optimizer and the group") {
  Tensor p = Tensor::zeros({2}).set_requires_grad(), q = Tensor::zeros({3}).set_requires_grad();
  CHECK_THROWS_NAMING(SGD(std::vector<ParamGroup>{{{p}, 1.0f, ""}, {{q, p}, 0.1f, "offsets"}}, 0.1f), "SGD",
                      "in group 0 and in group 1 (offsets)");
  CHECK_THROWS_NAMING(Adam(std::vector<ParamGroup>{{{p}, -1.0f, "bad"}}, 0.1f), "Adam", "group 0 (bad)",
                      "multiplier");
  CHECK_THROWS_NAMING(AdamW(std::vector<ParamGroup>{}, 0.1f), "AdamW", "at least one parameter group");
}

TEST_CASE("optim: gradient-norm clipping and RMSprop, by hand") {
  Tensor p = Tensor::from({2}, {1.0f, -1.0f}).set_requires_grad();
  Tensor q = Tensor::from({1}, {2.0f}).set_requires_grad();
  // q is broadcast over two outputs: grad p = (3, 0), grad q = 4 + 4 = 8, global norm sqrt(9 + 64).
  (p * Tensor::from({2}, {3.0f, 0.0f}) + q * 4.0f).backward(Tensor::ones({2}));
  const double norm = clip_grad_norm({p, q}, 1.0);
  CHECK(norm == doctest::Approx(std::sqrt(73.0)));
  CHECK(p.grad().to_vector()[0] == doctest::Approx(3.0 / std::sqrt(73.0)).epsilon(1e-5));
  CHECK(q.grad().item() == doctest::Approx(8.0 / std::sqrt(73.0)).epsilon(1e-5));
  // Below the threshold nothing changes.
  CHECK(clip_grad_norm({p, q}, 10.0) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(q.grad().item() == doctest::Approx(8.0 / std::sqrt(73.0)).epsilon(1e-5));

  // RMSprop first step: v = (1 - alpha) g^2, step = lr g / (sqrt(v) + eps) = lr sign(g) / sqrt(1 - alpha).
  Tensor w = Tensor::from({2}, {1.0f, 1.0f}).set_requires_grad();
  (w * Tensor::from({2}, {0.5f, -2.0f})).backward(Tensor::ones({2}));
  RMSprop opt({w}, 0.01f, 0.99f, 0.0f);
  opt.step();
  CHECK(w.to_vector()[0] == doctest::Approx(1.0 - 0.1).epsilon(1e-5));
  CHECK(w.to_vector()[1] == doctest::Approx(1.0 + 0.1).epsilon(1e-5));
  // Its state round-trips under the documented key.
  const NamedTensors state = opt.state();
  bool found = false;
  for (auto& [name, t] : state) found = found || name == "param.0.square_avg";
  CHECK(found);
  CHECK_THROWS_NAMING(RMSprop({w}, 0.01f, 1.0f), "RMSprop", "alpha");
}
